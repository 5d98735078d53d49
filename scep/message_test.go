package scep

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
	"github.com/stretchr/testify/require"
)

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	require.NoError(t, err)
	return b
}

func pemCert(t testing.TB, name string) *x509.Certificate {
	t.Helper()
	b := readFile(t, name)
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		require.NotNil(t, blk, "no certificate in %s", name)
		if blk.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(blk.Bytes)
			require.NoError(t, err)
			return c
		}
	}
}

func pemKey(t testing.TB, name string) crypto.Decrypter {
	t.Helper()
	blk, _ := pem.Decode(readFile(t, name))
	require.NotNil(t, blk)
	if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		return k
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	require.NoError(t, err)
	return k.(crypto.Decrypter)
}

func TestAppleVectorPKCSReq(t *testing.T) {
	der := readFile(t, "PKCSReq.der")
	ca := pemCert(t, "testca.pem")
	// SHA-1 signature: refused unless legacy algorithms are allowed.
	_, err := ParsePKIMessage(der, ParseOptions{})
	require.ErrorIs(t, err, ErrUnsupportedAlgorithm)
	require.Equal(t, BadAlg, FailInfoOf(err))

	// The vector's CA expired on 2026-05-29: verify at a time inside its validity.
	// The signer certificate is valid 2016-05-31 to 2017-05-31.
	at := time.Date(2016, 6, 1, 0, 0, 0, 0, time.UTC)
	m, err := ParsePKIMessage(der, ParseOptions{AllowLegacy: true, Time: at})
	require.NoError(t, err)
	require.Equal(t, PKCSReq, m.MessageType)
	require.Len(t, m.TransactionID, 40)
	require.Len(t, m.SenderNonce, 8)
	require.Equal(t, crypto.SHA1, m.Digest)
	require.Equal(t, "MDM SCEP SIGNER", m.Signer.Subject.CommonName)

	require.NoError(t, m.Decrypt(Recipient{Certificate: ca, Key: pemKey(t, "testca.key")}))
	require.Equal(t, DES3CBC, m.Cipher)
	require.Contains(t, m.CSR.Subject.CommonName, "com.apple.security.scep.")
	require.Empty(t, m.ChallengePassword)

	// Outside the signer's validity, with the time supplied by the caller: badTime.
	_, err = ParsePKIMessage(der, ParseOptions{AllowLegacy: true, Time: m.Signer.NotAfter.Add(time.Hour)})
	require.Error(t, err)
	require.Equal(t, BadTime, FailInfoOf(err))

	// Addressed to another certificate: ErrNotForUs.
	pki := newTestPKI(t)
	m, err = ParsePKIMessage(der, ParseOptions{AllowLegacy: true})
	require.NoError(t, err)
	require.ErrorIs(t, m.Decrypt(Recipient{Certificate: pki.raEnc, Key: pki.raEncK}), ErrNotForUs)
}

func TestNDESVectorCertRep(t *testing.T) {
	der := readFile(t, "NDES-CertRep.der")
	ra := pemCert(t, "ndes-ca2.pem")
	// No certificates in the SignedData: the signer is found among the GetCACert ones.
	_, err := ParsePKIMessage(der, ParseOptions{AllowLegacy: true})
	require.ErrorIs(t, err, ErrBadSignature)
	m, err := ParsePKIMessage(der, ParseOptions{AllowLegacy: true, Certificates: []*x509.Certificate{ra}})
	require.NoError(t, err)
	require.Equal(t, CertRep, m.MessageType)
	require.Equal(t, Success, m.Status)
	require.NotEmpty(t, m.RecipientNonce)
	require.NotNil(t, m.Envelope)
	require.Equal(t, ra.Raw, m.Signer.Raw)
	// A different RA does not verify it.
	pki := newTestPKI(t)
	_, err = ParsePKIMessage(der, ParseOptions{AllowLegacy: true, Certificates: []*x509.Certificate{pki.raSign}})
	require.ErrorIs(t, err, ErrBadSignature)
	// The envelope is for a client whose key we lack.
	require.ErrorIs(t, m.Decrypt(Recipient{Certificate: pki.raEnc, Key: pki.raEncK}), ErrNotForUs)
}

