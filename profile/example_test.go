package profile_test

import (
	"crypto/x509"
	"fmt"

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
