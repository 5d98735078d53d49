// Command minimal is a whole scepkit gateway in about 70 lines: an MDM mints a
// challenge (keeping its private key), a gateway verifies it with the Certificate
// Registration Point, resolves a template and issues from the built-in CA, served over
// HTTP on 127.0.0.1, and a device enrolls with scep.Client.
//
//	go run ./examples/minimal
//
// Errors are handled with check, to keep the wiring in view; the quickstart does the
// same with full error handling, logs and a demo MDM.
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log"
	"net/http/httptest"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/profile"
	"github.com/scepkit/scepkit/scep"
)

func main() {
	// The MDM keeps its private key and mints challenges; the gateway gets the public key.
	mdmPub, mdmKey, err := ed25519.GenerateKey(rand.Reader)
	check(err)
	mdm := &challenge.Issuer{Name: "mdm.example.com", Key: mdmKey}
	keys := challenge.NewKeySet()
	_, err = keys.AddKey(mdmPub)
	check(err)

	// The CA, and the RA that signs SCEP replies and decrypts requests.
	ca, err := catemplate.NewCA(catemplate.CAOptions{Subject: pkix.Name{CommonName: "Example CA"}})
	check(err)
	ra, err := catemplate.NewRA(ca, catemplate.RAOptions{})
	check(err)

	// Who may enroll: a user, her device, the profile the MDM gave it, a template.
	users, devices := &crp.MemoryDirectory{}, &crp.MemoryRegistry{}
	users.Put(crp.User{User: profile.User{ID: "alice", UserPrincipalName: "alice@example.com"}})
	devices.Put(crp.Device{Device: profile.Device{ID: "laptop-1"}, UserID: "alice", Compliant: true})
	vpn := &profile.Profile{ID: "vpn", Name: "VPN", CertificateType: profile.UserCertificate,
		Platform: profile.Windows, SubjectNameFormat: "CN={{UserPrincipalName}}",
		Validity: profile.ValidityPeriod{Value: 1, Unit: profile.Years}, KeyUsage: x509.KeyUsageDigitalSignature,
		KeySize: 2048, ExtendedKeyUsages: []profile.EKU{profile.EKUClientAuth}, RenewalThresholdPercent: 20,
		ServerURLs: []string{"https://gw.example.com/scep"}, RootCA: ca.Certificate}
	templates := catemplate.MapStore{"User": {Name: "User", Validity: 365 * 24 * time.Hour, Published: true,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}}

	// The gateway: the registration point decides, the SCEP server speaks RFC 8894.
	rp := &crp.RegistrationPoint{
		Verifier: &challenge.Verifier{Keys: keys, Issuer: "mdm.example.com", Audience: "gw.example.com",
			Replay: &challenge.MemoryReplayStore{}},
		Users: users, Devices: devices, Profiles: crp.MemoryProfiles{"vpn": vpn},
		Templates: &catemplate.ProfileResolver{Templates: templates, ByProfile: map[string]string{"vpn": "User"}},
		Issuer:    crp.CAIssuer{CA: ca},
	}
	check(rp.Validate())
	srv := crp.NewServer(rp, ra)
	check(srv.Validate())
	ts := httptest.NewServer(srv) // real HTTP on 127.0.0.1
	defer ts.Close()

	// The device: the challenge from its profile in a CSR, enrolled, the CA pinned.
	ch, _, err := mdm.Issue(challenge.Request{UserID: "alice", DeviceID: "laptop-1", ProfileID: "vpn",
		Audience: "gw.example.com"})
	check(err)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	check(err)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "alice@example.com"}}, key)
	check(err)
	csr, err = scep.AddChallengePassword(csr, ch, key, nil)
	check(err)
	pin := sha256.Sum256(ca.Certificate.Raw)
	cert, err := (&scep.Client{URL: ts.URL, CAFingerprint: pin[:]}).Enroll(context.Background(), csr, key)
	check(err)
	fmt.Printf("issued %s by %s, serial %x\n", cert.Subject, cert.Issuer, cert.SerialNumber)
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
