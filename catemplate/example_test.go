package catemplate_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/profile"
)

func ExampleNDESResolver() {
	templates := catemplate.MapStore{
		"ScepSign":    {Name: "ScepSign", Validity: 365 * 24 * time.Hour, KeyUsage: x509.KeyUsageDigitalSignature, Published: true},
		"ScepEncrypt": {Name: "ScepEncrypt", Validity: 365 * 24 * time.Hour, KeyUsage: x509.KeyUsageKeyEncipherment, Published: true},
		"ScepBoth":    {Name: "ScepBoth", Validity: 365 * 24 * time.Hour, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment},
	}
	res := &catemplate.NDESResolver{
		SignatureTemplate:      "ScepSign",
		EncryptionTemplate:     "ScepEncrypt",
		GeneralPurposeTemplate: "ScepBoth",
		Templates:              templates,
	}
	ctx := context.Background()
	for _, ku := range []x509.KeyUsage{x509.KeyUsageDigitalSignature, x509.KeyUsageKeyEncipherment} {
		t, err := res.Resolve(ctx, &catemplate.ResolveRequest{KeyUsage: ku})
		fmt.Println(t.Name, err)
	}
	_, err := res.Resolve(ctx, &catemplate.ResolveRequest{KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment})
	fmt.Println(errors.Is(err, catemplate.ErrNotPublished), err)
	// Output:
	// ScepSign <nil>
	// ScepEncrypt <nil>
	// true catemplate: template "ScepBoth": for general purpose: template not published on the CA
}

func ExampleCA_Sign() {
	ca, err := catemplate.NewCA(catemplate.CAOptions{KeyType: profile.ECDSAP256})
	if err != nil {
		panic(err)
	}
	p := &profile.Profile{
		ID: "dev", Name: "Device cert", CertificateType: profile.DeviceCertificate, Platform: profile.Android,
		SubjectNameFormat:       "CN={{AAD_Device_ID}}",
		Validity:                profile.ValidityPeriod{Value: 30, Unit: profile.Days},
		KeyUsage:                x509.KeyUsageDigitalSignature,
		KeyType:                 profile.ECDSAP256,
		ExtendedKeyUsages:       []profile.EKU{profile.EKUClientAuth},
		RenewalThresholdPercent: 20,
		ServerURLs:              []string{"https://scep.example.com/scep"},
		RootCA:                  ca.Certificate,
	}
	r, err := profile.Render(p, profile.User{}, profile.Device{AADDeviceID: "0f1e2d3c"}, nil)
	if err != nil {
		panic(err)
	}
	// The device's side: a key and a CSR for the rendered subject.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{RawSubject: r.RawSubject}, key)
	csr, _ := x509.ParseCertificateRequest(der)
	if err := profile.Check(csr, r); err != nil {
		panic(err)
	}

	t := &catemplate.Template{
		Name: "IntuneDevice", Validity: 365 * 24 * time.Hour, Published: true,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		KeyTypes:     []profile.KeyType{profile.ECDSAP256},
	}
	now := time.Now()
	tmpl, err := catemplate.Apply(t, csr, r, ca.Certificate, now, nil)
	if err != nil {
		panic(err)
	}
	cert, err := ca.Sign(context.Background(), tmpl, csr.PublicKey)
	if err != nil {
		panic(err)
	}
	fmt.Println(cert.Subject, "issued by", cert.Issuer)
	fmt.Println("valid for", cert.NotAfter.Sub(cert.NotBefore).Round(24*time.Hour).Hours()/24, "days (the profile's 30, not the template's 365)")
	// Output:
	// CN=0f1e2d3c issued by CN=scepkit CA
	// valid for 30 days (the profile's 30, not the template's 365)
}
