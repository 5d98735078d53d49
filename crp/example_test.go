package crp_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/profile"
	"github.com/scepkit/scepkit/scep"
)

// Assembling a gateway from the packages: a CA and RA, a challenge verifier for this
// gateway, a directory, a device registry, a profile, a template, the registration
// point, and the SCEP server in front of it.
func Example_gateway() {
	ca, _ := catemplate.NewCA(catemplate.CAOptions{KeySize: 2048})
	ra, _ := catemplate.NewRA(ca, catemplate.RAOptions{})

	mdmPub, _, _ := ed25519.GenerateKey(rand.Reader) // the MDM's published key
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

	rp := &crp.RegistrationPoint{
		Verifier: &challenge.Verifier{Keys: keys, Issuer: "mdm.example.com", Audience: "gw.example.com",
			Replay: &challenge.MemoryReplayStore{}},
		Users: users, Devices: devices, Profiles: crp.MemoryProfiles{"vpn": prof},
		Templates: &catemplate.NDESResolver{SignatureTemplate: "User", EncryptionTemplate: "User",
			GeneralPurposeTemplate: "User", Templates: templates},
		Issuer: crp.CAIssuer{CA: ca}, CACert: ca.Certificate, Notifier: &crp.MemoryNotifier{},
	}
	if err := rp.Validate(); err != nil {
		log.Fatal(err)
	}
	srv := &scep.Server{
		CACerts: []*x509.Certificate{ca.Certificate}, SignerCert: ra.SigningCertificate, Signer: ra.Signer,
		Recipients: []scep.Recipient{{Certificate: ra.EncryptionCertificate, Key: ra.Decrypter}},
		Responder:  rp, Renewal: true,
	}
	scep.Mount(http.DefaultServeMux, "/certsrv/mscep/mscep.dll", srv)
	fmt.Println(srv.Validate())
	// Output: <nil>
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