func TestDESCertRepVector(t *testing.T) {
	der := readFile(t, "CertRep.der")
	_, err := ParsePKIMessage(der, ParseOptions{})
	require.ErrorIs(t, err, ErrUnsupportedAlgorithm, "SHA-1 refused without legacy")
	m, err := ParsePKIMessage(der, ParseOptions{AllowLegacy: true})
	require.NoError(t, err)
	require.Equal(t, CertRep, m.MessageType)
	require.Equal(t, Success, m.Status)
	// The envelope is single DES: refused when legacy is off, whoever it is for.
	m.legacy = false
	err = m.Decrypt(Recipient{Certificate: pemCert(t, "testca.pem"), Key: pemKey(t, "testca.key")})
	require.ErrorIs(t, err, ErrUnsupportedAlgorithm)
	require.Equal(t, BadAlg, FailInfoOf(err))
}

type signerCase struct {
	name string
	key  crypto.Signer
}

func testSigners(t testing.TB) []signerCase {
	testKeys(t)
	return []signerCase{{"RSA", rsaKeys[3]}, {"ECDSA", ecKey}}
}

func newCSR(t testing.TB, key crypto.Signer, cn, challenge string) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: cn}, DNSNames: []string{"device.example.com"}}, key)
	require.NoError(t, err)
	if challenge != "" {
		der, err = AddChallengePassword(der, challenge, key, nil)
		require.NoError(t, err)
	}
	return der
}

