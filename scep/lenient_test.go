package scep

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

var oidCN = asn1.ObjectIdentifier{2, 5, 4, 3}

// rawName returns the DER of a Name with one attribute of type oid whose value is v
// encoded with tag, whatever v holds.
func rawName(oid asn1.ObjectIdentifier, tag cbasn1.Tag, v string) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(oid)
				b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes([]byte(v)) })
			})
		})
	})
	return b.BytesOrPanic()
}

// certmongerVector returns the captured certmonger PKCSReq and the RA encryption
// certificate and key it is encrypted to.
func certmongerVector(t *testing.T) ([]byte, Recipient) {
	t.Helper()
	der, err := os.ReadFile("testdata/certmonger/PKCSReq.der")
	require.NoError(t, err)
	b, err := os.ReadFile("testdata/certmonger/ra-encrypt.crt")
	require.NoError(t, err)
	blk, _ := pem.Decode(b)
	cert, err := x509.ParseCertificate(blk.Bytes)
	require.NoError(t, err)
	b, err = os.ReadFile("testdata/certmonger/ra-encrypt.key")
	require.NoError(t, err)
	blk, _ = pem.Decode(b)
	key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	require.NoError(t, err)
	return der, Recipient{Certificate: cert, Key: key.(*rsa.PrivateKey)}
}

// TestCertmongerMistypedSubject: certmonger's request for CN=bob@example.com, whose
// signer certificate and CSR encode the CN as a PrintableString holding '@', is read:
// the signer keeps its issuer as received (the reply is addressed by it), the CSR's
// signature verifies over the bytes received, and its RawSubject is re-encoded as a
// UTF8String. Before, the message was refused as malformed.
func TestCertmongerMistypedSubject(t *testing.T) {
	der, ra := certmongerVector(t)
	m, err := ParsePKIMessage(der, ParseOptions{})
	require.NoError(t, err)
	require.Equal(t, PKCSReq, m.MessageType)
	require.Equal(t, "bob@example.com", m.Signer.Subject.CommonName)
	bad := rawName(oidCN, cbasn1.PrintableString, "bob@example.com")
	require.Equal(t, bad, m.Signer.RawIssuer, "the issuer as received")
	require.Equal(t, bad, m.Signer.RawSubject)
	require.True(t, bytes.Contains(der, m.Signer.Raw))

	require.NoError(t, m.Decrypt(ra))
	require.Equal(t, "bob@example.com", m.CSR.Subject.CommonName)
	require.NoError(t, m.CSR.CheckSignature(), "verified over the bytes received")
	require.True(t, bytes.Contains(m.CSR.Raw, bad), "Raw is what was received")
	require.Equal(t, rawName(oidCN, cbasn1.UTF8String, "bob@example.com"), m.CSR.RawSubject)
	require.NotEmpty(t, m.ChallengePassword)

	// A server passes the request to its Responder instead of answering badRequest.
	pki := newTestPKI(t)
	var seen *x509.CertificateRequest
	s := &Server{CACerts: []*x509.Certificate{pki.ca}, SignerCert: pki.raSign, Signer: pki.raKey,
		Recipients: []Recipient{ra},
		Responder: ResponderFunc(func(_ context.Context, req *Request) (*Response, error) {
			seen = req.CSR
			return nil, Fail(BadTime, errors.New("the captured challenge has expired"))
		})}
	rec := httptestRecorder(s, http.MethodPost, "/scep?operation=PKIOperation", der)
	rep := expectFailure(t, pki, rec.Code, rec.Body.Bytes(), BadTime)
	require.Equal(t, m.TransactionID, rep.TransactionID)
	require.NotNil(t, seen)
	require.Equal(t, "bob@example.com", seen.Subject.CommonName)
}

