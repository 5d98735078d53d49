package profile

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"net/url"
	"strings"
)

// Rendered is a profile bound to one user and device: the concrete subject, SANs and
// key parameters the device's CSR must carry. It is what [Check] compares a CSR with,
// what the exports write, and what a CA applies.
type Rendered struct {
	// Profile is the profile rendered (not copied; do not modify it afterwards).
	Profile *Profile
	// Attributes is the subject in the order of the format.
	Attributes []Attribute
	// Subject holds Attributes as pkix.Name.ExtraNames (one RDN each, in order); its
	// other fields are empty. Use RawSubject to keep multi-valued RDNs.
	Subject pkix.Name
	// RawSubject is the DER RDNSequence: UTF8String values, PrintableString for C and
	// SERIALNUMBER, IA5String for E and DC. Set it as x509.CertificateRequest.RawSubject
	// or x509.Certificate.RawSubject.
	RawSubject     []byte
	DNSNames       []string
	EmailAddresses []string
	// UPNs are Microsoft user principal names (otherName 1.3.6.1.4.1.311.20.2.3).
	UPNs []string
	// URIs keep the scheme as the profile writes it ("IntuneDeviceId://..."), where
	// url.Parse would lower-case it: their String is the rendered text.
	URIs []*url.URL
	// KeyUsage is the profile's key usage.
	KeyUsage x509.KeyUsage
	// ExtKeyUsageOIDs are the profile's EKUs in order; ExtKeyUsages and
	// UnknownExtKeyUsages split them the way crypto/x509 does.
	ExtKeyUsageOIDs     []asn1.ObjectIdentifier
	ExtKeyUsages        []x509.ExtKeyUsage
	UnknownExtKeyUsages []asn1.ObjectIdentifier
	KeyType             KeyType
	// KeySize is the RSA modulus size or the curve size in bits.
	KeySize  int
	Hash     Hash
	Validity ValidityPeriod
}

// AltNames returns the rendered SANs.
func (r *Rendered) AltNames() *AltNames {
	return &AltNames{
		DNSNames:       r.DNSNames,
		EmailAddresses: r.EmailAddresses,
		UPNs:           r.UPNs,
		URIs:           r.URIs,
	}
}

// HasAltNames reports whether the rendered profile has any SAN.
func (r *Rendered) HasAltNames() bool {
	return len(r.DNSNames)+len(r.EmailAddresses)+len(r.UPNs)+len(r.URIs) > 0
}

// SubjectString returns the subject as a DN string in format order, values quoted where
// needed (the form Windows' SubjectName node takes).
func (r *Rendered) SubjectString() string { return formatDN(r.Attributes) }