// TestRoundTrip builds every request type with every cipher, digest and signer key,
// parses and decrypts it as a server, answers with every CertRep shape, and parses the
// answer as the client; pkcs7 (an independent implementation) must verify our SignedData.
func TestRoundTrip(t *testing.T) {
	pki := newTestPKI(t)
	ciphers := []Cipher{AES128CBC, AES192CBC, AES256CBC, DES3CBC, DESCBC}
	digests := []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512}
	types := []MessageType{PKCSReq, RenewalReq, CertPoll, GetCert, GetCRL}
	rsaReq := rsaKeys[3]
	self, err := SelfSigned(rsaReq, pkix.Name{CommonName: "device"}, nil)
	require.NoError(t, err)
	csr := newCSR(t, rsaReq, "device", "pässword") // UTF8String challenge
	ias, err := MarshalIssuerAndSerial(pki.ca.RawSubject, big.NewInt(42))
	require.NoError(t, err)
	isub, err := MarshalIssuerAndSubject(pki.ca.RawSubject, self.RawSubject)
	require.NoError(t, err)
	payload := map[MessageType][]byte{PKCSReq: csr, RenewalReq: csr, CertPoll: isub, GetCert: ias, GetCRL: ias}
	for _, typ := range types {
		for _, c := range ciphers {
			for _, h := range digests {
				legacy := c == DESCBC || h == crypto.SHA1
				t.Run(typ.String()+"/"+c.String()+"/"+h.String(), func(t *testing.T) {
					der, nonce, err := NewRequest(RequestOptions{Type: typ, TransactionID: "tid-1", Payload: payload[typ],
						Recipient: pki.raEnc, Cipher: c, Digest: h, SignerCert: self, Signer: rsaReq})
					require.NoError(t, err)
					p7, err := pkcs7.Parse(der)
					require.NoError(t, err)
					require.NoError(t, p7.Verify(), "pkcs7 must verify our SignedData")

					if legacy {
						_, err := ParsePKIMessage(der, ParseOptions{})
						if h == crypto.SHA1 {
							require.ErrorIs(t, err, ErrUnsupportedAlgorithm)
						} else {
							m, err := ParsePKIMessage(der, ParseOptions{})
							require.NoError(t, err)
							require.ErrorIs(t, m.Decrypt(Recipient{pki.raEnc, pki.raEncK}), ErrUnsupportedAlgorithm)
						}
					}
					m, err := ParsePKIMessage(der, ParseOptions{AllowLegacy: legacy})
					require.NoError(t, err)
					require.Equal(t, typ, m.MessageType)
					require.Equal(t, nonce, m.SenderNonce)
					require.Equal(t, h, m.Digest)
					require.NoError(t, m.Decrypt(Recipient{pki.raEnc, pki.raEncK}))
					require.Equal(t, c, m.Cipher)
					switch typ {
					case PKCSReq, RenewalReq:
						require.Equal(t, "pässword", m.ChallengePassword)
						require.NoError(t, m.CSR.CheckSignature())
					case GetCert, GetCRL:
						require.Equal(t, int64(42), m.IssuerAndSerial.Serial.Int64())
						require.Equal(t, pki.ca.RawSubject, m.IssuerAndSerial.Issuer)
					case CertPoll:
						require.Equal(t, self.RawSubject, m.IssuerAndSubject.Subject)
					}
					rp := &Replier{Cert: pki.raSign, Key: pki.raKey, Certificates: []*x509.Certificate{pki.ca}}
					reps := map[PKIStatus][]byte{}
					reps[Success], err = rp.Success(m, self, pki.ca)
					require.NoError(t, err)
					reps[Pending], err = rp.Pending(m)
					require.NoError(t, err)
					reps[Failure], err = rp.Failure(m, BadTime)
					require.NoError(t, err)
					for status, rep := range reps {
						r, err := ParsePKIMessage(rep, ParseOptions{AllowLegacy: legacy})
						require.NoError(t, err)
						require.Equal(t, CertRep, r.MessageType)
						require.Equal(t, status, r.Status)
						require.Equal(t, "tid-1", r.TransactionID)
						require.Equal(t, nonce, r.RecipientNonce)
						require.NotEqual(t, nonce, r.SenderNonce, "senderNonce must be fresh")
						require.Len(t, r.SenderNonce, 16)
						require.Equal(t, h, r.Digest, "reply uses the request's digest")
						switch status {
						case Failure:
							require.Equal(t, BadTime, r.FailInfo)
							require.Nil(t, r.Envelope)
						case Success:
							require.NoError(t, r.Decrypt(Recipient{self, rsaReq}))
							require.Equal(t, c, r.Cipher, "reply uses the request's cipher")
							require.Len(t, r.Issued, 2)
							require.Equal(t, self.Raw, r.Issued[0].Raw, "issued certificate first")
						}
					}
				})
			}
		}
	}
}

// TestSignerKeys checks RSA and ECDSA requesters and RSA and ECDSA CertRep signers.
func TestSignerKeys(t *testing.T) {
	pki := newTestPKI(t)
	for _, s := range testSigners(t) {
		t.Run(s.name, func(t *testing.T) {
			self, err := SelfSigned(s.key, pkix.Name{CommonName: "x"}, nil)
			require.NoError(t, err)
			der, _, err := NewRequest(RequestOptions{Type: PKCSReq, TransactionID: "t", Payload: newCSR(t, s.key, "x", "c"),
				Recipient: pki.raEnc, SignerCert: self, Signer: s.key})
			require.NoError(t, err)
			m, err := ParsePKIMessage(der, ParseOptions{})
			require.NoError(t, err)
			require.NoError(t, m.Decrypt(Recipient{pki.raEnc, pki.raEncK}))
			// An ECDSA CertRep signer.
			raCert := mkCert(t, &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "ec ra"},
				NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}, pki.ca, ecKey.Public(), pki.caKey)
			rep, err := (&Replier{Cert: raCert, Key: ecKey}).Failure(m, BadRequest)
			require.NoError(t, err)
			r, err := ParsePKIMessage(rep, ParseOptions{})
			require.NoError(t, err)
			require.Equal(t, BadRequest, r.FailInfo)
			_, err = (&Replier{Cert: raCert, Key: ecKey}).Success(m, self)
			if s.name == "ECDSA" {
				// No key transport to an EC key: the server answers FAILURE instead.
				require.ErrorIs(t, err, ErrUnsupportedAlgorithm)
			} else {
				require.NoError(t, err)
			}
		})
	}
}

