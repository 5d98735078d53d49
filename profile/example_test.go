package profile_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/scepkit/scepkit/profile"
)

func ExampleRender() {
	p := &profile.Profile{
		ID:                "wifi-user",
		Name:              "Contoso Wi-Fi",
		CertificateType:   profile.UserCertificate,
		Platform:          profile.Windows,
		SubjectNameFormat: `CN={{UserName}},OU="{{OnPrem_Distinguished_Name}}",O=Contoso`,
		SubjectAlternativeNames: []profile.SAN{
			{Type: profile.SANUPN, Value: "{{UserPrincipalName}}"},
			{Type: profile.SANDNS, Value: "{{DeviceName}}.corp.contoso.com"},
		},
		Validity:                profile.ValidityPeriod{Value: 1, Unit: profile.Years},
		KeyUsage:                x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		KeySize:                 2048,
		ExtendedKeyUsages:       []profile.EKU{profile.EKUClientAuth},
		RenewalThresholdPercent: 20,
		ServerURLs:              []string{"https://ndes.contoso.com/certsrv/mscep/mscep.dll"},
		CAFingerprint:           make([]byte, 20),
	}
	user := profile.User{
		UserName:                "jane,CN=admin", // hostile: stays one CN value
		UserPrincipalName:       "jane@contoso.com",
		OnPremDistinguishedName: "CN=Jane,OU=Staff,DC=contoso,DC=com",
	}
	device := profile.Device{Name: "laptop-42"}

	r, err := profile.Render(p, user, device, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.SubjectString())
	fmt.Println(len(r.Attributes), "attributes")
	fmt.Println(r.UPNs, r.DNSNames)

	// An empty variable is an error, never an empty string.
	_, err = profile.Render(p, profile.User{UserName: "jane"}, device, nil)
	fmt.Println(err)
	// Output:
	// CN="jane,CN=admin", OU="CN=Jane,OU=Staff,DC=contoso,DC=com", O=Contoso
	// 3 attributes
	// [jane@contoso.com] [laptop-42.corp.contoso.com]
	// profile: subject: {{OnPrem_Distinguished_Name}}: variable has no value
}

// A bundle: the root, the SCEP enrollment and an EAP-TLS Wi-Fi network that uses the
// enrolled certificate, as one Apple configuration profile.
func ExampleBundle_MobileConfig() {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Contoso Root CA"},
		NotBefore: time.Now(), NotAfter: time.Now().AddDate(10, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	root, _ := x509.ParseCertificate(der)

	p := &profile.Profile{
		ID: "wifi-user", Name: "Contoso Wi-Fi", CertificateType: profile.UserCertificate,
		Platform: profile.IOS, SubjectNameFormat: "CN={{UserPrincipalName}}",
		SubjectAlternativeNames: []profile.SAN{{Type: profile.SANUPN, Value: "{{UserPrincipalName}}"}},
		Validity:                profile.ValidityPeriod{Value: 1, Unit: profile.Years},
		KeyUsage:                x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		KeySize:                 2048, ExtendedKeyUsages: []profile.EKU{profile.EKUClientAuth},
		RenewalThresholdPercent: 20, ServerURLs: []string{"https://scep.contoso.com/scep"}, RootCA: root,
	}
	r, err := profile.Render(p, profile.User{UserPrincipalName: "jane@contoso.com"}, profile.Device{ID: "d1"}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	b := &profile.Bundle{SCEP: r, DeviceID: "d1",
		WiFi: &profile.WiFi{SSID: "Contoso", TrustedServerNames: []string{"radius.contoso.com"}}}
	out, err := b.MobileConfig(profile.ExportOptions{Challenge: "one-time-challenge"})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, t := range []string{"com.apple.security.root", "com.apple.security.scep", "com.apple.wifi.managed"} {
		fmt.Println(t, bytes.Contains(out, []byte("<string>"+t+"</string>")))
	}

	// A server name that would split into two in the Windows profile is refused.
	b.WiFi.TrustedServerNames = []string{"radius.contoso.com;evil.example"}
	_, err = b.MobileConfig(profile.ExportOptions{})
	fmt.Println(errors.Is(err, profile.ErrInvalidProfile))
	// Output:
	// com.apple.security.root true
	// com.apple.security.scep true
	// com.apple.wifi.managed true
	// true
}
