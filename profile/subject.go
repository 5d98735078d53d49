package profile

import (
	"bytes"
	"encoding/asn1"
	"slices"
	"strings"
	"unicode/utf8"
)

// attrType is one entry of the fixed attribute-type table.
type attrType struct {
	keyword string // the spelling used when printing a DN
	oid     asn1.ObjectIdentifier
	tag     int    // ASN.1 string type used in RawSubject
	apple   string // name in the Apple Subject array; "" means the dotted OID
	// windows is the key of a Windows DN string (formatDN), one CertStrToName knows:
	// Windows reads the ClientCertificateInstall CSP's SubjectName with it, and refuses
	// the whole string for a key it does not know. "" means "OID." and the dotted OID,
	// as CertNameToStr writes a type it has no key for (UID among them).
	windows string
}

var (
	oidCN     = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidEmail  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
	oidC      = asn1.ObjectIdentifier{2, 5, 4, 6}
	oidSerial = asn1.ObjectIdentifier{2, 5, 4, 5}
	oidDC     = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}
)

// attrTypes is the attribute-type table. Keywords are matched ignoring ASCII case;
// several keywords may name one OID. The first entry for an OID gives its printed keyword.
var attrTypes = []struct {
	names []string
	attrType
}{
	{[]string{"CN"}, attrType{"CN", oidCN, asn1.TagUTF8String, "CN", "CN"}},
	{[]string{"O"}, attrType{"O", asn1.ObjectIdentifier{2, 5, 4, 10}, asn1.TagUTF8String, "O", "O"}},
	{[]string{"OU"}, attrType{"OU", asn1.ObjectIdentifier{2, 5, 4, 11}, asn1.TagUTF8String, "OU", "OU"}},
	{[]string{"C"}, attrType{"C", oidC, asn1.TagPrintableString, "C", "C"}},
	{[]string{"L"}, attrType{"L", asn1.ObjectIdentifier{2, 5, 4, 7}, asn1.TagUTF8String, "L", "L"}},
	{[]string{"ST", "S"}, attrType{"ST", asn1.ObjectIdentifier{2, 5, 4, 8}, asn1.TagUTF8String, "ST", "ST"}},
	{[]string{"STREET"}, attrType{"STREET", asn1.ObjectIdentifier{2, 5, 4, 9}, asn1.TagUTF8String, "", "STREET"}},
	{[]string{"SERIALNUMBER"}, attrType{"SERIALNUMBER", oidSerial, asn1.TagPrintableString, "", "SERIALNUMBER"}},
	{[]string{"E", "EMAIL", "EMAILADDRESS"}, attrType{"E", oidEmail, asn1.TagIA5String, "", "E"}},
	{[]string{"DC"}, attrType{"DC", oidDC, asn1.TagIA5String, "", "DC"}},
	{[]string{"UID"}, attrType{"UID", asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}, asn1.TagUTF8String, "", ""}},
	{[]string{"T", "TITLE"}, attrType{"T", asn1.ObjectIdentifier{2, 5, 4, 12}, asn1.TagUTF8String, "", "T"}},
	{[]string{"SN", "SURNAME"}, attrType{"SN", asn1.ObjectIdentifier{2, 5, 4, 4}, asn1.TagUTF8String, "", "SN"}},
	{[]string{"G", "GN", "GIVENNAME"}, attrType{"G", asn1.ObjectIdentifier{2, 5, 4, 42}, asn1.TagUTF8String, "", "G"}},
	{[]string{"I", "INITIALS"}, attrType{"I", asn1.ObjectIdentifier{2, 5, 4, 43}, asn1.TagUTF8String, "", "I"}},
	{[]string{"POSTALCODE"}, attrType{"POSTALCODE", asn1.ObjectIdentifier{2, 5, 4, 17}, asn1.TagUTF8String, "", "POSTALCODE"}},
	{[]string{"DESCRIPTION"}, attrType{"DESCRIPTION", asn1.ObjectIdentifier{2, 5, 4, 13}, asn1.TagUTF8String, "", "DESCRIPTION"}},
}

var attrByName = func() map[string]*attrType {
	m := map[string]*attrType{}
	for i := range attrTypes {
		for _, n := range attrTypes[i].names {
			m[n] = &attrTypes[i].attrType
		}
	}
	return m
}()

func attrByOID(oid asn1.ObjectIdentifier) *attrType {
	for i := range attrTypes {
		if attrTypes[i].oid.Equal(oid) {
			return &attrTypes[i].attrType
		}
	}
	return nil
}

