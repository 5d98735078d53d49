package profile

import (
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestValidateBounds walks every setting through its bounds: each case changes one
// thing in a valid profile and expects either no error or a FieldError naming field.
func TestValidateBounds(t *testing.T) {
	require.NoError(t, testProfile().Validate())
	root := &x509.Certificate{Raw: []byte("root"), IsCA: true}
	rootFP := sha1.Sum(root.Raw)
	manyURLs := make([]string, MaxServerURLs+1)
	for i := range manyURLs {
		manyURLs[i] = fmt.Sprintf("https://s%d.example/", i)
	}
	manySANs := make([]SAN, MaxSANs+1)
	for i := range manySANs {
		manySANs[i] = SAN{Type: SANDNS, Value: "a.example"}
	}
	manyEKUs := make([]EKU, MaxEKUs+1)
	for i := range manyEKUs {
		manyEKUs[i] = EKU{OID: asn1.ObjectIdentifier{1, 2, 3, i}}
	}
	cases := []struct {
		name  string
		mod   func(p *Profile)
		field string // "" means valid
	}{
		{"no ID", func(p *Profile) { p.ID = "" }, "ID"},
		// The exports name things after the ID: the Windows CSP node SCEP/{ID} (one URI
		// segment), the Apple PayloadIdentifier com.scepkit.profile.<ID> (reverse DNS).
		{"ID GUID", func(p *Profile) { p.ID = "5f6c1b1e-0000-4000-8000-000000000001" }, ""},
		{"ID letters digits - _ .", func(p *Profile) { p.ID = "Corp_VPN-2.user" }, ""},
		{"ID 128 bytes", func(p *Profile) { p.ID = strings.Repeat("a", 128) }, ""},
		{"ID 129 bytes", func(p *Profile) { p.ID = strings.Repeat("a", 129) }, "ID"},
		{"ID with a space", func(p *Profile) { p.ID = "corp vpn" }, "ID"},
		{"ID only a space", func(p *Profile) { p.ID = " " }, "ID"},
		{"ID with a newline", func(p *Profile) { p.ID = "a\nb" }, "ID"},
		{"ID with NUL", func(p *Profile) { p.ID = "a\x00b" }, "ID"},
		{"ID with DEL", func(p *Profile) { p.ID = "a\x7fb" }, "ID"},
		{"ID with a slash", func(p *Profile) { p.ID = "a/b" }, "ID"},
		{"ID with a percent", func(p *Profile) { p.ID = "a%2Fb" }, "ID"},
		{"ID with ;", func(p *Profile) { p.ID = "a;b" }, "ID"},
		{"ID not ASCII", func(p *Profile) { p.ID = "prüfung" }, "ID"},
		{"ID invalid UTF-8", func(p *Profile) { p.ID = "a\xffb" }, "ID"},
		{"ID dot", func(p *Profile) { p.ID = "." }, "ID"},
		{"ID dot-dot", func(p *Profile) { p.ID = ".." }, "ID"},
		{"ID leading dot", func(p *Profile) { p.ID = ".vpn" }, "ID"},
		{"ID trailing dot", func(p *Profile) { p.ID = "vpn." }, "ID"},
		{"ID doubled dot", func(p *Profile) { p.ID = "corp..vpn" }, "ID"},
		{"no name", func(p *Profile) { p.Name = "" }, "Name"},
		{"cert type zero", func(p *Profile) { p.CertificateType = 0 }, "CertificateType"},
		{"cert type 3", func(p *Profile) { p.CertificateType = 3 }, "CertificateType"},
		{"device cert", func(p *Profile) {
			p.CertificateType = DeviceCertificate
			p.SubjectNameFormat = "CN={{AAD_Device_ID}}"
			p.SubjectAlternativeNames = []SAN{{Type: SANDNS, Value: "{{DeviceName}}.example"}}
		}, ""},
		{"device cert user var in subject", func(p *Profile) { p.CertificateType = DeviceCertificate }, "SubjectNameFormat"},
		{"device cert user var in SAN", func(p *Profile) {
			p.CertificateType = DeviceCertificate
			p.SubjectNameFormat = "CN={{DeviceId}}"
		}, "SubjectAlternativeNames[0].Value"},
		{"platform zero", func(p *Profile) { p.Platform = 0 }, "Platform"},
		{"platform 5", func(p *Profile) { p.Platform = 5 }, "Platform"},
		{"bad subject", func(p *Profile) { p.SubjectNameFormat = "CN=a,,O=b" }, "SubjectNameFormat"},
		{"no subject, SANs", func(p *Profile) { p.SubjectNameFormat = ""; p.Platform = IOS }, ""},
		// ClientCertificateInstall's SubjectName is a required node.
		{"no subject, SANs, Windows", func(p *Profile) { p.SubjectNameFormat = "" }, "SubjectNameFormat"},
		// Intune fills it for domain-joined Windows devices only.
		{"FQDN on Windows", func(p *Profile) { p.SubjectNameFormat = "CN={{FullyQualifiedDomainName}}" }, ""},
		{"FQDN on iOS", func(p *Profile) { p.SubjectNameFormat = "CN={{FullyQualifiedDomainName}}"; p.Platform = IOS }, "SubjectNameFormat"},
		{"FQDN in a SAN on Android", func(p *Profile) {
			p.Platform = Android
			p.SubjectAlternativeNames[0] = SAN{Type: SANDNS, Value: "{{FullyQualifiedDomainName}}"}
		}, "SubjectAlternativeNames[0].Value"},
		{"no subject, no SANs", func(p *Profile) { p.SubjectNameFormat = ""; p.SubjectAlternativeNames = nil }, "SubjectNameFormat"},
		{"SAN type zero", func(p *Profile) { p.SubjectAlternativeNames[0].Type = 0 }, "SubjectAlternativeNames[0].Type"},
		{"SAN empty", func(p *Profile) { p.SubjectAlternativeNames[1].Value = "" }, "SubjectAlternativeNames[1].Value"},
		{"SAN bad template", func(p *Profile) { p.SubjectAlternativeNames[1].Value = "{{x" }, "SubjectAlternativeNames[1].Value"},
		{"SAN URI-only var", func(p *Profile) { p.SubjectAlternativeNames[1].Value = "{{OnPremisesSecurityIdentifier}}" }, "SubjectAlternativeNames[1].Value"},
		{"SANs max", func(p *Profile) { p.SubjectAlternativeNames = manySANs[:MaxSANs] }, ""},
		{"SANs max+1", func(p *Profile) { p.SubjectAlternativeNames = manySANs }, "SubjectAlternativeNames"},
		{"validity 0", func(p *Profile) { p.Validity = ValidityPeriod{0, Days} }, "Validity.Value"},
		{"validity -1", func(p *Profile) { p.Validity = ValidityPeriod{-1, Months} }, "Validity.Value"},
		{"validity 1 day", func(p *Profile) { p.Validity = ValidityPeriod{1, Days} }, ""},
		{"validity 730 days", func(p *Profile) { p.Validity = ValidityPeriod{730, Days} }, ""},
		{"validity 731 days", func(p *Profile) { p.Validity = ValidityPeriod{731, Days} }, "Validity.Value"},
		{"validity 24 months", func(p *Profile) { p.Validity = ValidityPeriod{24, Months} }, ""},
		{"validity 25 months", func(p *Profile) { p.Validity = ValidityPeriod{25, Months} }, "Validity.Value"},
		{"validity 2 years", func(p *Profile) { p.Validity = ValidityPeriod{2, Years} }, ""},
		{"validity 3 years", func(p *Profile) { p.Validity = ValidityPeriod{3, Years} }, "Validity.Value"},
		{"validity unit", func(p *Profile) { p.Validity = ValidityPeriod{1, 9} }, "Validity.Unit"},
		{"KSP on iOS", func(p *Profile) { p.Platform = IOS; p.KeyStorageProvider = KSPSoftware }, "KeyStorageProvider"},
		{"KSP TPM", func(p *Profile) { p.KeyStorageProvider = KSPTPMRequired }, ""},
		{"KSP TPM 4096", func(p *Profile) { p.KeyStorageProvider = KSPTPMRequired; p.KeySize = 4096 }, "KeySize"},
		{"KSP software 4096", func(p *Profile) { p.KeyStorageProvider = KSPSoftware; p.KeySize = 4096 }, ""},
		{"KSP Hello 2048", func(p *Profile) { p.KeyStorageProvider = KSPWindowsHello }, ""},
		{"KSP Hello 4096", func(p *Profile) { p.KeyStorageProvider = KSPWindowsHello; p.KeySize = 4096 }, "KeyStorageProvider"},
		{"KSP Hello SHA-1", func(p *Profile) { p.KeyStorageProvider = KSPWindowsHello; p.Hash = SHA1; p.AllowLegacyHash = true }, "Hash"},
		{"KSP Hello container", func(p *Profile) { p.KeyStorageProvider = KSPWindowsHello; p.ContainerName = "corp-vpn" }, ""},
		{"container without Hello", func(p *Profile) { p.ContainerName = "corp-vpn" }, "ContainerName"},
		{"container with ;", func(p *Profile) { p.KeyStorageProvider = KSPWindowsHello; p.ContainerName = "a;b" }, "ContainerName"},
		{"container with a newline", func(p *Profile) { p.KeyStorageProvider = KSPWindowsHello; p.ContainerName = "a\nb" }, "ContainerName"},
		{"KSP unknown", func(p *Profile) { p.KeyStorageProvider = 9 }, "KeyStorageProvider"},
		{"KU zero", func(p *Profile) { p.KeyUsage = 0 }, "KeyUsage"},
		{"KU signature", func(p *Profile) { p.KeyUsage = x509.KeyUsageDigitalSignature }, ""},
		{"KU encipherment", func(p *Profile) { p.KeyUsage = x509.KeyUsageKeyEncipherment }, ""},
		{"KU certSign", func(p *Profile) { p.KeyUsage |= x509.KeyUsageCertSign }, "KeyUsage"},
		{"RSA 1024", func(p *Profile) { p.KeySize = 1024 }, "KeySize"},
		{"RSA 1024 legacy", func(p *Profile) { p.KeySize = 1024; p.AllowLegacyKeySize = true }, ""},
		{"RSA 2047", func(p *Profile) { p.KeySize = 2047 }, "KeySize"},
		{"RSA 3072 Windows", func(p *Profile) { p.KeySize = 3072 }, "KeySize"},
		{"RSA 3072 iOS", func(p *Profile) { p.Platform = IOS; p.KeySize = 3072 }, "KeySize"},
		{"RSA 3072 Android", func(p *Profile) { p.Platform = Android; p.KeySize = 3072 }, ""},
		{"RSA 4096", func(p *Profile) { p.KeySize = 4096 }, ""},
		{"RSA 8192", func(p *Profile) { p.KeySize = 8192 }, "KeySize"},
		{"ECDSA Windows", func(p *Profile) { p.KeyType = ECDSAP256; p.KeySize = 256 }, "KeyType"},
		{"ECDSA P-256 Android", func(p *Profile) { p.Platform = Android; p.KeyType = ECDSAP256; p.KeySize = 256 }, ""},
		{"ECDSA P-384 Android size 0", func(p *Profile) { p.Platform = Android; p.KeyType = ECDSAP384; p.KeySize = 0 }, ""},
		{"ECDSA P-384 size 256", func(p *Profile) { p.Platform = Android; p.KeyType = ECDSAP384; p.KeySize = 256 }, "KeySize"},
		{"key type 7", func(p *Profile) { p.KeyType = 7 }, "KeyType"},
		{"SHA-1", func(p *Profile) { p.Hash = SHA1 }, "Hash"},
		{"SHA-1 legacy", func(p *Profile) { p.Hash = SHA1; p.AllowLegacyHash = true }, ""},
		{"SHA-1 legacy iOS", func(p *Profile) { p.Platform = IOS; p.Hash = SHA1; p.AllowLegacyHash = true }, "Hash"},
		{"SHA-1 legacy Android", func(p *Profile) { p.Platform = Android; p.Hash = SHA1; p.AllowLegacyHash = true }, "Hash"},
		{"hash 5", func(p *Profile) { p.Hash = 5 }, "Hash"},
		{"no EKU", func(p *Profile) { p.ExtendedKeyUsages = nil }, "ExtendedKeyUsages"},
		{"custom EKU", func(p *Profile) {
			p.ExtendedKeyUsages = []EKU{{OID: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}}}
		}, ""},
		{"bad EKU OID", func(p *Profile) { p.ExtendedKeyUsages = []EKU{{OID: asn1.ObjectIdentifier{1}}} }, "ExtendedKeyUsages[0].OID"},
		{"duplicate EKU", func(p *Profile) { p.ExtendedKeyUsages = []EKU{EKUClientAuth, EKUClientAuth} }, "ExtendedKeyUsages[1].OID"},
		{"EKUs max", func(p *Profile) { p.ExtendedKeyUsages = manyEKUs[:MaxEKUs] }, ""},
		{"EKUs max+1", func(p *Profile) { p.ExtendedKeyUsages = manyEKUs }, "ExtendedKeyUsages"},
		{"renewal 0", func(p *Profile) { p.RenewalThresholdPercent = 0 }, "RenewalThresholdPercent"},
		{"renewal 1", func(p *Profile) { p.RenewalThresholdPercent = 1 }, ""},
		{"renewal 99", func(p *Profile) { p.RenewalThresholdPercent = 99 }, ""},
		{"renewal 100", func(p *Profile) { p.RenewalThresholdPercent = 100 }, "RenewalThresholdPercent"},
		{"no URLs", func(p *Profile) { p.ServerURLs = nil }, "ServerURLs"},
		{"http URL", func(p *Profile) { p.ServerURLs = []string{"http://scep.example/"} }, ""},
		{"http URL Android", func(p *Profile) { p.Platform = Android; p.ServerURLs = []string{"http://scep.example/"} }, "ServerURLs[0]"},
		{"ftp URL", func(p *Profile) { p.ServerURLs = []string{"ftp://scep.example/"} }, "ServerURLs[0]"},
		{"relative URL", func(p *Profile) { p.ServerURLs = []string{"/certsrv"} }, "ServerURLs[0]"},
		{"URL user info", func(p *Profile) { p.ServerURLs = []string{"https://u:p@scep.example/"} }, "ServerURLs[0]"},
		{"URL semicolon", func(p *Profile) { p.ServerURLs = []string{"https://scep.example/a;b"} }, "ServerURLs[0]"},
		// Devices append ?operation=...&message=... (RFC 8894 section 4.1): a query or
		// fragment of the profile's own would break every request.
		{"URL query", func(p *Profile) { p.ServerURLs = []string{"https://scep.example/certsrv/mscep/mscep.dll?a=1"} }, "ServerURLs[0]"},
		{"URL empty query", func(p *Profile) { p.ServerURLs = []string{"https://scep.example/scep?"} }, "ServerURLs[0]"},
		{"URL query of the second", func(p *Profile) {
			p.ServerURLs = []string{"https://a.example/scep", "https://b.example/scep?operation=GetCACert"}
		}, "ServerURLs[1]"},
		{"URL fragment", func(p *Profile) { p.ServerURLs = []string{"https://scep.example/scep#a"} }, "ServerURLs[0]"},
		{"URL empty fragment", func(p *Profile) { p.ServerURLs = []string{"https://scep.example/scep#"} }, "ServerURLs[0]"},
		{"URL escaped ? and #", func(p *Profile) { p.ServerURLs = []string{"https://scep.example/a%3Fb%23c"} }, ""},
		{"URL ending in pkiclient.exe", func(p *Profile) {
			p.ServerURLs = []string{"https://ndes.example/certsrv/mscep/mscep.dll/pkiclient.exe"}
		}, "ServerURLs[0]"},
		{"duplicate URL", func(p *Profile) { p.ServerURLs = []string{"https://a.example/", "https://a.example/"} }, "ServerURLs[1]"},
		{"URLs max", func(p *Profile) { p.ServerURLs = manyURLs[:MaxServerURLs] }, ""},
		{"URLs max+1", func(p *Profile) { p.ServerURLs = manyURLs }, "ServerURLs"},
		{"no root", func(p *Profile) { p.CAFingerprint = nil }, "RootCA"},
		{"short fingerprint", func(p *Profile) { p.CAFingerprint = p.CAFingerprint[:19] }, "CAFingerprint"},
		{"root cert", func(p *Profile) { p.CAFingerprint = nil; p.RootCA = root }, ""},
		{"root and matching fingerprint", func(p *Profile) { p.RootCA = root; p.CAFingerprint = rootFP[:] }, ""},
		{"root and other fingerprint", func(p *Profile) { p.RootCA = root }, "CAFingerprint"},
		{"root not CA", func(p *Profile) { p.CAFingerprint = nil; p.RootCA = &x509.Certificate{Raw: []byte("x")} }, "RootCA"},
		{"retry count 30", func(p *Profile) { p.RetryCount = 30 }, ""},
		{"retry count 31", func(p *Profile) { p.RetryCount = 31 }, "RetryCount"},
		{"retry count -1", func(p *Profile) { p.RetryCount = -1 }, "RetryCount"},
		{"retry delay 1m", func(p *Profile) { p.RetryDelay = time.Minute }, ""},
		{"retry delay 90s Windows", func(p *Profile) { p.RetryDelay = 90 * time.Second }, "RetryDelay"},
		{"retry delay 90s iOS", func(p *Profile) { p.Platform = IOS; p.RetryDelay = 90 * time.Second }, ""},
		{"retry delay 1.5s iOS", func(p *Profile) { p.Platform = IOS; p.RetryDelay = 1500 * time.Millisecond }, "RetryDelay"},
		{"retry delay 25h", func(p *Profile) { p.RetryDelay = 25 * time.Hour }, "RetryDelay"},
		{"retry delay -1", func(p *Profile) { p.RetryDelay = -time.Minute }, "RetryDelay"},
		{"template name newline", func(p *Profile) { p.TemplateName = "a\nb" }, "TemplateName"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := testProfile()
			c.mod(p)
			err := p.Validate()
			if c.field == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrInvalidProfile)
			var fields []string
			for _, e := range unwrapAll(err) {
				var fe *FieldError
				require.True(t, errors.As(e, &fe))
				fields = append(fields, fe.Field)
			}
			require.Contains(t, fields, c.field)
			require.Contains(t, err.Error(), c.field)
		})
	}
}

