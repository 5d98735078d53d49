package profile

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

var (
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	// Requested extensions a CSR may carry beyond SAN, KU, EKU and basicConstraints.
	knownRequestExtensions = []asn1.ObjectIdentifier{
		{2, 5, 29, 14},                    // subjectKeyIdentifier
		{1, 3, 6, 1, 4, 1, 311, 20, 2},    // Microsoft certificate template name
		{1, 3, 6, 1, 4, 1, 311, 21, 7},    // Microsoft certificate template
		{1, 3, 6, 1, 4, 1, 311, 21, 10},   // Microsoft application policies
		{1, 2, 840, 113549, 1, 9, 15},     // S/MIME capabilities
		{1, 3, 6, 1, 4, 1, 311, 13, 2, 3}, // Microsoft OS version
		{1, 3, 6, 1, 4, 1, 311, 21, 20},   // Microsoft request client info
		{1, 3, 6, 1, 4, 1, 311, 13, 2, 2}, // Microsoft enrollment CSP
		{1, 3, 6, 1, 4, 1, 311, 21, 1},    // Microsoft CA version
	}
)

// Check compares a CSR with the rendered profile and returns nil if it matches, else
// one [*MismatchError] per difference, joined (errors.As finds the first;
// errors.Is(err, [ErrMismatch]) holds). What it compares:
//
//   - subject: the CSR subject and the rendered one as multisets of (attribute type,
//     value) pairs, exactly: same types, byte-identical values, no extra or missing
//     attribute. RDN grouping and order are not compared.
//   - san.dns, san.email, san.upn, san.uri: the requested subjectAltName, kind by kind,
//     as multisets (DNS names ignoring ASCII case, the rest exactly); san.ip and
//     san.other: the profile never renders those, so any is a mismatch.
//   - key.type and key.size: RSA modulus length in bits, or the ECDSA curve.
//   - key.usage: if the CSR requests a keyUsage extension, it equals the profile's.
//   - eku: if the CSR requests extendedKeyUsage, it holds the profile's OIDs as a set.
//   - hash: on Windows and Android, a SHA-2 profile refuses a CSR signed with SHA-1;
//     MD5 is refused everywhere. Apple devices choose their own hash, so it is not
//     compared for iOS and macOS.
//   - extension.basicConstraints: a request for a CA certificate is refused;
//     extension.<oid>: an unknown extension marked critical, or any extension twice.
//
// Check does not verify the CSR's signature: the CA does that (catemplate.Apply).
func Check(csr *x509.CertificateRequest, r *Rendered) error {
	if csr == nil || r == nil {
		return &MismatchError{Field: "request", Want: "a CSR and a rendered profile", Got: "nil"}
	}
	var errs []error
	add := func(field, want, got string) {
		errs = append(errs, &MismatchError{Field: field, Want: want, Got: got})
	}

	// Subject.
	var seq pkix.RDNSequence
	if canonicalSubject(csr.RawSubject, r.Attributes) {
		// The CSR carries the rendered subject as Render encodes it: parsing it
		// would give back exactly the pairs of r.Attributes.
	} else if rest, err := asn1.Unmarshal(csr.RawSubject, &seq); err != nil || len(rest) != 0 {
		add("subject", formatDN(r.Attributes), "unparseable subject")
	} else {
		want := make([]string, 0, len(r.Attributes))
		for _, a := range r.Attributes {
			want = append(want, pairKey(a.Type, a.Value))
		}
		var got []string
		for _, rdn := range seq {
			for _, atv := range rdn {
				got = append(got, pairKey(atv.Type, atvString(atv)))
			}
		}
		if !sameMultiset(want, got, false) {
			var gotShown []Attribute // shown in the notation of the wanted subject
			for i, rdn := range seq {
				for _, atv := range rdn {
					gotShown = append(gotShown, Attribute{Type: atv.Type, Value: atvString(atv), RDN: i})
				}
			}
			shown := formatDN(gotShown)
			if shown == "" {
				shown = "an empty subject"
			}
			add("subject", formatDN(r.Attributes), shown)
		}
	}

	// Extensions: duplicates, unknown critical ones, basicConstraints.
	seen := map[string]bool{}
	for _, e := range csr.Extensions {
		id := e.Id.String()
		if seen[id] {
			add("extension."+id, "at most once", "twice")
			continue
		}
		seen[id] = true
		switch {
		case e.Id.Equal(OIDSubjectAltName), e.Id.Equal(oidKeyUsage), e.Id.Equal(oidExtKeyUsage):
		case e.Id.Equal(oidBasicConstraints):
			var bc struct {
				IsCA       bool `asn1:"optional"`
				MaxPathLen int  `asn1:"optional,default:-1"`
			}
			if rest, err := asn1.Unmarshal(e.Value, &bc); err != nil || len(rest) != 0 || bc.IsCA {
				add("extension.basicConstraints", "CA:FALSE or absent", "CA:TRUE or malformed")
			}
		case slices.ContainsFunc(knownRequestExtensions, e.Id.Equal):
		case e.Critical:
			add("extension."+id, "no unknown critical extension", "critical "+id)
		}
	}

	// SANs.
	alt, err := RequestAltNames(csr)
	if err != nil {
		add("san", "well-formed subjectAltName", err.Error())
	} else {
		if alt == nil {
			alt = &AltNames{}
		}
		cmp := func(field string, want, got []string, fold bool) {
			if !sameMultiset(want, got, fold) {
				add(field, listString(want), listString(got))
			}
		}
		cmp("san.dns", r.DNSNames, alt.DNSNames, true)
		cmp("san.email", r.EmailAddresses, alt.EmailAddresses, false)
		cmp("san.upn", r.UPNs, alt.UPNs, false)
		var wantURI, gotURI []string
		for _, u := range r.URIs {
			wantURI = append(wantURI, u.String())
		}
		for _, u := range alt.URIs {
			gotURI = append(gotURI, u.String())
		}
		cmp("san.uri", wantURI, gotURI, false)
		if len(alt.IPAddresses) > 0 {
			add("san.ip", "none", fmt.Sprint(alt.IPAddresses))
		}
		if len(alt.Others) > 0 {
			add("san.other", "none", fmt.Sprintf("%d other names", len(alt.Others)))
		}
	}

	// Key.
	switch k := csr.PublicKey.(type) {
	case *rsa.PublicKey:
		if r.KeyType != RSA {
			add("key.type", r.KeyType.String(), "rsa")
		} else if k.N.BitLen() != r.KeySize {
			add("key.size", strconv.Itoa(r.KeySize), strconv.Itoa(k.N.BitLen()))
		}
	case *ecdsa.PublicKey:
		var got KeyType = -1
		switch k.Curve {
		case elliptic.P256():
			got = ECDSAP256
		case elliptic.P384():
			got = ECDSAP384
		}
		if got != r.KeyType {
			add("key.type", r.KeyType.String(), "ecdsa-"+k.Curve.Params().Name)
		}
	default:
		add("key.type", r.KeyType.String(), fmt.Sprintf("%T", csr.PublicKey))
	}

	// Key usage and EKU, if requested.
	for _, e := range csr.Extensions {
		switch {
		case e.Id.Equal(oidKeyUsage):
			ku, ok := parseKeyUsage(e.Value)
			if !ok {
				add("key.usage", kuString(r.KeyUsage), "malformed keyUsage")
			} else if ku != r.KeyUsage {
				add("key.usage", kuString(r.KeyUsage), kuString(ku))
			}
		case e.Id.Equal(oidExtKeyUsage):
			var oids []asn1.ObjectIdentifier
			if rest, err := asn1.Unmarshal(e.Value, &oids); err != nil || len(rest) != 0 {
				add("eku", oidList(r.ExtKeyUsageOIDs), "malformed extendedKeyUsage")
				continue
			}
			var want, got []string
			for _, o := range r.ExtKeyUsageOIDs {
				want = append(want, o.String())
			}
			for _, o := range oids {
				got = append(got, o.String())
			}
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(slices.Compact(want), slices.Compact(got)) {
				add("eku", oidList(r.ExtKeyUsageOIDs), oidList(oids))
			}
		}
	}

	// Hash.
	switch csr.SignatureAlgorithm {
	case x509.MD5WithRSA, x509.MD2WithRSA:
		add("hash", "sha2", "md5")
	case x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.DSAWithSHA1:
		if r.Hash == SHA2 && r.Profile != nil && (r.Profile.Platform == Windows || r.Profile.Platform == Android) {
			add("hash", "sha2", "sha1")
		}
	}
	return errors.Join(errs...)
}