// maxValueLen bounds one rendered attribute or SAN value, in bytes.
const maxValueLen = 1024

// maxFormatLen bounds a subject format or SAN value template, in bytes.
const maxFormatLen = 4096

// segment is a literal run or a variable reference.
type segment struct {
	lit      string
	variable string // non-empty for a variable
}

// template is a value with variables: a sequence of segments.
type template []segment

func (t template) variables() []string {
	var out []string
	for _, s := range t {
		if s.variable != "" {
			out = append(out, s.variable)
		}
	}
	return out
}

// formatAttr is one attribute of a parsed subject format.
type formatAttr struct {
	typ   *attrType
	value template
}

// SubjectFormat is a parsed subject name format: its RDN structure is fixed at parse
// time, and variables only ever fill attribute values.
type SubjectFormat struct {
	rdns [][]formatAttr
}

// Variables returns the variable names the format uses, in order of appearance, with
// repetitions.
func (f *SubjectFormat) Variables() []string {
	var out []string
	for _, rdn := range f.rdns {
		for _, a := range rdn {
			out = append(out, a.value.variables()...)
		}
	}
	return out
}

// Len returns the number of attributes (not RDNs) in the format.
func (f *SubjectFormat) Len() int {
	n := 0
	for _, rdn := range f.rdns {
		n += len(rdn)
	}
	return n
}

// ParseSubjectFormat parses a subject name format.
//
// Grammar (CertStrToName style, as Intune documents it):
//
//	format   = [ rdn *( ("," / ";") rdn ) ]
//	rdn      = ava *( "+" ava )                 ; a multi-valued RDN
//	ava      = keyword "=" value
//	keyword  = CN / O / OU / C / L / ST / S / STREET / SERIALNUMBER / E / EMAIL /
//	           EMAILADDRESS / DC / UID / T / TITLE / SN / SURNAME / G / GN / GIVENNAME /
//	           I / INITIALS / POSTALCODE / DESCRIPTION / ["OID."] dotted-oid
//	value    = quoted / unquoted
//	quoted   = DQUOTE *( char / DQUOTE DQUOTE / variable ) DQUOTE
//	unquoted = *( char except , ; + = " \ / variable )   ; outer spaces trimmed
//	variable = "{{" 1*( ALPHA / DIGIT / "_" ) "}}"
//
// Keywords ignore ASCII case. A literal "{" or "}" outside a variable, a backslash
// outside quotes, a control character, or an empty value is an error: Intune documents
// that values with special characters are quoted, never backslash-escaped.
func ParseSubjectFormat(s string) (*SubjectFormat, error) {
	return parseDN(s, true)
}

type dnParser struct {
	s    string
	i    int
	vars bool
}

func (p *dnParser) fail(reason string) error {
	return &FormatError{Format: p.s, Offset: p.i, Reason: reason}
}

func (p *dnParser) skipSpace() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

func parseDN(s string, vars bool) (*SubjectFormat, error) {
	p := &dnParser{s: s, vars: vars}
	if len(s) > maxFormatLen {
		return nil, p.fail("longer than 4096 bytes")
	}
	if !utf8.ValidString(s) {
		return nil, p.fail("not valid UTF-8")
	}
	f := &SubjectFormat{}
	p.skipSpace()
	if p.i == len(s) {
		return f, nil
	}
	for {
		var rdn []formatAttr
		for {
			a, err := p.ava()
			if err != nil {
				return nil, err
			}
			rdn = append(rdn, a)
			p.skipSpace()
			if p.i < len(s) && s[p.i] == '+' {
				p.i++
				continue
			}
			break
		}
		f.rdns = append(f.rdns, rdn)
		if p.i == len(s) {
			return f, nil
		}
		if c := s[p.i]; c != ',' && c != ';' {
			return nil, p.fail("expected , or ; between RDNs")
		}
		p.i++
	}
}

func (p *dnParser) ava() (formatAttr, error) {
	p.skipSpace()
	start := p.i
	for p.i < len(p.s) && p.s[p.i] != '=' && p.s[p.i] != ' ' {
		c := p.s[p.i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return formatAttr{}, p.fail("invalid character in attribute type")
		}
		p.i++
	}
	kw := p.s[start:p.i]
	p.skipSpace()
	if p.i == len(p.s) || p.s[p.i] != '=' {
		return formatAttr{}, p.fail("expected = after attribute type")
	}
	typ, err := lookupKeyword(kw)
	if err != "" {
		p.i = start
		return formatAttr{}, p.fail(err)
	}
	p.i++ // '='
	p.skipSpace()
	var val template
	var e error
	if p.i < len(p.s) && p.s[p.i] == '"' {
		val, e = p.quoted()
	} else {
		val, e = p.unquoted()
	}
	if e != nil {
		return formatAttr{}, e
	}
	if len(val) == 0 {
		return formatAttr{}, p.fail("empty attribute value")
	}
	return formatAttr{typ: typ, value: val}, nil
}