// Render binds p to user u and device d. custom supplies further variables; a custom
// name equal to a built-in one (ignoring case) is refused, so a caller can never
// override what the directory says.
//
// The subject format is parsed first, then variables fill attribute values only: a value
// is taken verbatim as one attribute value or one SAN, whatever it contains (",CN=x",
// "+", quotes, backslashes), so it can never add an RDN or a SAN. Values that contain
// NUL or another control character (C0, DEL, C1), or are not valid UTF-8, are refused
// with [ErrInvalidValue] rather than stripped. An unknown variable is
// [ErrUnknownVariable], an empty one [ErrEmptyVariable], a user variable in a device
// certificate [ErrVariableNotAllowed]; all as a [*VariableError].
//
// Render validates p first and, if it is invalid, returns one [*FieldError] per bad
// setting.
func Render(p *Profile, u User, d Device, custom Values) (*Rendered, error) {
	if p == nil {
		return nil, &FieldError{Field: "Profile", Value: "nil", Reason: "no profile"}
	}
	f, sans, err := p.validate()
	if err != nil {
		return nil, err
	}
	for name := range custom {
		if lookupBuiltin(name) != nil {
			return nil, &VariableError{Name: name, Where: "custom values", Err: ErrVariableNotAllowed, Detail: "shadows a built-in variable"}
		}
	}
	rc := renderCtx{p: p, u: &u, d: &d, custom: custom}
	r := &Rendered{
		Profile:  p,
		KeyUsage: p.KeyUsage,
		KeyType:  p.KeyType,
		KeySize:  p.effectiveKeySize(),
		Hash:     p.Hash,
		Validity: p.Validity,
	}
	if n := f.Len(); n > 0 { // an empty subject leaves both nil
		r.Attributes = make([]Attribute, 0, n)
		r.Subject.ExtraNames = make([]pkix.AttributeTypeAndValue, 0, n)
	}
	for i, rdn := range f.rdns {
		for _, a := range rdn {
			v, err := rc.expand(a.value, -1, false)
			if err != nil {
				return nil, err
			}
			if reason := checkValue(a.typ, v); reason != "" {
				return nil, &VariableError{Where: "subject", Err: ErrInvalidValue, Detail: a.typ.keyword + ": " + reason}
			}
			r.Attributes = append(r.Attributes, Attribute{Type: a.typ.oid, Value: v, RDN: i})
			r.Subject.ExtraNames = append(r.Subject.ExtraNames, pkix.AttributeTypeAndValue{Type: a.typ.oid, Value: v})
		}
	}
	if r.RawSubject, err = marshalRDNs(r.Attributes); err != nil {
		return nil, fmt.Errorf("profile: encoding subject: %w", err)
	}
	for i, s := range p.SubjectAlternativeNames {
		v, err := rc.expand(sans[i], i, s.Type == SANURI)
		if err != nil {
			return nil, err
		}
		if reason := checkSANValue(s.Type, v); reason != "" {
			return nil, &VariableError{Where: sanField(i), Err: ErrInvalidValue, Detail: reason}
		}
		if s.Type == SANDNS && strings.HasPrefix(v, "*.") && !strings.HasPrefix(strings.TrimSpace(s.Value), "*.") {
			// A wildcard only where the profile writes it: a device named "*" would
			// otherwise get a certificate for every host of its domain.
			return nil, &VariableError{Where: sanField(i), Err: ErrInvalidValue, Detail: "a wildcard DNS name made by a variable"}
		}
		switch s.Type {
		case SANEmail:
			r.EmailAddresses = append(r.EmailAddresses, v)
		case SANUPN:
			r.UPNs = append(r.UPNs, v)
		case SANDNS:
			r.DNSNames = append(r.DNSNames, v)
		case SANURI:
			uri, _ := parseURI(v) // checked by checkSANValue; the scheme as written
			r.URIs = append(r.URIs, uri)
		}
	}
	for _, e := range p.ExtendedKeyUsages {
		oid := append(asn1.ObjectIdentifier(nil), e.OID...)
		r.ExtKeyUsageOIDs = append(r.ExtKeyUsageOIDs, oid)
		if k, ok := extKeyUsageFromOID(oid); ok {
			r.ExtKeyUsages = append(r.ExtKeyUsages, k)
		} else {
			r.UnknownExtKeyUsages = append(r.UnknownExtKeyUsages, oid)
		}
	}
	return r, nil
}

type renderCtx struct {
	p      *Profile
	u      *User
	d      *Device
	custom Values
}

// where names the value being rendered in errors: the subject (san < 0) or
// SubjectAlternativeNames[san].
func where(san int) string {
	if san < 0 {
		return "subject"
	}
	return sanField(san)
}

