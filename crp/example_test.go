package crp_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/profile"
	"github.com/scepkit/scepkit/scep"
)

// Assembling a gateway from the packages: the MDM's challenge key, a CA and RA, a
// challenge verifier for this gateway, a directory, a device registry, a profile, a
// template, the registration point and the SCEP server in front of it; then a device
// enrolls over HTTP with a challenge the MDM minted. (examples/minimal is the same as a
// program.)
func Example_gateway() {
	mdmPub, mdmKey, _ := ed25519.GenerateKey(rand.Reader) // the MDM keeps mdmKey
	mdm := &challenge.Issuer{Name: "mdm.example.com", Key: mdmKey}
	keys := challenge.NewKeySet() // the gateway knows only the public key
	keys.AddKey(mdmPub)

	ca, _ := catemplate.NewCA(catemplate.CAOptions{Subject: pkix.Name{CommonName: "Example CA"}})
	ra, _ := catemplate.NewRA(ca, catemplate.RAOptions{})

	users, devices := &crp.MemoryDirectory{}, &crp.MemoryRegistry{}
	users.Put(crp.User{User: profile.User{ID: "alice", UserPrincipalName: "alice@example.com"}})
	devices.Put(crp.Device{Device: profile.Device{ID: "laptop-1"}, UserID: "alice", Compliant: true})
	prof := &profile.Profile{ID: "vpn", Name: "VPN", CertificateType: profile.UserCertificate,
		Platform: profile.Windows, SubjectNameFormat: "CN={{UserPrincipalName}}",
		Validity: profile.ValidityPeriod{Value: 1, Unit: profile.Years},
		KeyUsage: x509.KeyUsageDigitalSignature, KeySize: 2048,
		ExtendedKeyUsages: []profile.EKU{profile.EKUClientAuth}, RenewalThresholdPercent: 20,
		ServerURLs: []string{"https://gw.example.com/scep"}, RootCA: ca.Certificate}
	templates := catemplate.MapStore{"User": {Name: "User", Validity: 365 * 24 * time.Hour,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		MinKeySize: 2048, Published: true}}

	rp := &crp.RegistrationPoint{
		Verifier: &challenge.Verifier{Keys: keys, Issuer: "mdm.example.com", Audience: "gw.example.com",
			Replay: &challenge.MemoryReplayStore{}},
		Users: users, Devices: devices, Profiles: crp.MemoryProfiles{"vpn": prof},
		Templates: &catemplate.NDESResolver{SignatureTemplate: "User", EncryptionTemplate: "User",
			GeneralPurposeTemplate: "User", Templates: templates},
		Issuer: crp.CAIssuer{CA: ca}, Notifier: &crp.MemoryNotifier{},
	}
	if err := rp.Validate(); err != nil {
		log.Fatal(err)
	}
	srv := crp.NewServer(rp, ra) // the CA chain, the RA's keys, rp deciding
	mux := http.NewServeMux()
	scep.Mount(mux, "/certsrv/mscep/mscep.dll", srv)
	ts := httptest.NewServer(mux)
	defer ts.Close()

	// The device, with the challenge from its profile.
	ch, _, _ := mdm.Issue(challenge.Request{UserID: "alice", DeviceID: "laptop-1", ProfileID: "vpn",
		Audience: "gw.example.com"})
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "alice@example.com"}}, key)
	csr, _ = scep.AddChallengePassword(csr, ch, key, nil)
	pin := sha256.Sum256(ca.Certificate.Raw)
	client := &scep.Client{URL: ts.URL + "/certsrv/mscep/mscep.dll", CAFingerprint: pin[:]}
	cert, err := client.Enroll(context.Background(), csr, key)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cert.Subject, "issued by", cert.Issuer)
	// Output: CN=alice@example.com issued by CN=Example CA
}

// Embedding the verifier in a CA that has its own front end: no SCEP, the same phases.
func ExampleRegistrationPoint_Enroll() {
	env := exampleEnv()
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	ch, _, _ := env.challenges.Issue(challenge.Request{UserID: "alice", DeviceID: "laptop-1",
		ProfileID: "vpn", Audience: "gw.example.com"})
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "alice@example.com"}}, key)
	csr, _ := x509.ParseCertificateRequest(der)

	res, err := env.rp.Enroll(context.Background(), &crp.EnrollRequest{TransactionID: "rest-1", CSR: csr, Challenge: ch})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Status, res.Certificate.Subject.CommonName)

	// The same challenge again: refused in phase 2.
	_, err = env.rp.Enroll(context.Background(), &crp.EnrollRequest{TransactionID: "rest-2", CSR: csr, Challenge: ch})
	var ce *crp.Error
	if errors.As(err, &ce) {
		fmt.Println(ce.Phase, "|", ce.Reason, "|", ce.FailInfo())
	}
	// Output:
	// SUCCESS alice@example.com
	// phase2-genuineness | challenge already used | badRequest
}