func lookupKeyword(kw string) (*attrType, string) {
	if kw == "" {
		return nil, "empty attribute type"
	}
	if t := attrByName[strings.ToUpper(kw)]; t != nil {
		return t, ""
	}
	d := kw
	if len(d) > 4 && strings.EqualFold(d[:4], "OID.") {
		d = d[4:]
	}
	oid, ok := parseOID(d)
	if !ok {
		return nil, "unknown attribute type " + kw
	}
	if t := attrByOID(oid); t != nil {
		return t, ""
	}
	return &attrType{keyword: oid.String(), oid: oid, tag: asn1.TagUTF8String}, ""
}

// parseOID parses a dotted OID: at least two arcs, first 0-2, second < 40 unless first
// is 2, each arc fits an int32.
func parseOID(s string) (asn1.ObjectIdentifier, bool) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 64 {
		return nil, false
	}
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		if p == "" || len(p) > 9 || (len(p) > 1 && p[0] == '0') {
			return nil, false
		}
		n := 0
		for _, c := range []byte(p) {
			if c < '0' || c > '9' {
				return nil, false
			}
			n = n*10 + int(c-'0')
		}
		oid[i] = n
	}
	if oid[0] > 2 || (oid[0] < 2 && oid[1] >= 40) {
		return nil, false
	}
	return oid, true
}

// variable parses "{{name}}" at p.i (which points at the first '{').
func (p *dnParser) variable() (string, error) {
	if !p.vars {
		return "", p.fail("variables are not allowed here")
	}
	if !strings.HasPrefix(p.s[p.i:], "{{") {
		return "", p.fail("lone { outside a variable")
	}
	start := p.i + 2
	j := start
	for j < len(p.s) {
		c := p.s[j]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' {
			j++
			continue
		}
		break
	}
	if j == start || !strings.HasPrefix(p.s[j:], "}}") {
		return "", p.fail("malformed variable: want {{Name}}")
	}
	p.i = j + 2
	return p.s[start:j], nil
}

func appendLit(t template, b *strings.Builder) template {
	if b.Len() > 0 {
		t = append(t, segment{lit: b.String()})
		b.Reset()
	}
	return t
}

func (p *dnParser) quoted() (template, error) {
	p.i++ // opening quote
	var t template
	var b strings.Builder
	for {
		if p.i == len(p.s) {
			return nil, p.fail("unterminated quoted value")
		}
		c := p.s[p.i]
		switch {
		case c == '"':
			if p.i+1 < len(p.s) && p.s[p.i+1] == '"' {
				b.WriteByte('"')
				p.i += 2
				continue
			}
			p.i++
			t = appendLit(t, &b)
			p.skipSpace()
			if p.i < len(p.s) && !strings.ContainsRune(",;+", rune(p.s[p.i])) {
				return nil, p.fail("text after closing quote")
			}
			return t, nil
		case c == '{' && p.vars:
			t = appendLit(t, &b)
			name, err := p.variable()
			if err != nil {
				return nil, err
			}
			t = append(t, segment{variable: name})
		case c == '}' && p.vars:
			return nil, p.fail("lone } outside a variable")
		case isControl(rune(c)):
			return nil, p.fail("control character in value")
		default:
			r, n := utf8.DecodeRuneInString(p.s[p.i:])
			if isControl(r) {
				return nil, p.fail("control character in value")
			}
			b.WriteString(p.s[p.i : p.i+n])
			p.i += n
		}
	}
}

func (p *dnParser) unquoted() (template, error) {
	var t template
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == ',' || c == ';' || c == '+':
			return trimTemplate(appendLit(t, &b)), nil
		case c == '=' || c == '"' || c == '\\':
			return nil, p.fail("character " + string(c) + " must be inside a quoted value")
		case c == '{' && p.vars:
			t = appendLit(t, &b)
			name, err := p.variable()
			if err != nil {
				return nil, err
			}
			t = append(t, segment{variable: name})
		case c == '}' && p.vars:
			return nil, p.fail("lone } outside a variable")
		default:
			r, n := utf8.DecodeRuneInString(p.s[p.i:])
			if isControl(r) {
				return nil, p.fail("control character in value")
			}
			b.WriteString(p.s[p.i : p.i+n])
			p.i += n
		}
	}
	return trimTemplate(appendLit(t, &b)), nil
}

