package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/profile"
	"github.com/scepkit/scepkit/scep"
)

// newCSR makes the device's CSR: the subject the profile renders, the challenge as its
// challengePassword.
func newCSR(key *rsa.PrivateKey, rawSubject []byte, ch string) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{RawSubject: rawSubject}, key)
	if err != nil {
		return nil, err
	}
	return scep.AddChallengePassword(der, ch, key, nil)
}

func challengeFingerprint(ch string) string { return challenge.Fingerprint(ch) }

func renderFor(gw *gateway, u crp.User, d crp.Device) ([]byte, error) {
	r, err := profile.Render(gw.Profile, u.User, d.Device, nil)
	if err != nil {
		return nil, err
	}
	return r.RawSubject, nil
}
