package intune

import (
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"strings"
	"unicode/utf8"
)

// A revocation request names its CA by the issuer name the success notification
// sent: a DN string as crypto/x509 writes it (pkix.Name.String) unless the operator
// chose another. It is compared with the CA's as a DN string (RFC 4514), parsed on
// both sides, not with the CA certificate's subject itself: pkix.Name.String orders
// the attributes its own way and joins repeated types into one multi-valued RDN, so
// the string sent need not follow the certificate's RDNs.

// dnAttr is one attribute type and value of a DN string.
type dnAttr struct {
	typ   string // an OID in dotted form for the names known, otherwise the name upper-cased
	value string // unescaped; a hexstring's (#...) is its hex digits lower-cased
	hex   bool   // a hexstring whose DER is not a string type
}

// dnTypes are the attribute type names read as their OIDs: those crypto/x509 writes,
// those of RFC 4514's table, and E, which Windows writes for emailAddress.
var dnTypes = map[string]string{
	"CN": "2.5.4.3", "SERIALNUMBER": "2.5.4.5", "C": "2.5.4.6", "L": "2.5.4.7", "ST": "2.5.4.8",
	"STREET": "2.5.4.9", "O": "2.5.4.10", "OU": "2.5.4.11", "POSTALCODE": "2.5.4.17",
	"DC": "0.9.2342.19200300.100.1.25", "UID": "0.9.2342.19200300.100.1.1",
	"E": "1.2.840.113549.1.9.1", "EMAILADDRESS": "1.2.840.113549.1.9.1",
}

var errDN = errors.New("intune: not a DN string")

// parseDN reads a DN string (RFC 4514) into its RDNs, in the order written. Values
// are unescaped (\, and \2C alike; hex pairs are bytes, so that UTF-8 may be written
// as pairs). Beyond RFC 4514 it allows white space around the separators (',', '+',
// '='), which is not part of any value; an escaped space is. It refuses what RFC 4514
// does not allow unescaped in a value (" ; < > \ and a backslash before anything but
// these, ',', '+', ' ', '#', '=' or two hex digits), empty RDNs and malformed types.
func parseDN(s string) ([][]dnAttr, error) {
	p := dnParser{s: s}
	p.space()
	if p.end() {
		return nil, nil
	}
	var rdns [][]dnAttr
	rdn := []dnAttr{}
	for {
		a, err := p.attr()
		if err != nil {
			return nil, err
		}
		rdn = append(rdn, a)
		if p.end() {
			return append(rdns, rdn), nil
		}
		switch p.s[p.i] {
		case '+':
		case ',':
			rdns, rdn = append(rdns, rdn), []dnAttr{}
		default:
			return nil, errDN
		}
		p.i++
	}
}

type dnParser struct {
	s string
	i int
}

func (p *dnParser) end() bool { return p.i == len(p.s) }