func TestStringsNeverPanic(t *testing.T) {
	for _, n := range []int{-1, 0, 1, 2, 3, 4, 5, 17, 18, 19, 20, 21, 22, 99, 1 << 30} {
		require.NotEmpty(t, MessageType(n).String())
		require.NotEmpty(t, PKIStatus(n).String())
		require.NotEmpty(t, FailInfo(n).String())
		require.NotEmpty(t, Cipher(n).String())
	}
	require.Equal(t, "unknown(99)", MessageType(99).String())
	require.Equal(t, "badCertId", BadCertID.String())
	f, err := ParseFailInfo("badTime")
	require.NoError(t, err)
	require.Equal(t, BadTime, f)
	_, err = ParseFailInfo("nope")
	require.ErrorIs(t, err, ErrMalformed)
}

func TestFailInfoOf(t *testing.T) {
	tests := []struct {
		err  error
		want FailInfo
	}{
		{Fail(BadTime, errors.New("x")), BadTime},
		{ErrUnsupportedAlgorithm, BadAlg},
		{ErrBadSignature, BadMessageCheck},
		{ErrDecrypt, BadMessageCheck},
		{ErrNotForUs, BadMessageCheck},
		{ErrMalformed, BadRequest},
		{errors.New("other"), BadRequest},
		// A FailError without Info answers its zero value, badAlg, whatever it
		// wraps (FailError's doc says so).
		{&FailError{Err: errors.New("other")}, BadAlg},
		{&FailError{Err: ErrBadSignature}, BadAlg},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, FailInfoOf(tt.err), "%v", tt.err)
	}
}

// A FailError names its package once, however its wrapped error begins.
func TestFailErrorText(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&FailError{Info: BadRequest, Err: ErrRefused}, "scep: badRequest: request refused by the server"},
		{Fail(BadTime, errors.New("crp: phase1-expiry: challenge expired")), "scep: badTime: crp: phase1-expiry: challenge expired"},
		{Fail(BadCertID, nil), "scep: badCertId"},
	} {
		require.EqualError(t, tc.err, tc.want)
	}
	require.ErrorIs(t, &FailError{Info: BadRequest, Err: ErrRefused}, ErrRefused)
}

func TestChallengePassword(t *testing.T) {
	testKeys(t)
	for _, pw := range []string{"plain-Printable+/=", "pässwörd", ""} {
		c, err := x509.ParseCertificateRequest(newCSR(t, rsaKeys[3], "x", pw))
		require.NoError(t, err)
		got, err := ChallengePassword(c)
		require.NoError(t, err)
		require.Equal(t, pw, got)
	}
}

// TestAddChallengePasswordInvalidUTF8: a password that is not UTF-8 is refused, not
// written into a UTF8String, which holds UTF-8 only (X.680); before, "\xff" was
// written as it was.
func TestAddChallengePasswordInvalidUTF8(t *testing.T) {
	testKeys(t)
	csr := newCSR(t, rsaKeys[3], "device", "")
	for _, pw := range []string{"\xff", "ok\xc3", "\xed\xa0\x80"} {
		der, err := AddChallengePassword(csr, pw, rsaKeys[3], nil)
		require.ErrorIs(t, err, ErrBadContent, "%q written: %x", pw, der)
	}
	der, err := AddChallengePassword(csr, "grüße", rsaKeys[3], nil)
	require.NoError(t, err)
	parsed, err := ParseCertificateRequest(der)
	require.NoError(t, err)
	pw, err := ChallengePassword(parsed)
	require.NoError(t, err)
	require.Equal(t, "grüße", pw)
}
