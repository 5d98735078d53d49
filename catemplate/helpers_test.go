package catemplate

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"sync"
	"testing"
	"time"

	"github.com/scepkit/scepkit/profile"
	"github.com/stretchr/testify/require"
)

var (
	keysOnce sync.Once
	rsa2048  *rsa.PrivateKey
	rsa1024  *rsa.PrivateKey
	p256     *ecdsa.PrivateKey
)

func keys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		rsa2048, _ = rsa.GenerateKey(rand.Reader, 2048)
		rsa1024, _ = rsa.GenerateKey(rand.Reader, 1024)
		p256, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	})
}

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func testCA(t testing.TB, validity time.Duration) *CA {
	t.Helper()
	ca, err := NewCA(CAOptions{KeySize: 2048, Validity: validity, Now: func() time.Time { return testNow }})
	require.NoError(t, err)
	return ca
}

func userProfile() *profile.Profile {
	return &profile.Profile{
		ID:                "prof-1",
		Name:              "Contoso user",
		CertificateType:   profile.UserCertificate,
		Platform:          profile.Windows,
		SubjectNameFormat: "CN={{UserPrincipalName}},O=Contoso",
		SubjectAlternativeNames: []profile.SAN{
			{Type: profile.SANUPN, Value: "{{UserPrincipalName}}"},
			{Type: profile.SANEmail, Value: "{{EmailAddress}}"},
			{Type: profile.SANDNS, Value: "{{DeviceName}}.contoso.com"},
			{Type: profile.SANURI, Value: "urn:intune:{{DeviceId}}"},
		},
		Validity:                profile.ValidityPeriod{Value: 1, Unit: profile.Years},
		KeyUsage:                x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		KeySize:                 2048,
		ExtendedKeyUsages:       []profile.EKU{profile.EKUClientAuth},
		RenewalThresholdPercent: 20,
		ServerURLs:              []string{"https://scep.contoso.com/certsrv/mscep/mscep.dll"},
		CAFingerprint:           make([]byte, 20),
	}
}

func render(t testing.TB) *profile.Rendered {
	t.Helper()
	r, err := profile.Render(userProfile(),
		profile.User{UserPrincipalName: "jane@contoso.com", Email: "jane@contoso.com"},
		profile.Device{ID: "dev-1", Name: "laptop"}, nil)
	require.NoError(t, err)
	return r
}

func makeCSR(t testing.TB, r *profile.Rendered, key crypto.Signer) *x509.CertificateRequest {
	t.Helper()
	tmpl := &x509.CertificateRequest{RawSubject: r.RawSubject}
	ext, err := r.AltNames().Extension(false)
	require.NoError(t, err)
	tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, ext)
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	require.NoError(t, err)
	csr, err := x509.ParseCertificateRequest(der)
	require.NoError(t, err)
	return csr
}

func clientTemplate() *Template {
	return &Template{
		Name:         "IntuneUser",
		Validity:     365 * 24 * time.Hour,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		MinKeySize:   2048,
		Published:    true,
	}
}
