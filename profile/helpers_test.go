package profile

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// testRoot is a fixed fake root fingerprint (SHA-1 size).
var testFingerprint = []byte{
	0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23,
	0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67,
}

func testProfile() *Profile {
	return &Profile{
		ID:                "prof-1",
		Name:              "Contoso user VPN",
		CertificateType:   UserCertificate,
		Platform:          Windows,
		SubjectNameFormat: "CN={{UserPrincipalName}},OU=Devices,O=Contoso,C=US",
		SubjectAlternativeNames: []SAN{
			{Type: SANUPN, Value: "{{UserPrincipalName}}"},
			{Type: SANEmail, Value: "{{EmailAddress}}"},
			{Type: SANDNS, Value: "{{DeviceName}}.corp.contoso.com"},
			{Type: SANURI, Value: "urn:device:{{DeviceId}}"},
		},
		Validity:                ValidityPeriod{Value: 1, Unit: Years},
		KeyUsage:                x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		KeySize:                 2048,
		ExtendedKeyUsages:       []EKU{EKUClientAuth},
		RenewalThresholdPercent: 20,
		ServerURLs:              []string{"https://scep.contoso.com/certsrv/mscep/mscep.dll"},
		CAFingerprint:           testFingerprint,
	}
}

func testUser() User {
	return User{
		ID:                       "5f6c1b1e-0000-4000-8000-000000000001",
		UserPrincipalName:        "jane@contoso.com",
		Email:                    "jane.doe@contoso.com",
		UserName:                 "jane",
		OnPremDistinguishedName:  "CN=Jane Doe,OU=Staff,DC=contoso,DC=com",
		OnPremSamAccountName:     "CONTOSO\\jane",
		OnPremSecurityIdentifier: "S-1-5-21-1-2-3-1001",
	}
}

func testDevice() Device {
	return Device{
		ID:           "d1e2v3",
		AADDeviceID:  "aad-0001",
		SerialNumber: "C02XK1ZZJG5H",
		Name:         "janes-laptop",
		FQDN:         "janes-laptop.corp.contoso.com",
		IMEI:         "490154203237518",
		MEID:         "A0000000002329",
		WiFiMAC:      "00:11:22:33:44:55",
		EthernetMAC:  "66:77:88:99:aa:bb",
		EASID:        "EAS123",
	}
}

var (
	keyOnce sync.Once
	rsaKey  *rsa.PrivateKey
	rsaKey3 *rsa.PrivateKey
	ecKey   *ecdsa.PrivateKey
)

func testKeys(t testing.TB) {
	t.Helper()
	keyOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if rsaKey3, err = rsa.GenerateKey(rand.Reader, 3072); err != nil {
			panic(err)
		}
		if ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
	})
}

// csrFor builds the CSR a well-behaved device would send for r, then lets mod alter the
// request template before signing.
func csrFor(t testing.TB, r *Rendered, key crypto.Signer, mod func(*x509.CertificateRequest)) *x509.CertificateRequest {
	t.Helper()
	tmpl := &x509.CertificateRequest{RawSubject: r.RawSubject}
	if r.HasAltNames() {
		ext, err := r.AltNames().Extension(len(r.Attributes) == 0)
		require.NoError(t, err)
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, ext)
	}
	ku, err := asn1.Marshal(asn1.BitString{Bytes: []byte{reverseByte(byte(r.KeyUsage))}, BitLength: 8})
	require.NoError(t, err)
	tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oidKeyUsage, Critical: true, Value: ku})
	eku, err := asn1.Marshal(r.ExtKeyUsageOIDs)
	require.NoError(t, err)
	tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oidExtKeyUsage, Value: eku})
	if mod != nil {
		mod(tmpl)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	require.NoError(t, err)
	csr, err := x509.ParseCertificateRequest(der)
	require.NoError(t, err)
	return csr
}

// reverseByte maps crypto/x509's KeyUsage bit order to the DER bit string's.
func reverseByte(b byte) byte {
	var r byte
	for i := 0; i < 8; i++ {
		if b&(1<<uint(i)) != 0 {
			r |= 0x80 >> uint(i)
		}
	}
	return r
}
