package catemplate_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/profile"
)

// Templates for certificates that a device presents to a network: a Wi-Fi template
// for EAP-TLS against NPS or FreeRADIUS, and a VPN template for IKEv2.
//
// What the servers check, and where it comes from:
//
//   - Extended key usage Client Authentication (1.3.6.1.5.5.7.3.2): EAP-TLS servers
//     and Windows' own certificate filter look for it (RFC 5216 leaves the policy to
//     the server; Windows documents it as a prerequisite). The template sets it; the
//     profile's EKU list must name it too, or the device will not select the
//     certificate. The VPN template adds IP security IKE intermediate
//     (1.3.6.1.5.5.7.3.17, RFC 4945 section 5.1.3.12), which some IKEv2 gateways ask
//     for.
//   - Key usage digitalSignature: a TLS 1.2/1.3 or IKEv2 client proves possession by a
//     signature. keyEncipherment is only for RSA key transport and is left out.
//   - A name the server maps to an account: NPS maps the UPN in the subject
//     alternative name, FreeRADIUS the identity or any name its policy reads. The
//     template takes SANs from the rendered profile (SANsFromRequest stays false), so
//     the profile's {{UserPrincipalName}} SAN, not the device, decides it.
//   - Lifetime: the shorter of the template's and the profile's; the device renews at
//     the profile's threshold, so a server sees an expired certificate only from a
//     device that stopped renewing. Revocation reaches the server through the CA's CRL
//     (FreeRADIUS check_crl, NPS through its revocation check).
func ExampleTemplate_networks() {
	wifi := &catemplate.Template{
		Name: "ScepWiFi", Validity: 365 * 24 * time.Hour, Backdate: 5 * time.Minute, Published: true,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		MinKeySize:   2048, KeyTypes: []profile.KeyType{profile.RSA, profile.ECDSAP256},
	}
	vpn := &catemplate.Template{
		Name: "ScepVPN", Validity: 365 * 24 * time.Hour, Backdate: 5 * time.Minute, Published: true,
		KeyUsage:            x509.KeyUsageDigitalSignature,
		ExtKeyUsages:        []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		UnknownExtKeyUsages: []asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 17}},
		MinKeySize:          2048, KeyTypes: []profile.KeyType{profile.RSA, profile.ECDSAP256},
	}

	ca, err := catemplate.NewCA(catemplate.CAOptions{KeyType: profile.ECDSAP256})
	if err != nil {
		panic(err)
	}
	p := &profile.Profile{
		ID: "wifi", Name: "Corporate Wi-Fi", CertificateType: profile.UserCertificate, Platform: profile.Android,
		SubjectNameFormat:       "CN={{UserPrincipalName}}",
		SubjectAlternativeNames: []profile.SAN{{Type: profile.SANUPN, Value: "{{UserPrincipalName}}"}},
		Validity:                profile.ValidityPeriod{Value: 1, Unit: profile.Years},
		KeyUsage:                x509.KeyUsageDigitalSignature, KeyType: profile.ECDSAP256,
		ExtendedKeyUsages:       []profile.EKU{profile.EKUClientAuth},
		RenewalThresholdPercent: 20, ServerURLs: []string{"https://scep.example.com/scep"}, RootCA: ca.Certificate,
	}
	r, err := profile.Render(p, profile.User{UserPrincipalName: "jane@example.com"}, profile.Device{}, nil)
	if err != nil {
		panic(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{RawSubject: r.RawSubject}, key)
	csr, _ := x509.ParseCertificateRequest(der)

	for _, t := range []*catemplate.Template{wifi, vpn} {
		tmpl, err := catemplate.Apply(t, csr, r, ca.Certificate, time.Now(), nil)
		if err != nil {
			panic(err)
		}
		cert, err := ca.Sign(context.Background(), tmpl, csr.PublicKey)
		if err != nil {
			panic(err)
		}
		var names *profile.AltNames
		for _, e := range cert.Extensions {
			if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 17}) {
				if names, err = profile.ParseAltNames(e.Value); err != nil {
					panic(err)
				}
			}
		}
		fmt.Println(t.Name, "clientAuth:", cert.ExtKeyUsage[0] == x509.ExtKeyUsageClientAuth,
			"IKE:", len(cert.UnknownExtKeyUsage) == 1, "UPN:", names.UPNs)
	}
	// Output:
	// ScepWiFi clientAuth: true IKE: false UPN: [jane@example.com]
	// ScepVPN clientAuth: true IKE: true UPN: [jane@example.com]
}
