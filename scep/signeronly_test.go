package scep

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestServerParsesOnlyTheSigner: a Server parses only the certificate the SignerInfo
// names. A requester chooses how many certificates its SignedData carries, each
// costly to parse (a hostile probe sent ten with 2,000 extensions each: 16 ms of CPU
// per anonymous request, five enrollments' worth). Here the message also carries a
// certificate cut short after its issuer: the strict parse refuses it (ErrMalformed),
// the Server's never parses it, and both find the same signer. (Something that is not
// a certificate's structure up to its issuer is still refused: TestHostile.)
func TestServerParsesOnlyTheSigner(t *testing.T) {
	testKeys(t)
	signer, err := SelfSigned(rsaKeys[1], pkix.Name{CommonName: "device"}, nil)
	require.NoError(t, err)

	heavy := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "heavy"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	for i := range 500 {
		heavy.ExtraExtensions = append(heavy.ExtraExtensions, pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1, i + 1}, Value: []byte{5, 0}})
	}
	der, err := x509.CreateCertificate(rand.Reader, heavy, heavy, rsaKeys[2].Public(), rsaKeys[2])
	require.NoError(t, err)
	heavyCert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	// Serial and issuer intact, the rest cut: readable by the walk, not parseable.
	cut := &x509.Certificate{Raw: truncateAfterIssuer(t, der)}

	extra := []*x509.Certificate{heavyCert, heavyCert, cut, heavyCert}
	msg, err := buildSignedData(signOptions{content: []byte("envelope"), cert: signer, key: rsaKeys[1], hash: crypto.SHA256,
		certs: extra, attrs: []signedAttr{{oidTransactionID, printableValue("tid")},
			{oidMessageType, printableValue("19")}, {oidSenderNonce, octetValue(make([]byte, 16))}}})
	require.NoError(t, err)

	_, err = ParsePKIMessage(msg, ParseOptions{})
	require.ErrorIs(t, err, ErrMalformed, "the strict parse reads every certificate")

	m, err := parsePKIMessage(msg, ParseOptions{signerOnly: true})
	require.NoError(t, err)
	require.Equal(t, signer.Raw, m.Signer.Raw)
	require.Len(t, m.Certificates, 1, "only the signer's certificate is parsed")

	// The same signer as the strict parse on real clients' requests, and on the
	// Server's own path over HTTP.
	for _, name := range []string{"PKCSReq.der", "certmonger/PKCSReq.der"} {
		der := readFile(t, name)
		full, err := ParsePKIMessage(der, ParseOptions{AllowLegacy: true})
		require.NoError(t, err, name)
		only, err := parsePKIMessage(der, ParseOptions{AllowLegacy: true, signerOnly: true})
		require.NoError(t, err, name)
		require.Equal(t, full.Signer.Raw, only.Signer.Raw, name)
	}
}

// TestSignerNames: the walk that picks the signer's certificate without parsing it
// agrees with findSigner on the parsed certificate, for both kinds of signer
// identifier (RFC 5652 §5.3).
func TestSignerNames(t *testing.T) {
	testKeys(t)
	mk := func(serial int64, ski []byte, v1 bool) *x509.Certificate {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "c"},
			NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), SubjectKeyId: ski,
			KeyUsage: x509.KeyUsageDigitalSignature}
		if v1 {
			tmpl = &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "c"},
				NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, rsaKeys[1].Public(), rsaKeys[1])
		require.NoError(t, err)
		c, err := x509.ParseCertificate(der)
		require.NoError(t, err)
		return c
	}
	a, b, none := mk(1, []byte{1, 2, 3}, false), mk(2, []byte{4, 5, 6}, false), mk(3, nil, true)
	withKU := mk(4, nil, false)
	require.Empty(t, none.Extensions)
	require.NotEmpty(t, withKU.Extensions)
	for _, c := range []struct {
		name string
		si   signerInfo
		cert *x509.Certificate
	}{
		{"serial and issuer match", signerInfo{issuer: a.RawIssuer, serial: a.SerialNumber}, a},
		{"serial differs", signerInfo{issuer: a.RawIssuer, serial: b.SerialNumber}, a},
		{"issuer differs", signerInfo{issuer: []byte{0x30, 0}, serial: a.SerialNumber}, a},
		{"key identifier matches", signerInfo{ski: []byte{4, 5, 6}}, b},
		{"key identifier differs", signerInfo{ski: []byte{1, 2, 3}}, b},
		{"key identifier asked, certificate has none", signerInfo{ski: []byte{9}}, none},
		{"key identifier asked, certificate has other extensions", signerInfo{ski: []byte{9}}, withKU},
	} {
		t.Run(c.name, func(t *testing.T) {
			want := c.si.findSigner([]*x509.Certificate{c.cert}) != nil
			match, ok := c.si.names(c.cert.Raw)
			require.True(t, ok)
			require.Equal(t, want, match)
		})
	}
}

