package profile

import (
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"time"
)

// CertificateType says whose certificate a profile issues. A user certificate may use
// user and device variables; a device certificate only device variables.
type CertificateType int

const (
	// UserCertificate identifies the signed-in user on a device.
	UserCertificate CertificateType = iota + 1
	// DeviceCertificate identifies the device alone.
	DeviceCertificate
)

// String returns "user", "device" or "unknown(N)".
func (t CertificateType) String() string {
	switch t {
	case UserCertificate:
		return "user"
	case DeviceCertificate:
		return "device"
	}
	return fmt.Sprintf("unknown(%d)", int(t))
}

// Platform is the device platform a profile targets. It decides which settings are
// allowed (see [Profile.Validate]) and which export format fits.
type Platform int

const (
	// Windows: exported as ClientCertificateInstall SyncML.
	Windows Platform = iota + 1
	// IOS covers iOS and iPadOS: exported as a .mobileconfig SCEP payload.
	IOS
	// MacOS: exported as a .mobileconfig SCEP payload.
	MacOS
	// Android covers Android Enterprise and AOSP.
	Android
)

// String returns "windows", "ios", "macos", "android" or "unknown(N)".
func (p Platform) String() string {
	switch p {
	case Windows:
		return "windows"
	case IOS:
		return "ios"
	case MacOS:
		return "macos"
	case Android:
		return "android"
	}
	return fmt.Sprintf("unknown(%d)", int(p))
}

func (p Platform) apple() bool { return p == IOS || p == MacOS }

// SANType is the kind of a subject alternative name.
type SANType int

const (
	// SANEmail is an rfc822Name.
	SANEmail SANType = iota + 1
	// SANUPN is a Microsoft user principal name: an otherName with type
	// 1.3.6.1.4.1.311.20.2.3 and a UTF8String value.
	SANUPN
	// SANDNS is a dNSName.
	SANDNS
	// SANURI is a uniformResourceIdentifier.
	SANURI
)

// String returns "email", "upn", "dns", "uri" or "unknown(N)".
func (t SANType) String() string {
	switch t {
	case SANEmail:
		return "email"
	case SANUPN:
		return "upn"
	case SANDNS:
		return "dns"
	case SANURI:
		return "uri"
	}
	return fmt.Sprintf("unknown(%d)", int(t))
}

// SAN is one subject alternative name of a profile. Value may contain variables, for
// example "{{UserPrincipalName}}"; it is rendered as one name of kind Type, whatever the
// variable values contain.
type SAN struct {
	Type  SANType
	Value string
}

// ValidityUnit is the unit of a [ValidityPeriod].
type ValidityUnit int

const (
	// Days is the zero value.
	Days ValidityUnit = iota
	// Months are calendar months (time.Time.AddDate).
	Months
	// Years are calendar years.
	Years
)

// String returns "days", "months", "years" or "unknown(N)".
func (u ValidityUnit) String() string {
	switch u {
	case Days:
		return "days"
	case Months:
		return "months"
	case Years:
		return "years"
	}
	return fmt.Sprintf("unknown(%d)", int(u))
}

// ValidityPeriod is the certificate lifetime as Intune expresses it: a count of days,
// months or years. The issuing CA clamps it to its template and to its own expiry.
type ValidityPeriod struct {
	Value int
	Unit  ValidityUnit
}

// End returns start plus the period, in calendar arithmetic.
func (v ValidityPeriod) End(start time.Time) time.Time {
	switch v.Unit {
	case Months:
		return start.AddDate(0, v.Value, 0)
	case Years:
		return start.AddDate(v.Value, 0, 0)
	}
	return start.AddDate(0, 0, v.Value)
}

// KeyStorageProvider is where Windows keeps the private key. Only Windows profiles may
// set it; the zero value means "platform default" (software on Windows).
type KeyStorageProvider int

const (
	// KSPDefault leaves the choice to the platform (software on Windows).
	KSPDefault KeyStorageProvider = iota
	// KSPTPMIfPresent enrolls to the TPM if there is one, else to software.
	KSPTPMIfPresent
	// KSPTPMRequired enrolls to the TPM or fails.
	KSPTPMRequired
	// KSPWindowsHello enrolls to Windows Hello for Business or fails.
	KSPWindowsHello
	// KSPSoftware enrolls to the software KSP.
	KSPSoftware
)

// String returns the provider's name or "unknown(N)".
func (k KeyStorageProvider) String() string {
	switch k {
	case KSPDefault:
		return "default"
	case KSPTPMIfPresent:
		return "tpm-if-present"
	case KSPTPMRequired:
		return "tpm-required"
	case KSPWindowsHello:
		return "windows-hello"
	case KSPSoftware:
		return "software"
	}
	return fmt.Sprintf("unknown(%d)", int(k))
}

// KeyType is the public key algorithm. The zero value is RSA.
type KeyType int

const (
	// RSA keys; the size is [Profile.KeySize].
	RSA KeyType = iota
	// ECDSAP256 is ECDSA on NIST P-256. Only Android profiles may ask for it: neither
	// the Apple SCEP payload nor the Windows CSP can express an EC key.
	ECDSAP256
	// ECDSAP384 is ECDSA on NIST P-384, under the same restriction as ECDSAP256.
	ECDSAP384
)

// String returns "rsa", "ecdsa-p256", "ecdsa-p384" or "unknown(N)".
func (k KeyType) String() string {
	switch k {
	case RSA:
		return "rsa"
	case ECDSAP256:
		return "ecdsa-p256"
	case ECDSAP384:
		return "ecdsa-p384"
	}
	return fmt.Sprintf("unknown(%d)", int(k))
}

