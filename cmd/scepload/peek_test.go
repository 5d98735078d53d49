package main

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
)

// TestPeekCertRepAgreesWithParser: what -verify=false reads of a reply (status,
// failInfo, recipientNonce) is what the verifying parser reads, for SUCCESS and
// FAILURE replies of a real gateway; anything else is refused, never guessed.
func TestPeekCertRepAgreesWithParser(t *testing.T) {
	env, err := crptest.New(crptest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	self, err := scep.SelfSigned(key, pkix.Name{CommonName: "peek"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	good, _, err := env.Challenge("alice@example.com", "alice-laptop", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, challenge string
		want            scep.PKIStatus
	}{
		{"success", good, scep.Success},
		{"failure", "not-a-challenge", scep.Failure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "alice@example.com"}}, key)
			if err != nil {
				t.Fatal(err)
			}
			csr, err := scep.AddChallengePassword(base, tc.challenge, key, nil)
			if err != nil {
				t.Fatal(err)
			}
			msg, nonce, err := scep.NewRequest(scep.RequestOptions{Type: scep.PKCSReq, TransactionID: "peek-" + tc.name,
				Payload: csr, Recipient: env.RA.EncryptionCertificate, Cipher: scep.AES256CBC, Digest: crypto.SHA256,
				SignerCert: self, Signer: key})
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			env.Server.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/scep?operation=PKIOperation", bytes.NewReader(msg)))
			if rec.Code != http.StatusOK {
				t.Fatalf("HTTP %d", rec.Code)
			}
			reply := rec.Body.Bytes()
			parsed, err := scep.ParsePKIMessage(reply, scep.ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			p, err := peekCertRep(reply)
			if err != nil {
				t.Fatal(err)
			}
			if p.status != tc.want || p.status != parsed.Status || p.failInfo != parsed.FailInfo ||
				!bytes.Equal(p.nonce, parsed.RecipientNonce) || !bytes.Equal(p.nonce, nonce) {
				t.Fatalf("peek %+v, parser status %v failInfo %v nonce %x", p, parsed.Status, parsed.FailInfo, parsed.RecipientNonce)
			}
			if got := outcome(p.status, p.failInfo, p.nonce, nonce); (got == "") != (tc.want == scep.Success) {
				t.Fatalf("outcome %q", got)
			}
			for _, bad := range [][]byte{nil, []byte("garbage"), reply[:len(reply)/2]} {
				if _, err := peekCertRep(bad); err == nil {
					t.Fatalf("peek accepted %d bytes of garbage", len(bad))
				}
			}
		})
	}
}
