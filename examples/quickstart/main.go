// Command quickstart runs a SCEP gateway on 127.0.0.1 and enrolls a device against it
// over real HTTP, printing each step.
//
//	go run ./examples/quickstart
package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/scep"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run() error {
	ca, err := catemplate.NewCA(catemplate.CAOptions{KeySize: 2048, Subject: pkix.Name{CommonName: "quickstart CA"}})
	if err != nil {
		return err
	}
	ra, err := catemplate.NewRA(ca, catemplate.RAOptions{})
	if err != nil {
		return err
	}
	fmt.Println("CA:", ca.Certificate.Subject, "RA signing:", ra.SigningCertificate.Subject)
	const challenge = "quickstart-static-challenge"
	srv := &scep.Server{
		CACerts:    []*x509.Certificate{ca.Certificate},
		SignerCert: ra.SigningCertificate, Signer: ra.Signer,
		Recipients: []scep.Recipient{{Certificate: ra.EncryptionCertificate, Key: ra.Decrypter}},
		Responder: scep.ResponderFunc(func(ctx context.Context, req *scep.Request) (*scep.Response, error) {
			if req.MessageType != scep.PKCSReq {
				return nil, scep.Fail(scep.BadRequest, errors.New("only PKCSReq"))
			}
			if subtle.ConstantTimeCompare([]byte(req.ChallengePassword), []byte(challenge)) != 1 {
				return nil, scep.Fail(scep.BadRequest, errors.New("wrong challenge"))
			}
			if err := req.CSR.CheckSignature(); err != nil {
				return nil, scep.Fail(scep.BadMessageCheck, err)
			}
			serial, err := catemplate.RandomSerial(nil)
			if err != nil {
				return nil, err
			}
			now := time.Now()
			cert, err := ca.Sign(ctx, &x509.Certificate{SerialNumber: serial, Subject: req.CSR.Subject,
				NotBefore: now.Add(-time.Minute), NotAfter: now.Add(24 * time.Hour),
				KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, req.CSR.PublicKey)
			if err != nil {
				return nil, err
			}
			return &scep.Response{Certificate: cert}, nil
		}),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/scep", srv)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln)
	defer hs.Close()
	url := "http://" + ln.Addr().String() + "/scep"
	fmt.Println("gateway:", url)

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "alice@example.com"}}, key)
	if err != nil {
		return err
	}
	if csr, err = scep.AddChallengePassword(csr, challenge, key, nil); err != nil {
		return err
	}
	client := &scep.Client{URL: url}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	caps, err := client.GetCACaps(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("caps: %q\n", caps)
	cert, err := client.Enroll(ctx, csr, key)
	if err != nil {
		return err
	}
	if err := cert.CheckSignatureFrom(ca.Certificate); err != nil {
		return err
	}
	fmt.Printf("issued: subject=%s serial=%x valid %s .. %s\n", cert.Subject, cert.SerialNumber,
		cert.NotBefore.Format(time.RFC3339), cert.NotAfter.Format(time.RFC3339))
	return nil
}
