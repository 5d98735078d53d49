package main

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// caNameAttr is one attribute of ca_name.
type caNameAttr struct {
	key   string // its keyword as parseCAName accepts it, upper case ("" for one raNameFor read that is not the CN)
	oid   asn1.ObjectIdentifier
	value string
}

// caNameKeywords are the attributes ca_name may hold, with the upper bounds of RFC
// 5280 appendix A.1 (ub-*), and whether the value must be a PrintableString.
var caNameKeywords = map[string]struct {
	oid       asn1.ObjectIdentifier
	max       int
	printable bool
}{
	"CN":           {asn1.ObjectIdentifier{2, 5, 4, 3}, 64, false},
	"O":            {asn1.ObjectIdentifier{2, 5, 4, 10}, 64, false},
	"OU":           {asn1.ObjectIdentifier{2, 5, 4, 11}, 64, false},
	"C":            {asn1.ObjectIdentifier{2, 5, 4, 6}, 2, true},
	"L":            {asn1.ObjectIdentifier{2, 5, 4, 7}, 128, false},
	"ST":           {asn1.ObjectIdentifier{2, 5, 4, 8}, 128, false},
	"STREET":       {asn1.ObjectIdentifier{2, 5, 4, 9}, 128, false},
	"SERIALNUMBER": {asn1.ObjectIdentifier{2, 5, 4, 5}, 64, true},
}

// caNameSuffixRoom is what a rollover adds to the CN of the CA and of the RA it makes
// (" RA " and a date in rolloverDateLayout at most), which must stay within
// ub-common-name.
const caNameSuffixRoom = len(" RA ") + len(rolloverDateLayout)

// rolloverDateLayout is how rollover-prepare dates the CN of the CA and RA it makes
// (the time of day too, so that two CAs prepared on one day have different names).
const rolloverDateLayout = "2006-01-02T150405Z"

// caName is a parsed ca_name: its attributes in the string's order, most significant
// last (RFC 4514 section 2.1: the string lists the RDNs from the last one encoded).
type caName []caNameAttr

// parseCAName parses ca_name: a distinguished name written as RFC 4514 writes it
// (CN=Example Device CA,O=Example,C=FR; openssl prints it so with -nameopt RFC2253),
// one attribute per RDN, values escaped with a backslash (RFC 4514 section 2.4:
// O=Example\, Inc.). It must hold a CN, short enough for the date a rollover appends.
func parseCAName(s string) (caName, error) {
	if !utf8.ValidString(s) {
		return nil, errors.New("not valid UTF-8")
	}
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("empty: give at least CN=")
	}
	var name caName
	seenCN := false
	rest := s
	for {
		rdn, more, err := nextRDN(rest)
		if err != nil {
			return nil, err
		}
		key, value, err := splitAVA(rdn)
		if err != nil {
			return nil, err
		}
		kw, ok := caNameKeywords[key]
		if !ok {
			return nil, fmt.Errorf("%q: the attributes are CN, O, OU, C, L, ST, STREET and SERIALNUMBER", key)
		}
		n := utf8.RuneCountInString(value)
		switch {
		case strings.TrimSpace(value) == "":
			return nil, fmt.Errorf("%s: empty value", key)
		case strings.ContainsFunc(value, unicode.IsControl):
			return nil, fmt.Errorf("%s: a control character", key)
		case kw.printable && !printableString(value):
			return nil, fmt.Errorf("%s %q: only letters, digits, spaces and '()+,-./:=? (a PrintableString)", key, value)
		case key == "C" && (n != 2 || !isUpperASCII(value)):
			return nil, fmt.Errorf("C %q: a two-letter country code in capitals (ISO 3166)", value)
		case key == "CN" && n > kw.max-caNameSuffixRoom:
			return nil, fmt.Errorf("CN: %d characters, at most %d, so that the date a rollover appends keeps it within 64 (RFC 5280 ub-common-name)",
				n, kw.max-caNameSuffixRoom)
		case n > kw.max:
			return nil, fmt.Errorf("%s: %d characters, at most %d (RFC 5280 appendix A.1)", key, n, kw.max)
		case key == "CN" && seenCN:
			return nil, errors.New("two CNs")
		}
		seenCN = seenCN || key == "CN"
		name = append(name, caNameAttr{key: key, oid: kw.oid, value: value})
		if !more {
			break
		}
		rest = rest[len(rdn)+1:]
	}
	if !seenCN {
		return nil, errors.New("no CN")
	}
	return name, nil
}

// nextRDN returns the text of s up to its first unescaped comma, and whether one was
// found.
func nextRDN(s string) (rdn string, more bool, err error) {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++ // the escaped character (or the first of a hex pair) is a value's
		case ',':
			return s[:i], true, nil
		case '+':
			return "", false, errors.New("a multi-valued RDN ('+'): give one attribute per RDN, or escape it (\\+)")
		case ';':
			return "", false, errors.New("';' separates nothing in RFC 4514: use ','")
		}
	}
	return s, false, nil
}