func (rc *renderCtx) expand(t template, san int, uri bool) (string, error) {
	if len(t) == 1 && t[0].variable == "" {
		return t[0].lit, nil
	}
	var b strings.Builder
	for _, s := range t {
		if s.variable == "" {
			b.WriteString(s.lit)
			continue
		}
		v, err := rc.lookup(s.variable, san, uri)
		if err != nil {
			return "", err
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

func (rc *renderCtx) lookup(name string, san int, uri bool) (string, error) {
	if bv := lookupBuiltin(name); bv != nil {
		if bv.user && rc.p.CertificateType == DeviceCertificate {
			return "", &VariableError{Name: name, Where: where(san), Err: ErrVariableNotAllowed, Detail: "user variable in a device certificate"}
		}
		if bv.uriOnly && !uri {
			return "", &VariableError{Name: name, Where: where(san), Err: ErrVariableNotAllowed, Detail: "allowed in URI SANs only"}
		}
		v := bv.get(rc.u, rc.d)
		if dv := inDevice[bv.name]; dv != nil && rc.p.CertificateType == DeviceCertificate {
			v = dv(rc.d)
		}
		if v == "" {
			return "", &VariableError{Name: name, Where: where(san), Err: ErrEmptyVariable}
		}
		return v, nil
	}
	v, ok := rc.custom[name]
	if !ok {
		return "", &VariableError{Name: name, Where: where(san), Err: ErrUnknownVariable}
	}
	if v == "" {
		return "", &VariableError{Name: name, Where: where(san), Err: ErrEmptyVariable}
	}
	return v, nil
}

// checkSANValue checks a rendered SAN. Beyond the rules for every value, Intune forbids
// { } | ; in SAN text (";" separates names in the Windows CSP), DNS names must be
// host names (a leading "*." allowed), email addresses and URIs ASCII, URIs absolute.
func checkSANValue(t SANType, v string) string {
	if reason := checkValue(nil, v); reason != "" {
		return reason
	}
	if strings.ContainsAny(v, "{}|;") {
		return "SAN value contains one of { } | ;"
	}
	switch t {
	case SANDNS:
		if !validDNSName(v) {
			return "not a valid DNS name"
		}
	case SANEmail:
		at := strings.LastIndexByte(v, '@')
		if at <= 0 || at == len(v)-1 || strings.ContainsAny(v, " <>,\"") || !isASCII(v) {
			return "not a valid email address"
		}
	case SANUPN:
		// A UPN is any UTF-8 text; checkValue already refused control characters.
	case SANURI:
		if !isASCII(v) || strings.ContainsAny(v, " \"<>\\^`") {
			return "URI must be ASCII without spaces"
		}
		u, err := url.Parse(v)
		if err != nil || u.Scheme == "" {
			return "not an absolute URI"
		}
	}
	return ""
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func validDNSName(s string) bool {
	if len(s) > 253 {
		return false
	}
	s = strings.TrimPrefix(s, "*.")
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

var ekuOIDs = []struct {
	oid asn1.ObjectIdentifier
	eku x509.ExtKeyUsage
}{
	{asn1.ObjectIdentifier{2, 5, 29, 37, 0}, x509.ExtKeyUsageAny},
	{asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}, x509.ExtKeyUsageServerAuth},
	{asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}, x509.ExtKeyUsageClientAuth},
	{asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 3}, x509.ExtKeyUsageCodeSigning},
	{asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 4}, x509.ExtKeyUsageEmailProtection},
	{asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 5}, x509.ExtKeyUsageIPSECEndSystem},
	{asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 6}, x509.ExtKeyUsageIPSECTunnel},
	{asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 7}, x509.ExtKeyUsageIPSECUser},
	{asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 8}, x509.ExtKeyUsageTimeStamping},
	{asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 9}, x509.ExtKeyUsageOCSPSigning},
}

func extKeyUsageFromOID(oid asn1.ObjectIdentifier) (x509.ExtKeyUsage, bool) {
	for _, e := range ekuOIDs {
		if e.oid.Equal(oid) {
			return e.eku, true
		}
	}
	return 0, false
}

// ExtKeyUsageOID returns the OID of a crypto/x509 extended key usage, if it has one.
func ExtKeyUsageOID(u x509.ExtKeyUsage) (asn1.ObjectIdentifier, bool) {
	for _, e := range ekuOIDs {
		if e.eku == u {
			return e.oid, true
		}
	}
	return nil, false
}
