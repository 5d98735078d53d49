package profile

import (
	"bytes"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Bounds of the settings, as Intune and the device payloads allow them.
const (
	// MaxValidityMonths is the longest validity Intune accepts (24 months).
	MaxValidityMonths = 24
	// MaxValidityDays is the same longest validity counted in days (730), the bound
	// of a validity in Days and of a gateway's cert_validity.
	MaxValidityDays = 730
	// MaxRetryCount is the largest RetryCount (the Windows CSP maximum).
	MaxRetryCount = 30
	// MaxRetryDelay is the longest RetryDelay.
	MaxRetryDelay = 24 * time.Hour
	// MaxServerURLs bounds the number of SCEP server URLs.
	MaxServerURLs = 16
	// MaxSANs bounds the number of subject alternative names.
	MaxSANs = 32
	// MaxEKUs bounds the number of extended key usages.
	MaxEKUs = 32
	// MaxIDLength bounds the length of a profile ID, in bytes (an Intune profile id,
	// a GUID, has 36).
	MaxIDLength = 128
)

// ValidateID checks a profile ID as [Profile.Validate] does, and returns a
// [*FieldError] for "ID" (errors.Is(err, [ErrInvalidProfile]) holds) or nil. It is
// for ids that arrive before their profile does: a configured list of them, say.
//
// An ID is 1 to [MaxIDLength] ASCII letters, digits, '-', '_' and '.', where each '.'
// separates two non-empty parts (no leading, trailing or doubled dot). The exports
// name things after it, and every such ID fits each of them without escaping: the
// Windows ClientCertificateInstall node SCEP/{ID} (one segment of an OMA-DM URI, in
// which "." and ".." are dot-segments and other characters would need
// percent-escaping), the Apple PayloadIdentifier com.scepkit.profile.<ID>
// (reverse-DNS style, dot-separated labels) and the Windows Hello container
// scepkit-<ID>.
func ValidateID(id string) error {
	if reason := idProblem(id); reason != "" {
		return &FieldError{Field: "ID", Value: id, Reason: reason}
	}
	return nil
}

// idWant is the rule idProblem gives when an id breaks it.
var idWant = fmt.Sprintf("1 to %d ASCII letters, digits, '-', '_' and '.', dots only between other characters", MaxIDLength)

// idProblem returns why id cannot be a profile ID, or "" if it can.
func idProblem(id string) string {
	switch {
	case id == "":
		return "required"
	case len(id) > MaxIDLength:
		return idWant
	case id[0] == '.' || id[len(id)-1] == '.' || strings.Contains(id, ".."):
		return idWant
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return idWant
		}
	}
	return ""
}

// Validate checks every setting and returns one [*FieldError] per bad setting, joined
// (errors.As finds the first; errors.Is(err, [ErrInvalidProfile]) holds). The bounds:
//
//   - ID as [ValidateID] says: 1 to 128 ASCII letters, digits, '-', '_' and '.',
//     dots only between other characters. Name non-empty. CertificateType
//     UserCertificate or DeviceCertificate; Platform one of Windows, IOS, MacOS,
//     Android.
//   - SubjectNameFormat parses ([ParseSubjectFormat]); it or SubjectAlternativeNames is
//     non-empty; variables are built-in or left to the caller's custom values, and a
//     device certificate uses no user variable.
//   - SubjectAlternativeNames: at most 32, known Type, non-empty Value, well-formed
//     variables.
//   - Validity: 1 or more, at most 24 months (730 days, 24 months, 2 years).
//   - KeyStorageProvider: Windows only; Windows Hello needs a 2048-bit RSA key and
//     SHA-2; TPM providers allow at most 2048 bits. ContainerName: Windows Hello only,
//     at most 256 printable characters without ;.
//   - KeyUsage: digitalSignature, keyEncipherment or both.
//   - KeyType RSA: KeySize 2048, 3072 or 4096 (1024 with AllowLegacyKeySize); Apple
//     and Windows payloads cannot express 3072. ECDSA: Android only; KeySize 0 or the
//     curve size.
//   - Hash: SHA-1 only on Windows and only with AllowLegacyHash.
//   - ExtendedKeyUsages: 1 to 32, each a valid OID, no duplicates.
//   - RenewalThresholdPercent: 1 to 99.
//   - ServerURLs: 1 to 16 absolute http or https URLs with a host, https on Android,
//     no duplicates, none ending in /pkiclient.exe (devices append it), none with a
//     query or fragment (devices append ?operation=..., RFC 8894 section 4.1).
//   - RootCA or CAFingerprint (20 bytes, SHA-1); if both, they agree.
//   - RetryCount 0 to 30; RetryDelay 0 to 24 h, whole minutes on Windows.
func (p *Profile) Validate() error {
	_, _, err := p.validate()
	return err
}