// splitAVA splits "KEY=value" and unescapes value (RFC 4514 section 3).
func splitAVA(ava string) (key, value string, err error) {
	k, v, ok := strings.Cut(ava, "=")
	if !ok {
		return "", "", fmt.Errorf("%q: not KEY=value", strings.TrimSpace(ava))
	}
	// Keywords are ASCII (RFC 4512 section 1.4): upper-cased as ASCII, so that no
	// other letter folds into one (strings.ToUpper makes "ſt" ST).
	key = strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' {
			return r - 'a' + 'A'
		}
		return r
	}, strings.TrimSpace(k))
	// Spaces around the separators are not RFC 4514's, but people write them.
	v = strings.TrimLeft(v, " ")
	if strings.HasPrefix(v, "#") {
		return "", "", fmt.Errorf("%s: a hex-encoded (#) value: write the text", key)
	}
	var b strings.Builder
	trailing := 0 // unescaped spaces at the end so far
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\':
			if i+1 >= len(v) {
				return "", "", fmt.Errorf("%s: a value ends with a lone backslash", key)
			}
			if h, ok := hexPair(v[i+1:]); ok {
				b.WriteByte(h)
				i += 2
			} else if strings.IndexByte(" \"#+,;<=>\\", v[i+1]) >= 0 {
				b.WriteByte(v[i+1])
				i++
			} else {
				return "", "", fmt.Errorf("%s: \\%c escapes nothing (RFC 4514 section 2.4)", key, v[i+1])
			}
			trailing = 0
		case c == '"' || c == '<' || c == '>':
			return "", "", fmt.Errorf("%s: %q must be escaped with a backslash", key, c)
		default:
			b.WriteByte(c)
			if c == ' ' {
				trailing++
			} else {
				trailing = 0
			}
		}
	}
	value = b.String()
	value = value[:len(value)-trailing]
	if !utf8.ValidString(value) {
		return "", "", fmt.Errorf("%s: escaped bytes that are not UTF-8", key)
	}
	return key, value, nil
}

// hexPair decodes the two hex digits s starts with.
func hexPair(s string) (byte, bool) {
	if len(s) < 2 {
		return 0, false
	}
	hi, ok1 := unhex(s[0])
	lo, ok2 := unhex(s[1])
	return hi<<4 | lo, ok1 && ok2
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// isUpperASCII reports whether s holds only the letters A to Z.
func isUpperASCII(s string) bool {
	for _, r := range s {
		if r < 'A' || r > 'Z' {
			return false
		}
	}
	return true
}

// printableString reports whether s fits an ASN.1 PrintableString.
func printableString(s string) bool {
	for _, r := range s {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		case strings.ContainsRune(" '()+,-./:=?", r):
		default:
			return false
		}
	}
	return true
}

// subject is the name of the CA made from n (role "CA") or of its RA (role "RA"),
// with suffix (a rollover's date) appended to the CN when not empty. The RA's CN is
// the CA's with a final " CA" replaced by " RA", or " RA" appended, before the
// suffix. The encoding follows RFC 4514: the string's last attribute is the first RDN.
func (n caName) subject(role, suffix string) pkix.Name {
	var out pkix.Name
	for i := len(n) - 1; i >= 0; i-- {
		a := n[i]
		v := a.value
		if a.key == "CN" {
			if role == "RA" {
				if base, ok := strings.CutSuffix(v, " CA"); ok {
					v = base + " RA"
				} else {
					v += " RA"
				}
			}
			if suffix != "" {
				v += " " + suffix
			}
		}
		out.ExtraNames = append(out.ExtraNames, pkix.AttributeTypeAndValue{Type: a.oid, Value: v})
	}
	return out
}

// raNameFor is the name of a new RA for the CA named caSubject (its DER), made by
// rollover-prepare -ra-only: the CA's attributes, its CN turned as subject turns it
// (a CA named before ca_name was set, or under another ca_name, keeps its own name
// in its RA's).
func raNameFor(caSubject []byte, suffix string) (pkix.Name, error) {
	var seq pkix.RDNSequence
	if rest, err := asn1.Unmarshal(caSubject, &seq); err != nil {
		return pkix.Name{}, fmt.Errorf("the current CA's subject: %w", err)
	} else if len(rest) > 0 {
		return pkix.Name{}, errors.New("the current CA's subject: trailing bytes after its name")
	}
	var n caName
	for i := len(seq) - 1; i >= 0; i-- {
		for _, atv := range seq[i] {
			v, ok := atv.Value.(string)
			if !ok {
				return pkix.Name{}, fmt.Errorf("the current CA's subject holds a %v that is not a string", atv.Type)
			}
			key := ""
			if atv.Type.Equal(caNameKeywords["CN"].oid) {
				// A CA a rollover made carries its date: the RA gets its own.
				key, v = "CN", rolloverDate.ReplaceAllString(v, "")
			}
			n = append(n, caNameAttr{key: key, oid: atv.Type, value: v})
		}
	}
	name := n.subject("RA", suffix)
	for _, atv := range name.ExtraNames {
		if v, _ := atv.Value.(string); atv.Type.Equal(caNameKeywords["CN"].oid) && utf8.RuneCountInString(v) > 64 {
			return pkix.Name{}, fmt.Errorf("the RA's CN would be %q, longer than 64 characters (RFC 5280 ub-common-name)", v)
		}
	}
	return name, nil
}

// rolloverDate matches the date rollover-prepare appends to a CN (rolloverDateLayout).
var rolloverDate = regexp.MustCompile(` \d{4}-\d\d-\d\dT\d{6}Z$`)