// TestSignerNamesWhatX509Ignores: the walk matches no certificate that findSigner
// would not match once x509 parsed it, so that a request cannot have many parsed for
// nothing: an empty subjectKeyIdentifier (findSigner matches none), and the
// extensions of a certificate that is not v3 (x509 reads none). Both were matched,
// and 6 such certificates cost 12 ms of CPU per anonymous request (a hostile probe).
func TestSignerNamesWhatX509Ignores(t *testing.T) {
	testKeys(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(5), Subject: pkix.Name{CommonName: "c"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), SubjectKeyId: []byte{7, 7, 7}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, rsaKeys[1].Public(), rsaKeys[1])
	require.NoError(t, err)

	empty := &x509.Certificate{SerialNumber: big.NewInt(6), Subject: pkix.Name{CommonName: "c"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		ExtraExtensions: []pkix.Extension{{Id: oidSubjectKeyID, Value: []byte{0x04, 0x00}}}}
	emptyDER, err := x509.CreateCertificate(rand.Reader, empty, empty, rsaKeys[1].Public(), rsaKeys[1])
	require.NoError(t, err)
	match, ok := (&signerInfo{ski: []byte{}}).names(emptyDER)
	require.True(t, ok)
	require.False(t, match, "an empty key identifier names no certificate, not even one with an empty one")

	v1 := withoutVersion(t, der)
	match, ok = (&signerInfo{ski: []byte{7, 7, 7}}).names(v1)
	require.True(t, ok)
	require.False(t, match, "a v1 certificate's extensions are not read")
	match, ok = (&signerInfo{ski: []byte{7, 7, 7}}).names(der)
	require.True(t, ok)
	require.True(t, match, "the same certificate as v3")
}

// withoutVersion drops the version field of a certificate's TBSCertificate, making it
// v1 with its extensions still there.
func withoutVersion(t *testing.T, der []byte) []byte {
	t.Helper()
	var c struct {
		TBS    asn1.RawValue
		SigAlg asn1.RawValue
		Sig    asn1.RawValue
	}
	_, err := asn1.Unmarshal(der, &c)
	require.NoError(t, err)
	var version asn1.RawValue
	rest, err := asn1.Unmarshal(c.TBS.Bytes, &version)
	require.NoError(t, err)
	require.Equal(t, asn1.ClassContextSpecific, version.Class)
	tbs, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: rest})
	require.NoError(t, err)
	body := append(append(tbs, c.SigAlg.FullBytes...), c.Sig.FullBytes...)
	out, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: body})
	require.NoError(t, err)
	return out
}

// truncateAfterIssuer keeps a certificate's outer headers, version, serial,
// signature algorithm and issuer, and drops the rest of its TBSCertificate.
func truncateAfterIssuer(t *testing.T, der []byte) []byte {
	t.Helper()
	var c struct {
		TBS asn1.RawValue
	}
	_, err := asn1.Unmarshal(der, &c)
	require.NoError(t, err)
	var parts []asn1.RawValue
	rest := c.TBS.Bytes
	for len(parts) < 4 {
		var v asn1.RawValue
		rest, err = asn1.Unmarshal(rest, &v)
		require.NoError(t, err)
		parts = append(parts, v)
	}
	var body []byte
	for _, p := range parts {
		body = append(body, p.FullBytes...)
	}
	tbs, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: body})
	require.NoError(t, err)
	out, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: tbs})
	require.NoError(t, err)
	return out
}