type example struct {
	rp         *crp.RegistrationPoint
	challenges *challenge.Issuer
	ca         *catemplate.CA
}

func exampleEnv() *example {
	ca, err := catemplate.NewCA(catemplate.CAOptions{KeySize: 2048})
	if err != nil {
		log.Fatal(err)
	}
	mdmPub, mdmKey, _ := ed25519.GenerateKey(rand.Reader)
	keys := challenge.NewKeySet()
	keys.AddKey(mdmPub)
	users, devices := &crp.MemoryDirectory{}, &crp.MemoryRegistry{}
	users.Put(crp.User{User: profile.User{ID: "alice", UserPrincipalName: "alice@example.com"}})
	devices.Put(crp.Device{Device: profile.Device{ID: "laptop-1"}, UserID: "alice", Compliant: true})
	prof := &profile.Profile{ID: "vpn", Name: "VPN", CertificateType: profile.UserCertificate,
		Platform: profile.Windows, SubjectNameFormat: "CN={{UserPrincipalName}}",
		Validity: profile.ValidityPeriod{Value: 1, Unit: profile.Years},
		KeyUsage: x509.KeyUsageDigitalSignature, KeySize: 2048,
		ExtendedKeyUsages: []profile.EKU{profile.EKUClientAuth}, RenewalThresholdPercent: 20,
		ServerURLs: []string{"https://gw.example.com/scep"}, RootCA: ca.Certificate}
	templates := catemplate.MapStore{"User": {Name: "User", Validity: 365 * 24 * time.Hour,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		MinKeySize: 2048, Published: true}}
	return &example{
		rp: &crp.RegistrationPoint{
			Verifier: &challenge.Verifier{Keys: keys, Issuer: "mdm.example.com", Audience: "gw.example.com",
				Replay: &challenge.MemoryReplayStore{}},
			Users: users, Devices: devices, Profiles: crp.MemoryProfiles{"vpn": prof},
			Templates: &catemplate.NDESResolver{GeneralPurposeTemplate: "User", SignatureTemplate: "User",
				EncryptionTemplate: "User", Templates: templates},
			Issuer: crp.CAIssuer{CA: ca},
		},
		challenges: &challenge.Issuer{Name: "mdm.example.com", Key: mdmKey},
		ca:         ca,
	}
}

// Deciding for a CA that issues by itself (step-ca, AD CS, a cloud CA): Decide runs
// the phases and says what the certificate must contain; the CA issues it; Complete
// checks, records and notifies.
func ExampleRegistrationPoint_Decide() {
	env := exampleEnv()
	ctx := context.Background()
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	ch, _, _ := env.challenges.Issue(challenge.Request{UserID: "alice", DeviceID: "laptop-1",
		ProfileID: "vpn", Audience: "gw.example.com"})
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "alice@example.com"}}, key)
	csr, _ := x509.ParseCertificateRequest(der)

	d, err := env.rp.Decide(ctx, &crp.EnrollRequest{TransactionID: "ext-1", CSR: csr, Challenge: ch})
	if err != nil {
		log.Fatal(err) // a *crp.Error: tell the CA not to issue
	}
	fmt.Println(d.TemplateName, d.Template.KeyUsage == x509.KeyUsageDigitalSignature, d.Template.ExtKeyUsage)

	// The CA issues what was decided (here scepkit's own CA stands in for it).
	cert, _ := env.ca.Sign(ctx, d.Template, csr.PublicKey)
	fmt.Println(env.rp.Complete(ctx, &crp.Completion{TransactionID: d.TransactionID, CSR: csr, Certificate: cert}))

	// A certificate is completed once.
	err = env.rp.Complete(ctx, &crp.Completion{TransactionID: d.TransactionID, Certificate: cert})
	fmt.Println(errors.Is(err, crp.ErrCompleted))
	// Output:
	// User true [clientAuth]
	// <nil>
	// true
}