// TestLenientRefusals: only a string whose single fault is its declared type is read;
// every other fault crypto/x509 refuses is still refused, and the signature is checked
// over the bytes received.
func TestLenientRefusals(t *testing.T) {
	testKeys(t)
	key := rsaKeys[3]
	emailOID := asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
	for _, tc := range []struct {
		name    string
		subject []byte
		ok      bool
		cn      string
	}{
		{"PrintableString with @", rawName(oidCN, cbasn1.PrintableString, "bob@example.com"), true, "bob@example.com"},
		{"PrintableString with UTF-8", rawName(oidCN, cbasn1.PrintableString, "Jörg"), true, "Jörg"},
		{"IA5String with UTF-8", rawName(emailOID, cbasn1.IA5String, "jörg@example.com"), true, ""},
		{"valid PrintableString", rawName(oidCN, cbasn1.PrintableString, "bob"), true, "bob"},
		{"PrintableString with a control character", rawName(oidCN, cbasn1.PrintableString, "bob@\x01"), false, ""},
		{"PrintableString with DEL", rawName(oidCN, cbasn1.PrintableString, "bob@\x7f"), false, ""},
		{"PrintableString with C1", rawName(oidCN, cbasn1.PrintableString, "bob@\u0085"), false, ""},
		{"PrintableString not UTF-8", rawName(oidCN, cbasn1.PrintableString, "j\xf6rg"), false, ""},
		{"IA5String not UTF-8", rawName(emailOID, cbasn1.IA5String, "j\xf6rg"), false, ""},
		{"UTF8String not UTF-8", rawName(oidCN, cbasn1.UTF8String, "j\xf6rg"), false, ""},
		{"BMPString of odd length", rawName(oidCN, cbasn1.Tag(30), "abc"), false, ""},
		{"NumericString with letters", rawName(oidCN, cbasn1.Tag(18), "bob@"), false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{RawSubject: tc.subject}, key)
			require.NoError(t, err)
			csr, err := ParseCertificateRequest(der)
			now := time.Now()
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), RawSubject: tc.subject, NotBefore: now, NotAfter: now.Add(time.Hour)}
			cder, cerr := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
			require.NoError(t, cerr)
			cert, cerr := parseCertificate(cder)
			if !tc.ok {
				require.Error(t, err)
				require.Nil(t, csr)
				require.Error(t, cerr)
				require.Nil(t, cert)
				return
			}
			require.NoError(t, err)
			require.NoError(t, csr.CheckSignature())
			require.Equal(t, tc.cn, csr.Subject.CommonName)
			var seq pkix.RDNSequence
			rest, err := asn1.Unmarshal(csr.RawSubject, &seq)
			require.NoError(t, err, "RawSubject is well-typed")
			require.Empty(t, rest)
			require.NoError(t, cerr)
			require.Equal(t, tc.cn, cert.Subject.CommonName)
			require.Equal(t, tc.subject, cert.RawIssuer)
			require.Equal(t, tc.subject, cert.RawSubject)
			require.NoError(t, cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature), "verified over the bytes received")
		})
	}

	// Signed over the well-typed subject, sent with a PrintableString tag: read, but the
	// signature does not verify, because it is checked over the bytes received.
	good := rawName(oidCN, cbasn1.UTF8String, "bob@example.com")
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{RawSubject: good}, key)
	require.NoError(t, err)
	i := bytes.Index(der, good)
	require.Positive(t, i)
	tampered := bytes.Clone(der)
	tampered[i+len(good)-len("bob@example.com")-2] = byte(cbasn1.PrintableString)
	csr, err := ParseCertificateRequest(tampered)
	require.NoError(t, err)
	require.Equal(t, good, csr.RawSubject)
	require.Error(t, csr.CheckSignature())
}