func (p *dnParser) space() {
	for !p.end() && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// attr reads one type=value and the white space after it.
func (p *dnParser) attr() (dnAttr, error) {
	p.space()
	start := p.i
	for !p.end() && p.s[p.i] != '=' {
		p.i++
	}
	if p.end() {
		return dnAttr{}, errDN
	}
	typ, err := dnType(strings.TrimRight(p.s[start:p.i], " \t"))
	if err != nil {
		return dnAttr{}, err
	}
	p.i++ // '='
	p.space()
	if !p.end() && p.s[p.i] == '#' {
		return p.hexValue(typ)
	}
	var v []byte
	kept := 0 // v up to its last escaped character, which a trailing-space trim keeps
	for !p.end() {
		c := p.s[p.i]
		switch c {
		case ',', '+':
			return dnAttr{typ: typ, value: trimTrailingSpace(v, kept)}, nil
		case '"', ';', '<', '>', 0:
			return dnAttr{}, errDN
		case '\\':
			if p.i+1 >= len(p.s) {
				return dnAttr{}, errDN
			}
			if b, ok := hexPair(p.s[p.i+1:]); ok {
				v = append(v, b)
				p.i += 3
			} else if strings.IndexByte(`"+,;<>\ #=`, p.s[p.i+1]) >= 0 {
				v = append(v, p.s[p.i+1])
				p.i += 2
			} else {
				return dnAttr{}, errDN
			}
			kept = len(v)
			continue
		}
		v = append(v, c)
		p.i++
	}
	return dnAttr{typ: typ, value: trimTrailingSpace(v, kept)}, nil
}

// hexValue reads a hexstring value ('#' and hex pairs: a BER encoding) and the white
// space after it. One of a string type (UTF8String, PrintableString, IA5String and
// the like) is read as that string, so that it equals the same value written as a
// string; any other is kept as hex.
func (p *dnParser) hexValue(typ string) (dnAttr, error) {
	p.i++ // '#'
	start := p.i
	for !p.end() && isHex(p.s[p.i]) {
		p.i++
	}
	digits := strings.ToLower(p.s[start:p.i])
	p.space()
	if !p.end() && p.s[p.i] != ',' && p.s[p.i] != '+' {
		return dnAttr{}, errDN
	}
	der, err := hex.DecodeString(digits)
	if err != nil || len(der) == 0 {
		return dnAttr{}, errDN
	}
	var raw asn1.RawValue
	if rest, err := asn1.Unmarshal(der, &raw); err == nil && len(rest) == 0 && raw.Class == asn1.ClassUniversal {
		switch raw.Tag {
		case asn1.TagUTF8String, asn1.TagPrintableString, asn1.TagIA5String, asn1.TagT61String,
			asn1.TagNumericString, 26: // VisibleString
			return dnAttr{typ: typ, value: string(raw.Bytes)}, nil
		}
	}
	return dnAttr{typ: typ, value: digits, hex: true}, nil
}

// dnType canonicalises an attribute type: a known name (any case) or an OID, with or
// without the "OID." prefix, to the OID; another name (a descr: a letter, then
// letters, digits and hyphens) upper-cased.
func dnType(t string) (string, error) {
	if len(t) > 4 && strings.EqualFold(t[:4], "OID.") {
		t = t[4:]
		if !numericOID(t) {
			return "", errDN
		}
	}
	switch {
	case t == "":
		return "", errDN
	case numericOID(t):
		return t, nil
	}
	u := strings.ToUpper(t)
	if oid, ok := dnTypes[u]; ok {
		return oid, nil
	}
	if c := u[0]; c < 'A' || c > 'Z' {
		return "", errDN
	}
	for _, c := range []byte(u) {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return "", errDN
		}
	}
	return u, nil
}

// numericOID reports whether s is an OID in dotted form: numbers without leading
// zeros, at least two.
func numericOID(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return false
	}
	for _, n := range parts {
		if n == "" || len(n) > 1 && n[0] == '0' {
			return false
		}
		for _, c := range []byte(n) {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// hexPair is the byte written by the two hex digits s starts with, if it does.
func hexPair(s string) (byte, bool) {
	if len(s) < 2 || !isHex(s[0]) || !isHex(s[1]) {
		return 0, false
	}
	b, err := hex.DecodeString(s[:2])
	if err != nil {
		return 0, false
	}
	return b[0], true
}

// trimTrailingSpace is v without its unescaped trailing white space: none of v[:kept]
// (escaped) is removed.
func trimTrailingSpace(v []byte, kept int) string {
	n := len(v)
	for n > kept && (v[n-1] == ' ' || v[n-1] == '\t') {
		n--
	}
	return string(v[:n])
}

// sameName reports whether two issuer names are the same: as DN strings (RFC 4514),
// the same RDNs in the same order, each with the same attributes in any order (a
// multi-valued RDN is a set), types the same by name or OID, values the same once
// unescaped without regard to case; white space around the separators does not
// count. When either is not a DN string (an issuer name an operator chose), they are
// compared as written, without regard to case or to surrounding white space.
func sameName(a, b string) bool {
	x, errA := parseDN(a)
	y, errB := parseDN(b)
	if errA != nil || errB != nil {
		return sameValue(strings.TrimSpace(a), strings.TrimSpace(b))
	}
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		if !sameRDN(x[i], y[i]) {
			return false
		}
	}
	return true
}

// sameRDN reports whether x and y hold the same attributes, in any order.
func sameRDN(x, y []dnAttr) bool {
	if len(x) != len(y) {
		return false
	}
	used := make([]bool, len(y))
next:
	for _, a := range x {
		for j, b := range y {
			if !used[j] && a.typ == b.typ && a.hex == b.hex && sameValue(a.value, b.value) {
				used[j] = true
				continue next
			}
		}
		return false
	}
	return true
}

// sameValue reports whether a and b are the same without regard to case: as UTF-8
// when both are, otherwise byte for byte (strings.EqualFold reads every invalid byte
// as the same replacement character).
func sameValue(a, b string) bool {
	if a == b {
		return true
	}
	return utf8.ValidString(a) && utf8.ValidString(b) && strings.EqualFold(a, b)
}