func TestValidateJoinsAll(t *testing.T) {
	err := (&Profile{}).Validate()
	require.Error(t, err)
	msg := err.Error()
	for _, f := range []string{"ID", "Name", "CertificateType", "Platform", "KeyUsage", "KeySize", "RenewalThresholdPercent", "ServerURLs", "RootCA"} {
		require.True(t, strings.Contains(msg, "profile: "+f+" "), "missing %s in %s", f, msg)
	}
}

func TestEnumStrings(t *testing.T) {
	require.Equal(t, "unknown(9)", CertificateType(9).String())
	require.Equal(t, "unknown(9)", Platform(9).String())
	require.Equal(t, "unknown(9)", SANType(9).String())
	require.Equal(t, "unknown(9)", ValidityUnit(9).String())
	require.Equal(t, "unknown(9)", KeyStorageProvider(9).String())
	require.Equal(t, "unknown(9)", KeyType(9).String())
	require.Equal(t, "unknown(9)", Hash(9).String())
	require.Equal(t, "device", DeviceCertificate.String())
	require.Equal(t, "ecdsa-p384", ECDSAP384.String())
}

func TestValidityEnd(t *testing.T) {
	start := time.Date(2026, 1, 31, 0, 0, 0, 0, time.UTC)
	require.Equal(t, start.AddDate(0, 0, 10), ValidityPeriod{10, Days}.End(start))
	require.Equal(t, start.AddDate(0, 1, 0), ValidityPeriod{1, Months}.End(start))
	require.Equal(t, start.AddDate(2, 0, 0), ValidityPeriod{2, Years}.End(start))
}