// FuzzLenientParse: the lenient readers accept everything crypto/x509 accepts with the
// same result, never retag anything crypto/x509 accepts, and what they accept beyond it
// differs from the input only in string tags.
func FuzzLenientParse(f *testing.F) {
	der, _ := os.ReadFile("testdata/certmonger/PKCSReq.der")
	if sd, err := parseSignedData(der); err == nil {
		for _, c := range sd.rawCerts {
			f.Add([]byte(c))
		}
	}
	testKeys(f)
	now := time.Now()
	for _, subject := range [][]byte{rawName(oidCN, cbasn1.PrintableString, "bob@example.com"),
		rawName(oidCN, cbasn1.UTF8String, "bob@example.com"), rawName(oidCN, cbasn1.IA5String, "j\xc3\xb6rg")} {
		if der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{RawSubject: subject}, rsaKeys[3]); err == nil {
			f.Add(der)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), RawSubject: subject, NotBefore: now, NotAfter: now.Add(time.Hour)}
		if der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, ecKey.Public(), ecKey); err == nil {
			f.Add(der)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c1, err1 := x509.ParseCertificate(in)
		c2, err2 := parseCertificate(in)
		if err1 == nil {
			if err2 != nil || !reflect.DeepEqual(c1, c2) {
				t.Fatalf("crypto/x509 accepts the certificate, the lenient reader gives %v", err2)
			}
			if _, _, changed := retagCertificate(in); changed {
				t.Fatal("retagged a certificate crypto/x509 accepts")
			}
		} else if err2 == nil {
			fixed, _, _ := retagCertificate(in)
			checkOnlyTags(t, in, fixed)
			if !bytes.Equal(c2.Raw, in) {
				t.Fatal("Raw is not the input")
			}
		}
		r1, err1 := x509.ParseCertificateRequest(in)
		r2, err2 := ParseCertificateRequest(in)
		if err1 == nil {
			if err2 != nil || !reflect.DeepEqual(r1, r2) {
				t.Fatalf("crypto/x509 accepts the request, the lenient reader gives %v", err2)
			}
			if _, _, changed := retagRequest(in); changed {
				t.Fatal("retagged a request crypto/x509 accepts")
			}
		} else if err2 == nil {
			fixed, _, _ := retagRequest(in)
			checkOnlyTags(t, in, fixed)
			if !bytes.Equal(r2.Raw, in) {
				t.Fatal("Raw is not the input")
			}
		}
	})
}

// checkOnlyTags fails unless fixed differs from in only where a PrintableString or
// IA5String tag became a UTF8String tag.
func checkOnlyTags(t *testing.T, in, fixed []byte) {
	t.Helper()
	if len(in) != len(fixed) {
		t.Fatalf("length changed: %d -> %d", len(in), len(fixed))
	}
	for i := range in {
		if in[i] != fixed[i] && !((in[i] == byte(cbasn1.PrintableString) || in[i] == byte(cbasn1.IA5String)) && fixed[i] == byte(cbasn1.UTF8String)) {
			t.Fatalf("byte %d changed from %#x to %#x", i, in[i], fixed[i])
		}
	}
}

// BenchmarkParseCertificateRequest measures the lenient reader against its floor in
// the same run, crypto/x509 parsing a well-typed CSR of the same size: a well-typed CSR
// costs one crypto/x509 parse; a mis-typed one (certmonger's CN=bob@example.com) a
// failed parse, a walk of the subject and a second parse.
func BenchmarkParseCertificateRequest(b *testing.B) {
	testKeys(b)
	mk := func(tag cbasn1.Tag) []byte {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			RawSubject: rawName(oidCN, tag, "bob@example.com")}, rsaKeys[3])
		if err != nil {
			b.Fatal(err)
		}
		return der
	}
	good, bad := mk(cbasn1.UTF8String), mk(cbasn1.PrintableString)
	for _, tc := range []struct {
		name string
		der  []byte
	}{{"well-typed", good}, {"mis-typed", bad}} {
		b.Run(tc.name, func(b *testing.B) {
			var cost, floor time.Duration
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if _, err := ParseCertificateRequest(tc.der); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if _, err := x509.ParseCertificateRequest(good); err != nil {
					b.Fatal(err)
				}
				cost += t1.Sub(t0)
				floor += time.Since(t1)
			}
			b.ReportMetric(float64(cost.Nanoseconds())/float64(b.N), "op-ns/op")
			b.ReportMetric(float64(floor.Nanoseconds())/float64(b.N), "floor-ns/op")
			b.ReportMetric(float64(cost)/float64(floor), "x-floor")
		})
	}
}