// sanField names SubjectAlternativeNames[i] in errors. Field names are built only
// when a setting is bad.
func sanField(i int) string { return "SubjectAlternativeNames[" + strconv.Itoa(i) + "]" }

// validate is [Profile.Validate]; it also returns what it parsed, so that [Render]
// does not parse it again: the subject format (nil if it does not parse) and the
// template of each SAN value (nil where it does not parse). When the error is nil,
// neither has a nil entry.
func (p *Profile) validate() (*SubjectFormat, []template, error) {
	var errs []error
	bad := func(field string, value any, reason string) {
		errs = append(errs, &FieldError{Field: field, Value: fmt.Sprint(value), Reason: reason})
	}
	if reason := idProblem(p.ID); reason != "" {
		bad("ID", p.ID, reason)
	}
	if p.Name == "" {
		bad("Name", "", "required")
	}
	if p.CertificateType != UserCertificate && p.CertificateType != DeviceCertificate {
		bad("CertificateType", p.CertificateType, "must be UserCertificate or DeviceCertificate")
	}
	switch p.Platform {
	case Windows, IOS, MacOS, Android:
	default:
		bad("Platform", p.Platform, "must be Windows, IOS, MacOS or Android")
	}

	// Subject and SANs.
	// checkVars checks the variables of t, the subject format's (san < 0) or those of
	// SubjectAlternativeNames[san].
	checkVars := func(san int, t template, uri bool) {
		for _, s := range t {
			n := s.variable
			if n == "" {
				continue
			}
			v := lookupBuiltin(n)
			if v == nil {
				continue // custom: supplied at Render time
			}
			if v.user && p.CertificateType == DeviceCertificate || v.uriOnly && !uri {
				field := "SubjectNameFormat"
				if san >= 0 {
					field = sanField(san) + ".Value"
				}
				if v.user && p.CertificateType == DeviceCertificate {
					bad(field, "{{"+n+"}}", "user variable in a device certificate")
				}
				if v.uriOnly && !uri {
					bad(field, "{{"+n+"}}", "variable allowed in URI SANs only")
				}
			}
			if strings.EqualFold(n, "FullyQualifiedDomainName") && p.Platform != Windows {
				field := "SubjectNameFormat"
				if san >= 0 {
					field = sanField(san) + ".Value"
				}
				// Intune fills it for domain-joined Windows devices only.
				bad(field, "{{"+n+"}}", "Windows only (domain-joined devices)")
			}
		}
	}
	f, err := ParseSubjectFormat(p.SubjectNameFormat)
	if err != nil {
		var fe *FormatError
		reason := err.Error()
		if errors.As(err, &fe) {
			reason = fmt.Sprintf("offset %d: %s", fe.Offset, fe.Reason)
		}
		bad("SubjectNameFormat", p.SubjectNameFormat, reason)
	} else {
		for _, rdn := range f.rdns {
			for _, a := range rdn {
				checkVars(-1, a.value, false)
			}
		}
		switch {
		case f.Len() == 0 && len(p.SubjectAlternativeNames) == 0:
			bad("SubjectNameFormat", "", "a subject or at least one subject alternative name is required")
		case f.Len() == 0 && p.Platform == Windows:
			// ClientCertificateInstall's SCEP SubjectName is a required node.
			bad("SubjectNameFormat", "", "Windows requires a subject name")
		}
	}
	if len(p.SubjectAlternativeNames) > MaxSANs {
		bad("SubjectAlternativeNames", len(p.SubjectAlternativeNames), "at most 32")
	}
	sans := make([]template, len(p.SubjectAlternativeNames))
	for i, s := range p.SubjectAlternativeNames {
		switch s.Type {
		case SANEmail, SANUPN, SANDNS, SANURI:
		default:
			bad(sanField(i)+".Type", s.Type, "must be SANEmail, SANUPN, SANDNS or SANURI")
		}
		if s.Value == "" {
			bad(sanField(i)+".Value", "", "required")
			continue
		}
		t, err := parseValueTemplate(s.Value)
		if err != nil {
			var fe *FormatError
			errors.As(err, &fe)
			bad(sanField(i)+".Value", s.Value, fmt.Sprintf("offset %d: %s", fe.Offset, fe.Reason))
			continue
		}
		sans[i] = t
		checkVars(i, t, s.Type == SANURI)
	}

	// Validity.
	switch {
	case p.Validity.Unit != Days && p.Validity.Unit != Months && p.Validity.Unit != Years:
		bad("Validity.Unit", p.Validity.Unit, "must be Days, Months or Years")
	case p.Validity.Value < 1:
		bad("Validity.Value", p.Validity.Value, "must be at least 1")
	case p.Validity.Unit == Days && p.Validity.Value > MaxValidityDays,
		p.Validity.Unit == Months && p.Validity.Value > MaxValidityMonths,
		p.Validity.Unit == Years && p.Validity.Value > 2:
		bad("Validity.Value", fmt.Sprintf("%d %s", p.Validity.Value, p.Validity.Unit), fmt.Sprintf("at most %d months (%d days, 2 years)", MaxValidityMonths, MaxValidityDays))
	}

	// Key storage.
	switch p.KeyStorageProvider {
	case KSPDefault:
	case KSPTPMIfPresent, KSPTPMRequired, KSPWindowsHello, KSPSoftware:
		if p.Platform != Windows {
			bad("KeyStorageProvider", p.KeyStorageProvider, "only Windows profiles choose a key storage provider")
		}
		if p.KeyStorageProvider == KSPWindowsHello && (p.KeyType != RSA || p.KeySize != 2048) {
			bad("KeyStorageProvider", p.KeyStorageProvider, "Windows Hello needs a 2048-bit RSA key")
		}
		if p.KeyStorageProvider == KSPWindowsHello && p.Hash == SHA1 {
			bad("Hash", p.Hash, "Windows Hello for Business supports SHA-2 only")
		}
		if (p.KeyStorageProvider == KSPTPMRequired || p.KeyStorageProvider == KSPTPMIfPresent) && p.KeySize > 2048 {
			bad("KeySize", p.KeySize, "TPM key storage allows at most 2048 bits (4096 needs the software KSP)")
		}
	default:
		bad("KeyStorageProvider", p.KeyStorageProvider, "unknown provider")
	}

	if p.ContainerName != "" && p.KeyStorageProvider != KSPWindowsHello {
		bad("ContainerName", p.ContainerName, "only for the Windows Hello key storage provider")
	}
	if c := p.ContainerName; c != "" && (len(c) > 256 || strings.ContainsRune(c, ';') || checkValue(nil, c) != "") {
		bad("ContainerName", p.ContainerName, "at most 256 printable characters, no ;")
	}

	// Key usage.
	const allowedKU = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	if p.KeyUsage == 0 || p.KeyUsage&^allowedKU != 0 {
		bad("KeyUsage", int(p.KeyUsage), "must be digitalSignature, keyEncipherment or both")
	}

	// Key type and size.
	switch p.KeyType {
	case RSA:
		switch p.KeySize {
		case 2048, 4096:
		case 3072:
			if p.Platform == Windows || p.Platform.apple() {
				bad("KeySize", p.KeySize, "the "+p.Platform.String()+" payload allows 1024, 2048 or 4096 only")
			}
		case 1024:
			if !p.AllowLegacyKeySize {
				bad("KeySize", p.KeySize, "1024 bits needs AllowLegacyKeySize")
			}
		default:
			bad("KeySize", p.KeySize, "must be 2048, 3072 or 4096 (1024 with AllowLegacyKeySize)")
		}
	case ECDSAP256, ECDSAP384:
		if p.Platform != Android {
			bad("KeyType", p.KeyType, "ECDSA keys are supported on Android only")
		}
		want := 256
		if p.KeyType == ECDSAP384 {
			want = 384
		}
		if p.KeySize != 0 && p.KeySize != want {
			bad("KeySize", p.KeySize, fmt.Sprintf("must be 0 or %d for %s", want, p.KeyType))
		}
	default:
		bad("KeyType", p.KeyType, "must be RSA, ECDSAP256 or ECDSAP384")
	}

	// Hash.
	switch p.Hash {
	case SHA2:
	case SHA1:
		switch {
		case p.Platform != Windows:
			bad("Hash", p.Hash, "SHA-1 is only configurable on Windows")
		case !p.AllowLegacyHash:
			bad("Hash", p.Hash, "SHA-1 needs AllowLegacyHash")
		}
	default:
		bad("Hash", p.Hash, "must be SHA2 or SHA1")
	}

	// EKUs.
	if len(p.ExtendedKeyUsages) == 0 {
		bad("ExtendedKeyUsages", "[]", "at least one extended key usage is required")
	}
	if len(p.ExtendedKeyUsages) > MaxEKUs {
		bad("ExtendedKeyUsages", len(p.ExtendedKeyUsages), "at most 32")
	}
	var seen map[string]bool // only for more than MaxEKUs: then the check is not quadratic
	if len(p.ExtendedKeyUsages) > MaxEKUs {
		seen = map[string]bool{}
	}
	for i, e := range p.ExtendedKeyUsages {
		field := func() string { return "ExtendedKeyUsages[" + strconv.Itoa(i) + "].OID" }
		if !validOID(e.OID) {
			bad(field(), e.OID, "not a valid OID")
			continue
		}
		// e is valid, so an equal earlier OID was valid (and seen) too.
		dup := false
		if seen != nil {
			dup = seen[e.OID.String()]
			seen[e.OID.String()] = true
		} else {
			for _, prev := range p.ExtendedKeyUsages[:i] {
				if prev.OID.Equal(e.OID) {
					dup = true
					break
				}
			}
		}
		if dup {
			bad(field(), e.OID, "duplicate")
		}
	}

	if p.RenewalThresholdPercent < 1 || p.RenewalThresholdPercent > 99 {
		bad("RenewalThresholdPercent", p.RenewalThresholdPercent, "must be 1 to 99")
	}

	// Server URLs.
	if len(p.ServerURLs) == 0 {
		bad("ServerURLs", "[]", "at least one SCEP server URL is required")
	}
	if len(p.ServerURLs) > MaxServerURLs {
		bad("ServerURLs", len(p.ServerURLs), "at most 16")
	}
	seenURL := map[string]bool{}
	for i, s := range p.ServerURLs {
		field := "ServerURLs[" + strconv.Itoa(i) + "]"
		if reason := serverURLProblem(s, p.Platform); reason != "" {
			bad(field, s, reason)
		} else if seenURL[s] {
			bad(field, s, "duplicate")
		}
		seenURL[s] = true
	}

	// Root CA.
	switch {
	case p.RootCA == nil && len(p.CAFingerprint) == 0:
		bad("RootCA", "nil", "RootCA or CAFingerprint is required")
	case p.RootCA == nil && len(p.CAFingerprint) != sha1.Size:
		bad("CAFingerprint", hex.EncodeToString(p.CAFingerprint), "must be a 20-byte SHA-1 fingerprint")
	case p.RootCA != nil && len(p.CAFingerprint) != 0:
		s := sha1.Sum(p.RootCA.Raw)
		if !bytes.Equal(s[:], p.CAFingerprint) {
			bad("CAFingerprint", hex.EncodeToString(p.CAFingerprint), "does not match RootCA")
		}
	}
	if p.RootCA != nil && !p.RootCA.IsCA {
		bad("RootCA", p.RootCA.Subject.String(), "not a CA certificate")
	}

	if p.RetryCount < 0 || p.RetryCount > MaxRetryCount {
		bad("RetryCount", p.RetryCount, "must be 0 to 30")
	}
	switch {
	case p.RetryDelay < 0 || p.RetryDelay > MaxRetryDelay:
		bad("RetryDelay", p.RetryDelay, "must be 0 to 24h")
	case p.Platform == Windows && p.RetryDelay%time.Minute != 0:
		bad("RetryDelay", p.RetryDelay, "Windows counts whole minutes")
	case p.Platform.apple() && p.RetryDelay%time.Second != 0:
		bad("RetryDelay", p.RetryDelay, "Apple counts whole seconds")
	}
	if containsAnyByte(p.TemplateName, "\x00\n\r") {
		bad("TemplateName", strconv.Quote(p.TemplateName), "control characters")
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	return f, sans, nil
}

// serverURLProblem returns why s cannot be a SCEP server URL of a profile for
// platform, or "" if it can.
func serverURLProblem(s string, platform Platform) string {
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Host == "" || u.User != nil:
		return "must be an absolute http or https URL with a host, no user info"
	case u.RawQuery != "" || u.ForceQuery || strings.Contains(s, "#"):
		// A device appends "?operation=...&message=..." to the URL (RFC 8894
		// section 4.1): a query of its own, even an empty one, would leave the
		// operation out of the query or make it part of a parameter's value, and
		// a fragment would swallow it.
		return "must have no query or fragment: devices append ?operation=... (RFC 8894 section 4.1)"
	case u.Scheme != "http" && u.Scheme != "https":
		return "scheme must be http or https"
	case u.Scheme != "https" && platform == Android:
		return "Android needs https"
	case strings.HasSuffix(strings.ToLower(u.Path), "/pkiclient.exe"):
		// Intune-managed devices append it to the profile's URL themselves
		// (scep.Mount serves URL and URL/pkiclient.exe).
		return "must not end in /pkiclient.exe: devices append it"
	case containsAnyByte(s, ";\x00\n\r"):
		return "must not contain ; or control characters"
	}
	return ""
}

// validOID reports whether oid is one that [parseOID] would read back from its dotted
// form: 2 to 64 arcs of at most 9 digits, first 0-2, second below 40 unless first is 2.
func validOID(oid asn1.ObjectIdentifier) bool {
	if len(oid) < 2 || len(oid) > 64 {
		return false
	}
	for _, a := range oid {
		if a < 0 || a > 999999999 {
			return false
		}
	}
	return oid[0] <= 2 && (oid[0] == 2 || oid[1] < 40)
}

func containsAnyByte(s, chars string) bool {
	for i := 0; i < len(s); i++ {
		for j := 0; j < len(chars); j++ {
			if s[i] == chars[j] {
				return true
			}
		}
	}
	return false
}

// effectiveKeySize is KeySize, or the curve size for ECDSA when KeySize is 0.
func (p *Profile) effectiveKeySize() int {
	switch p.KeyType {
	case ECDSAP256:
		return 256
	case ECDSAP384:
		return 384
	}
	return p.KeySize
}