// trimTemplate removes trailing spaces of an unquoted value (leading ones were skipped).
func trimTemplate(t template) template {
	if len(t) == 0 {
		return t
	}
	last := &t[len(t)-1]
	if last.variable == "" {
		last.lit = strings.TrimRight(last.lit, " ")
		if last.lit == "" {
			t = t[:len(t)-1]
		}
	}
	return t
}

// parseValueTemplate parses a SAN value template: literal text with variables. A "{" or
// "}" that is not part of a variable is an error.
func parseValueTemplate(s string) (template, error) {
	p := &dnParser{s: s, vars: true}
	if len(s) > maxFormatLen {
		return nil, p.fail("longer than 4096 bytes")
	}
	if !utf8.ValidString(s) {
		return nil, p.fail("not valid UTF-8")
	}
	var t template
	var b strings.Builder
	for p.i < len(s) {
		switch c := s[p.i]; c {
		case '{':
			t = appendLit(t, &b)
			name, err := p.variable()
			if err != nil {
				return nil, err
			}
			t = append(t, segment{variable: name})
		case '}':
			return nil, p.fail("lone } outside a variable")
		default:
			b.WriteByte(c)
			p.i++
		}
	}
	return appendLit(t, &b), nil
}

// isControl reports C0 controls (NUL, newline, ...), DEL and C1 controls.
func isControl(r rune) bool {
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == utf8.RuneError
}

// checkValue applies the rules every rendered value obeys, then those of its type.
func checkValue(typ *attrType, v string) string {
	if v == "" {
		return "empty value"
	}
	if len(v) > maxValueLen {
		return "value longer than 1024 bytes"
	}
	if !utf8.ValidString(v) {
		return "value is not valid UTF-8"
	}
	for _, r := range v {
		if isControl(r) {
			return "value contains a control character"
		}
	}
	if typ == nil {
		return ""
	}
	switch typ.tag {
	case asn1.TagPrintableString:
		if !isPrintableString(v) {
			return typ.keyword + " value must be a PrintableString"
		}
		if typ.oid.Equal(oidC) && (len(v) != 2 || !isAlpha(v)) {
			return "C value must be a two-letter country code"
		}
	case asn1.TagIA5String:
		for i := 0; i < len(v); i++ {
			if v[i] >= 0x80 {
				return typ.keyword + " value must be ASCII"
			}
		}
	}
	return ""
}