// Hash is the hash family the device signs its request with. The zero value is SHA-2.
type Hash int

const (
	// SHA2 is SHA-256 or stronger.
	SHA2 Hash = iota
	// SHA1 is legacy; allowed only with [Profile.AllowLegacyHash], and never on Apple or
	// Android platforms.
	SHA1
)

// String returns "sha2", "sha1" or "unknown(N)".
func (h Hash) String() string {
	switch h {
	case SHA2:
		return "sha2"
	case SHA1:
		return "sha1"
	}
	return fmt.Sprintf("unknown(%d)", int(h))
}

// KeyUsage is the key usage a profile asks for: [x509.KeyUsageDigitalSignature],
// [x509.KeyUsageKeyEncipherment] or both. No other bit is allowed.
type KeyUsage = x509.KeyUsage

// EKU is an extended key usage: a display name and its OID.
type EKU struct {
	Name string
	OID  asn1.ObjectIdentifier
}

// Extended key usages an Intune admin picks from by name.
var (
	EKUClientAuth      = EKU{"Client Authentication", asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}}
	EKUServerAuth      = EKU{"Server Authentication", asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}}
	EKUEmailProtection = EKU{"Secure Email", asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 4}}
	EKUCodeSigning     = EKU{"Code Signing", asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 3}}
	EKUSmartCardLogon  = EKU{"Smart Card Logon", asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 2}}
	EKUAnyPurpose      = EKU{"Any Purpose", asn1.ObjectIdentifier{2, 5, 29, 37, 0}}
)

// Profile is a SCEP certificate profile as an Intune admin defines it. It holds no
// per-user data: [Render] binds it to one user and device.
//
// Zero values: CertificateType, Platform, SubjectNameFormat (or SubjectAlternativeNames),
// Validity, KeyUsage, KeySize, ExtendedKeyUsages, RenewalThresholdPercent, ServerURLs and
// RootCA or CAFingerprint must be set; KeyStorageProvider zero is the platform default,
// KeyType zero is RSA, Hash zero is SHA-2, RetryCount zero is 3, RetryDelay zero is the
// platform default (10 s on Apple, 5 min on Windows). [Profile.Validate] lists the bounds.
type Profile struct {
	// ID identifies the profile (Intune's profile id); required. The exports name
	// the Windows CSP node and the Apple PayloadIdentifier after it, so it is held
	// to what both carry unescaped: see [ValidateID].
	ID string
	// Name is the display name; required.
	Name            string
	CertificateType CertificateType
	Platform        Platform
	// SubjectNameFormat is a distinguished name with variables, in CertStrToName style:
	// "CN={{UserPrincipalName}},O=Contoso". See [ParseSubjectFormat] for the grammar.
	SubjectNameFormat       string
	SubjectAlternativeNames []SAN
	// Validity is the certificate lifetime asked for: the issued certificate's is the
	// shorter of it and the CA template's. On iOS and macOS, as in Intune, the
	// template's alone applies (package catemplate ignores it there).
	Validity           ValidityPeriod
	KeyStorageProvider KeyStorageProvider
	// ContainerName is the Windows Hello for Business container the key is made in,
	// with KSPWindowsHello only (Windows fails the enrollment without one); zero means
	// "scepkit-" followed by the profile's ID.
	ContainerName string
	KeyUsage      KeyUsage
	KeyType       KeyType
	// KeySize is the RSA modulus size in bits, or the curve size (256, 384) for ECDSA.
	KeySize           int
	Hash              Hash
	ExtendedKeyUsages []EKU
	// RenewalThresholdPercent is the remaining lifetime, in percent (1-99), at which
	// the device renews.
	RenewalThresholdPercent int
	// ServerURLs are the SCEP endpoints, http or https (https on Android), without
	// a query or fragment: devices append "?operation=..." to them.
	ServerURLs []string
	// RootCA is the trusted root the device pins. If nil, CAFingerprint must be set.
	RootCA *x509.Certificate
	// CAFingerprint is the SHA-1 fingerprint (20 bytes) of the root CA certificate,
	// used when RootCA is nil; if both are set they must agree.
	CAFingerprint []byte
	// TemplateName is passed to Windows as the CSP's TemplateName (mostly ignored).
	TemplateName string
	// RetryCount is how often the device polls after PENDING (0 means 3; at most 30).
	RetryCount int
	// RetryDelay is the wait between polls (0 means the platform default; on Windows
	// a whole number of minutes, at least one).
	RetryDelay time.Duration
	// AllowLegacyKeySize allows 1024-bit RSA keys. Only for devices that can do nothing
	// better.
	AllowLegacyKeySize bool
	// AllowLegacyHash allows SHA-1 on Windows. Only for devices that can do nothing
	// better.
	AllowLegacyHash bool
}

// CAThumbprint returns the SHA-1 fingerprint of the root CA: computed from RootCA if set,
// else CAFingerprint. It returns nil if neither is set.
func (p *Profile) CAThumbprint() []byte {
	if p.RootCA != nil {
		s := sha1.Sum(p.RootCA.Raw)
		return s[:]
	}
	if len(p.CAFingerprint) == 0 {
		return nil
	}
	return append([]byte(nil), p.CAFingerprint...)
}

// helloContainer is ContainerName, or its default.
func (p *Profile) helloContainer() string {
	if p.ContainerName != "" {
		return p.ContainerName
	}
	return "scepkit-" + p.ID
}
