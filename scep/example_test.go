package scep_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/scepkit/scepkit/scep"
)

// newCA makes a throwaway CA that is also its own RA.
func newCA() (*x509.Certificate, *rsa.PrivateKey) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		log.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Example CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		log.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

// A Server is an http.Handler: mount it where clients expect it and give it a
// Responder that decides. Here the CA is its own RA and the Responder refuses all.
func ExampleServer() {
	caCert, caKey := newCA()
	srv := &scep.Server{
		CACerts:    []*x509.Certificate{caCert},
		SignerCert: caCert, Signer: caKey,
		Recipients: []scep.Recipient{{Certificate: caCert, Key: caKey}},
		Responder: scep.ResponderFunc(func(ctx context.Context, req *scep.Request) (*scep.Response, error) {
			return nil, scep.Fail(scep.BadRequest, errors.New("this example issues nothing"))
		}),
	}
	if err := srv.Validate(); err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	// Each path is served with and without the /pkiclient.exe that Intune-managed
	// devices and others append.
	scep.Mount(mux, "/scep", srv)
	scep.Mount(mux, "/certsrv/mscep/mscep.dll", srv) // where NDES clients look
	ts := httptest.NewServer(mux)
	defer ts.Close()

	resp, err := http.Get(ts.URL + "/certsrv/mscep/mscep.dll?operation=GetCACaps")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(os.Stdout, resp.Body)
	// Output:
	// AES
	// DES3
	// POSTPKIOperation
	// SHA-256
	// SHA-512
	// SCEPStandard
}

// A Client enrolls a key: it adds the challenge to the CSR, sends a PKCSReq signed by a
// self-signed certificate, and returns the issued certificate.
func ExampleClient_Enroll() {
	caCert, caKey := newCA()
	srv := &scep.Server{
		CACerts: []*x509.Certificate{caCert}, SignerCert: caCert, Signer: caKey,
		Recipients: []scep.Recipient{{Certificate: caCert, Key: caKey}},
		Responder: scep.ResponderFunc(func(ctx context.Context, req *scep.Request) (*scep.Response, error) {
			if req.ChallengePassword != "let-me-in" {
				return nil, scep.Fail(scep.BadRequest, errors.New("wrong challenge"))
			}
			if err := req.CSR.CheckSignature(); err != nil {
				return nil, scep.Fail(scep.BadMessageCheck, err)
			}
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: req.CSR.Subject,
				NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, req.CSR.PublicKey, caKey)
			if err != nil {
				return nil, err
			}
			cert, err := x509.ParseCertificate(der)
			return &scep.Response{Certificate: cert}, err
		}),
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()

	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "device-42"}}, key)
	csr, err := scep.AddChallengePassword(csr, "let-me-in", key, nil)
	if err != nil {
		log.Fatal(err)
	}
	// The device pins the CA it was given out of band (in an MDM profile, say).
	fp := sha256.Sum256(caCert.Raw)
	client := &scep.Client{URL: ts.URL, CAFingerprint: fp[:]}
	cert, err := client.Enroll(context.Background(), csr, key)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cert.Subject.CommonName, cert.Issuer.CommonName)
	// Output: device-42 Example CA
}

// ParsePKIMessage reads and verifies the signed layer; Decrypt opens the envelope.
// This is a PKCSReq captured from an Apple device (SHA-1, 3DES: legacy algorithms).
func ExampleParsePKIMessage() {
	der, err := os.ReadFile("testdata/PKCSReq.der")
	if err != nil {
		log.Fatal(err)
	}
	m, err := scep.ParsePKIMessage(der, scep.ParseOptions{AllowLegacy: true})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(m.MessageType, m.Digest == crypto.SHA1, len(m.SenderNonce), m.Signer.Subject.CommonName)

	_, err = scep.ParsePKIMessage(der, scep.ParseOptions{})
	fmt.Println(scep.FailInfoOf(err))
	// Output:
	// PKCSReq true 8 MDM SCEP SIGNER
	// badAlg
}