func atvString(atv pkix.AttributeTypeAndValue) string {
	s, ok := atv.Value.(string)
	if !ok {
		s = fmt.Sprintf("<non-string %T>", atv.Value)
	}
	return s
}

// canonicalSubject reports whether raw is the RDNSequence marshalRDNs makes of attrs
// and encoding/asn1 would parse it back into exactly the (type, value) pairs of attrs:
// every OID is one parseOID accepts (so it survives the round trip) and every value is
// valid for its string type as encoding/asn1 parses it. Then Check need not parse raw.
func canonicalSubject(raw []byte, attrs []Attribute) bool {
	for _, a := range attrs {
		if !validOID(a.Type) {
			return false
		}
		tag := asn1.TagUTF8String
		if t := attrByOID(a.Type); t != nil {
			tag = t.tag
		}
		switch tag {
		case asn1.TagUTF8String:
			if !utf8.ValidString(a.Value) {
				return false
			}
		case asn1.TagPrintableString:
			for i := 0; i < len(a.Value); i++ {
				if c := a.Value[i]; !isPrintableString(a.Value[i:i+1]) && c != '*' && c != '&' {
					return false
				}
			}
		case asn1.TagIA5String:
			if !isASCII(a.Value) {
				return false
			}
		default:
			return false
		}
	}
	enc, err := marshalRDNs(attrs)
	return err == nil && bytes.Equal(enc, raw)
}