func isAlpha(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

func isPrintableString(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(" '()+,-./:=?", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// Attribute is one attribute of a rendered subject, in the order of the format.
type Attribute struct {
	Type  asn1.ObjectIdentifier
	Value string
	// RDN is the index of the RDN the attribute belongs to; several attributes share
	// an index in a multi-valued RDN.
	RDN int
}

// marshalRDNs encodes attrs as an RDNSequence, with per-type string tags. Attributes
// with consecutive equal RDN indexes share an RDN. The encoding is byte for byte what
// asn1.Marshal makes of the equivalent pkix.RDNSequence of asn1.RawValues (elements of
// a multi-valued RDN sorted as DER sorts a SET OF), errors included; it is written by
// hand because the reflection-based encoder dominated the cost of [Render]
// (TestMarshalRDNsMatchesASN1 compares the two).
func marshalRDNs(attrs []Attribute) ([]byte, error) {
	// Each attribute as an AttributeTypeAndValue TLV, back to back in atvs.
	ends := make([]int, len(attrs))
	atvs := make([]byte, 0, 32*len(attrs))
	for i, a := range attrs {
		oid := a.Type
		if len(oid) < 2 || oid[0] > 2 || (oid[0] < 2 && oid[1] >= 40) {
			return nil, asn1.StructuralError{Msg: "invalid object identifier"}
		}
		tag := asn1.TagUTF8String
		if t := attrByOID(oid); t != nil {
			tag = t.tag
		}
		oidLen := base128Len(int64(oid[0]*40 + oid[1]))
		for _, arc := range oid[2:] {
			oidLen += base128Len(int64(arc))
		}
		valLen := tlvLen(tag, len(a.Value))
		atvs = appendTagLen(atvs, asn1.TagSequence, true, tlvLen(asn1.TagOID, oidLen)+valLen)
		atvs = appendTagLen(atvs, asn1.TagOID, false, oidLen)
		atvs = appendBase128(atvs, int64(oid[0]*40+oid[1]))
		for _, arc := range oid[2:] {
			atvs = appendBase128(atvs, int64(arc))
		}
		atvs = appendTagLen(atvs, tag, false, len(a.Value))
		atvs = append(atvs, a.Value...)
		ends[i] = len(atvs)
	}
	atv := func(i int) []byte {
		start := 0
		if i > 0 {
			start = ends[i-1]
		}
		return atvs[start:ends[i]]
	}
	// RDNs: runs of equal RDN indexes, as [first, end) ranges of attrs.
	type run struct{ first, end int }
	var runs []run
	for i, a := range attrs {
		if i == 0 || a.RDN != attrs[i-1].RDN {
			runs = append(runs, run{i, i})
		}
		runs[len(runs)-1].end = i + 1
	}
	total := 0
	for _, r := range runs {
		total += tlvLen(asn1.TagSet, ends[r.end-1]-startOf(ends, r.first))
	}
	out := make([]byte, 0, tlvLen(asn1.TagSequence, total))
	out = appendTagLen(out, asn1.TagSequence, true, total)
	var set [][]byte
	for _, r := range runs {
		out = appendTagLen(out, asn1.TagSet, true, ends[r.end-1]-startOf(ends, r.first))
		if r.end-r.first == 1 {
			out = append(out, atv(r.first)...)
			continue
		}
		set = set[:0]
		for i := r.first; i < r.end; i++ {
			set = append(set, atv(i))
		}
		slices.SortFunc(set, bytes.Compare)
		for _, e := range set {
			out = append(out, e...)
		}
	}
	return out, nil
}

func startOf(ends []int, i int) int {
	if i == 0 {
		return 0
	}
	return ends[i-1]
}

// tlvLen is the length of a TLV with a one-byte tag and n bytes of content.
func tlvLen(tag, n int) int { return 1 + derLenLen(n) + n }

// derLenLen is the length of a DER length field for n.
func derLenLen(n int) int {
	if n < 128 {
		return 1
	}
	l := 1
	for i := n; i > 255; i >>= 8 {
		l++
	}
	return 1 + l
}

// appendTagLen appends a universal tag below 31 and a DER length, as asn1.Marshal does.
func appendTagLen(dst []byte, tag int, compound bool, n int) []byte {
	b := byte(tag)
	if compound {
		b |= 0x20
	}
	dst = append(dst, b)
	if n < 128 {
		return append(dst, byte(n))
	}
	l := derLenLen(n) - 1
	dst = append(dst, 0x80|byte(l))
	for ; l > 0; l-- {
		dst = append(dst, byte(n>>uint((l-1)*8)))
	}
	return dst
}

// base128Len and appendBase128 encode an OID arc as encoding/asn1 does (a negative
// arc, which it does not refuse, encodes as nothing).
func base128Len(n int64) int {
	if n == 0 {
		return 1
	}
	l := 0
	for i := n; i > 0; i >>= 7 {
		l++
	}
	return l
}

func appendBase128(dst []byte, n int64) []byte {
	for i := base128Len(n) - 1; i >= 0; i-- {
		o := byte(n>>uint(i*7)) & 0x7f
		if i != 0 {
			o |= 0x80
		}
		dst = append(dst, o)
	}
	return dst
}

// formatDN prints attrs as a DN string for Windows (CertNameToStr style): each type by
// its Windows key (attrType.windows), else as "OID." and its dotted form; values that contain , = + ; " < > # or a
// newline, or start or end with a space, are wrapped in double quotes, with inner
// quotes doubled. [ParseSubjectFormat] reads it back.
func formatDN(attrs []Attribute) string {
	var b strings.Builder
	for i, a := range attrs {
		if i > 0 {
			if a.RDN == attrs[i-1].RDN {
				b.WriteString("+")
			} else {
				b.WriteString(", ")
			}
		}
		if t := attrByOID(a.Type); t != nil && t.windows != "" {
			b.WriteString(t.windows)
		} else {
			b.WriteString("OID." + a.Type.String())
		}
		b.WriteByte('=')
		b.WriteString(quoteDNValue(a.Value))
	}
	return b.String()
}

func quoteDNValue(v string) string {
	if v != "" && !strings.ContainsAny(v, ",=+;\"<>#\\{}\n") && v[0] != ' ' && v[len(v)-1] != ' ' {
		return v
	}
	return `"` + strings.ReplaceAll(v, `"`, `""`) + `"`
}
