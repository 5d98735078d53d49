package profile

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"net"
	"net/url"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// OIDUPN is the otherName type of a Microsoft user principal name
// (szOID_NT_PRINCIPAL_NAME); its value is an explicitly tagged UTF8String.
var OIDUPN = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}

// OIDSubjectAltName is the subjectAltName extension (RFC 5280, 4.2.1.6).
var OIDSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// ErrAltNames is returned for a subjectAltName extension this package cannot parse.
var ErrAltNames = errors.New("profile: malformed subjectAltName")

// AltNames is the content of a subjectAltName extension, including the UPN otherNames
// crypto/x509 does not expose. Others keeps, as DER, each GeneralName of another kind
// (directoryName, registeredID, otherNames of other types, ...), so nothing is lost.
type AltNames struct {
	DNSNames       []string
	EmailAddresses []string
	UPNs           []string
	URIs           []*url.URL
	IPAddresses    []net.IP
	Others         [][]byte
}

// Len returns the number of names.
func (a *AltNames) Len() int {
	return len(a.DNSNames) + len(a.EmailAddresses) + len(a.UPNs) + len(a.URIs) + len(a.IPAddresses) + len(a.Others)
}

var (
	tagOtherName = cbasn1.Tag(0).ContextSpecific().Constructed()
	tagEmail     = cbasn1.Tag(1).ContextSpecific()
	tagDNS       = cbasn1.Tag(2).ContextSpecific()
	tagURI       = cbasn1.Tag(6).ContextSpecific()
	tagIP        = cbasn1.Tag(7).ContextSpecific()
	tagExplicit0 = cbasn1.Tag(0).ContextSpecific().Constructed()
)

// ParseAltNames parses the value of a subjectAltName extension (a GeneralNames
// SEQUENCE). rfc822Name, dNSName and URI must be ASCII, UPNs valid UTF-8, IP addresses 4
// or 16 bytes; trailing data is an error. A URI keeps its scheme as written (crypto/x509
// and url.Parse lower-case it), so its String is the name's text.
func ParseAltNames(der []byte) (*AltNames, error) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, ErrAltNames
	}
	a := &AltNames{}
	for !seq.Empty() {
		var elem cryptobyte.String
		var tag cbasn1.Tag
		if !seq.ReadAnyASN1Element(&elem, &tag) {
			return nil, ErrAltNames
		}
		raw := []byte(elem)
		var body cryptobyte.String
		if !elem.ReadAnyASN1(&body, &tag) {
			return nil, ErrAltNames
		}
		switch tag {
		case tagEmail, tagDNS, tagURI:
			s := string(body)
			if !isASCII(s) {
				return nil, ErrAltNames
			}
			switch tag {
			case tagEmail:
				a.EmailAddresses = append(a.EmailAddresses, s)
			case tagDNS:
				a.DNSNames = append(a.DNSNames, s)
			default:
				u, err := parseURI(s)
				if err != nil {
					return nil, ErrAltNames
				}
				a.URIs = append(a.URIs, u)
			}
		case tagIP:
			if len(body) != 4 && len(body) != 16 {
				return nil, ErrAltNames
			}
			a.IPAddresses = append(a.IPAddresses, net.IP(append([]byte(nil), body...)))
		case tagOtherName:
			var oid asn1.ObjectIdentifier
			var val cryptobyte.String
			if !body.ReadASN1ObjectIdentifier(&oid) || !body.ReadASN1(&val, tagExplicit0) || !body.Empty() {
				return nil, ErrAltNames
			}
			if !oid.Equal(OIDUPN) {
				a.Others = append(a.Others, append([]byte(nil), raw...))
				continue
			}
			var s cryptobyte.String
			if !val.ReadASN1(&s, cbasn1.UTF8String) || !val.Empty() || !utf8.Valid(s) {
				return nil, ErrAltNames
			}
			a.UPNs = append(a.UPNs, string(s))
		default:
			a.Others = append(a.Others, append([]byte(nil), raw...))
		}
	}
	return a, nil
}

// parseURI parses s as url.Parse does, but keeps the scheme as written, so that the
// URL's String is s again: url.Parse lower-cases the scheme (RFC 3986 section 3.1
// calls schemes case-insensitive, lower case canonical), and a subject alternative
// name is carried as the profile spells it. Intune's documentation gives
// "IntuneDeviceId://{{DeviceId}}" for network access control servers, which look for
// that spelling in the certificate.
func parseURI(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if n := len(u.Scheme); n > 0 && n < len(s) && s[n] == ':' && strings.EqualFold(s[:n], u.Scheme) {
		u.Scheme = s[:n]
	}
	return u, nil
}

// Marshal encodes the names as a GeneralNames SEQUENCE, in this order: UPNs, email
// addresses, DNS names, URIs, IP addresses, others. Strings that the ASN.1 types cannot
// carry (non-ASCII email, DNS or URI; invalid UTF-8 UPN) are an error.
func (a *AltNames) Marshal() ([]byte, error) {
	for _, s := range append(append([]string(nil), a.EmailAddresses...), a.DNSNames...) {
		if !isASCII(s) {
			return nil, ErrAltNames
		}
	}
	for _, s := range a.UPNs {
		if !utf8.ValidString(s) {
			return nil, ErrAltNames
		}
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, s := range a.UPNs {
			b.AddASN1(tagOtherName, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(OIDUPN)
				b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
				})
			})
		}
		for _, s := range a.EmailAddresses {
			b.AddASN1(tagEmail, func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
		}
		for _, s := range a.DNSNames {
			b.AddASN1(tagDNS, func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
		}
		for _, u := range a.URIs {
			s := u.String()
			if !isASCII(s) {
				b.SetError(ErrAltNames)
				return
			}
			b.AddASN1(tagURI, func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
		}
		for _, ip := range a.IPAddresses {
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			b.AddASN1(tagIP, func(b *cryptobyte.Builder) { b.AddBytes(ip) })
		}
		for _, o := range a.Others {
			b.AddBytes(o)
		}
	})
	return b.Bytes()
}

// Extension returns the names as a subjectAltName extension. RFC 5280 requires it to
// be critical when the subject is empty; pass critical accordingly.
func (a *AltNames) Extension(critical bool) (pkix.Extension, error) {
	v, err := a.Marshal()
	if err != nil {
		return pkix.Extension{}, err
	}
	return pkix.Extension{Id: OIDSubjectAltName, Critical: critical, Value: v}, nil
}

// RequestAltNames returns the subjectAltName the CSR requests, parsed, or nil if it
// requests none. Two subjectAltName extensions are an error.
func RequestAltNames(csr *x509.CertificateRequest) (*AltNames, error) {
	var found *pkix.Extension
	for i := range csr.Extensions {
		if csr.Extensions[i].Id.Equal(OIDSubjectAltName) {
			if found != nil {
				return nil, ErrAltNames
			}
			found = &csr.Extensions[i]
		}
	}
	if found == nil {
		return nil, nil
	}
	return ParseAltNames(found.Value)
}