func pairKey(oid asn1.ObjectIdentifier, v string) string {
	return oid.String() + "=" + v
}

func sameMultiset(a, b []string, fold bool) bool {
	if len(a) != len(b) {
		return false
	}
	x := slices.Clone(a)
	y := slices.Clone(b)
	if fold {
		for i := range x {
			x[i] = strings.ToLower(x[i])
		}
		for i := range y {
			y[i] = strings.ToLower(y[i])
		}
	}
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

func listString(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = strconv.Quote(v)
	}
	return "[" + strings.Join(q, " ") + "]"
}

func oidList(oids []asn1.ObjectIdentifier) string {
	s := make([]string, len(oids))
	for i, o := range oids {
		s[i] = o.String()
	}
	return "[" + strings.Join(s, " ") + "]"
}

// parseKeyUsage decodes a keyUsage extension value into crypto/x509's bit order.
func parseKeyUsage(der []byte) (x509.KeyUsage, bool) {
	var bits asn1.BitString
	if rest, err := asn1.Unmarshal(der, &bits); err != nil || len(rest) != 0 {
		return 0, false
	}
	var ku x509.KeyUsage
	for i := 0; i < 9; i++ {
		if bits.At(i) != 0 {
			ku |= 1 << uint(i)
		}
	}
	return ku, true
}

func kuString(ku x509.KeyUsage) string {
	var parts []string
	if ku&x509.KeyUsageDigitalSignature != 0 {
		parts = append(parts, "digitalSignature")
	}
	if ku&x509.KeyUsageKeyEncipherment != 0 {
		parts = append(parts, "keyEncipherment")
	}
	if rest := ku &^ (x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment); rest != 0 {
		parts = append(parts, fmt.Sprintf("0x%x", int(rest)))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "+")
}
