package crp_test

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
	"log"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
)

// Renewing through Enroll: the client signs its new CSR with the key of the
// certificate being renewed, and the front end turns that into a Proof. The
// certificate without the signature proves nothing.
func ExampleSignatureProof() {
	env := exampleEnv()
	ctx := context.Background()
	newCSR := func(key crypto.Signer) *x509.CertificateRequest {
		der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: "alice@example.com"}}, key)
		csr, _ := x509.ParseCertificateRequest(der)
		return csr
	}
	oldKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ch, _, _ := env.challenges.Issue(challenge.Request{UserID: "alice", DeviceID: "laptop-1",
		ProfileID: "vpn", Audience: "gw.example.com"})
	res, err := env.rp.Enroll(ctx, &crp.EnrollRequest{TransactionID: "first", CSR: newCSR(oldKey), Challenge: ch})
	if err != nil {
		log.Fatal(err)
	}
	old := res.Certificate

	// The device: a new key, a CSR, and the old key's signature over the CSR's DER.
	newKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	csr := newCSR(newKey)
	sum := sha256.Sum256(csr.Raw)
	sig, _ := rsa.SignPKCS1v15(rand.Reader, oldKey, crypto.SHA256, sum[:])

	// The front end: no challenge, a proof.
	proof, err := crp.SignatureProof(old, csr, sig)
	if err != nil {
		log.Fatal(err)
	}
	res, err = env.rp.Enroll(ctx, &crp.EnrollRequest{TransactionID: "renew", CSR: csr, Proof: proof})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Status, res.Certificate.Subject.CommonName, newKey.PublicKey.Equal(res.Certificate.PublicKey))

	// alice's certificate with a signature by any other key (here the new one): no
	// proof, whoever sends it.
	other, _ := rsa.SignPKCS1v15(rand.Reader, newKey, crypto.SHA256, sum[:])
	_, err = crp.SignatureProof(old, csr, other)
	fmt.Println(errors.Is(err, crp.ErrNoProof))
	// Output:
	// SUCCESS alice@example.com true
	// true
}
