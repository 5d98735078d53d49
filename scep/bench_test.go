package scep

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkPKIOperation measures a whole PKCSReq -> CertRep round trip through the
// handler (parse, verify, decrypt, Responder signing a certificate with the CA key,
// CertRep built, encrypted and signed) with RSA-2048 keys, AES-256-CBC and SHA-256,
// and reports it against its floor measured in the same run: the private-key operations
// no implementation can avoid (one RSA-2048 decrypt of the content key, one RSA-2048
// signature of the certificate, one of the CertRep).
func BenchmarkPKIOperation(b *testing.B) {
	pki := newTestPKI(b)
	d := newDevice(b)
	csr := newCSR(b, d.key, "bench", "secret")
	der, _, err := NewRequest(RequestOptions{Type: PKCSReq, TransactionID: "bench", Payload: csr,
		Recipient: pki.raEnc, Cipher: AES256CBC, Digest: crypto.SHA256, SignerCert: d.self, Signer: d.key})
	if err != nil {
		b.Fatal(err)
	}
	serial := big.NewInt(1000)
	now := time.Now()
	s := &Server{CACerts: []*x509.Certificate{pki.ca}, SignerCert: pki.raSign, Signer: pki.raKey,
		Recipients: []Recipient{{pki.raEnc, pki.raEncK}},
		Responder: ResponderFunc(func(_ context.Context, req *Request) (*Response, error) {
			if err := req.CSR.CheckSignature(); err != nil {
				return nil, err
			}
			raw, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: serial,
				Subject: req.CSR.Subject, NotBefore: now, NotAfter: now.Add(time.Hour)}, pki.ca, req.CSR.PublicKey, pki.caKey)
			if err != nil {
				return nil, err
			}
			c, err := x509.ParseCertificate(raw)
			return &Response{Certificate: c}, err
		})}
	ek, err := rsa.EncryptPKCS1v15(rand.Reader, pki.raEnc.PublicKey.(*rsa.PublicKey), make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	signers := []crypto.Signer{pki.caKey, pki.raKey}
	// The round trip and its floor alternate, so that both see the same load.
	var full, floor time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/scep?operation=PKIOperation", bytes.NewReader(der)))
		if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/x-pki-message" {
			b.Fatalf("HTTP %d", rec.Code)
		}
		t1 := time.Now()
		rsaFloorOnce(b, pki.raEncK, signers, ek)
		full += t1.Sub(t0)
		floor += time.Since(t1)
	}
	b.StopTimer()
	b.ReportMetric(float64(full.Nanoseconds())/float64(b.N), "op-ns/op")
	b.ReportMetric(float64(floor.Nanoseconds())/float64(b.N), "floor-ns/op")
	b.ReportMetric(float64(full)/float64(floor), "x-floor")
}

// rsaFloorOnce runs one RSA decrypt of a 32-byte content key (as a PKCS#1 v1.5 key
// transport is unwrapped) and one SHA-256 RSA signature per signer.
func rsaFloorOnce(b *testing.B, dec crypto.Decrypter, signers []crypto.Signer, ek []byte) {
	digest := sha256.Sum256([]byte("floor"))
	if _, err := dec.Decrypt(rand.Reader, ek, &rsa.PKCS1v15DecryptOptions{SessionKeyLen: 32}); err != nil {
		b.Fatal(err)
	}
	for _, s := range signers {
		if _, err := s.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParsePKIMessage(b *testing.B) {
	pki := newTestPKI(b)
	d := newDevice(b)
	der, _, err := NewRequest(RequestOptions{Type: PKCSReq, TransactionID: "bench", Payload: newCSR(b, d.key, "bench", "secret"),
		Recipient: pki.raEnc, SignerCert: d.self, Signer: d.key})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := ParsePKIMessage(der, ParseOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
