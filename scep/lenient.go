package scep

import (
	"crypto/x509"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Some clients declare a subject string's type wrongly: certmonger 0.79 encodes
// CN=bob@example.com as a PrintableString although '@' is not a PrintableString
// character (X.680 §41.4), in its self-signed signer certificate and in its CSR.
// crypto/x509 refuses such names; OpenSSL reads them. The readers below accept a name
// whose only fault is that type, and nothing else that crypto/x509 refuses.

// ParseCertificateRequest parses a DER PKCS#10 request as x509.ParseCertificateRequest
// does, and also reads one whose subject holds a PrintableString or IA5String with
// characters outside that type's set, provided the characters are valid UTF-8 and none
// is a control character: such a value is read for what it says. Any other fault is
// refused with crypto/x509's error.
//
// For such a request, Raw and RawTBSCertificateRequest are the bytes received (so
// CheckSignature verifies what the client signed), while RawSubject is the subject
// with those values re-encoded as UTF8String, the encoding to compare and to issue
// with. For every request crypto/x509 accepts, the result is crypto/x509's own.
func ParseCertificateRequest(der []byte) (*x509.CertificateRequest, error) {
	csr, err := x509.ParseCertificateRequest(der)
	if err == nil {
		return csr, nil
	}
	fixed, sp, ok := retagRequest(der)
	if !ok {
		return nil, err
	}
	csr2, err2 := x509.ParseCertificateRequest(fixed)
	if err2 != nil {
		return nil, err
	}
	csr2.Raw = der
	csr2.RawTBSCertificateRequest = der[sp.tbs[0]:sp.tbs[1]]
	csr2.RawSubject = fixed[sp.subject[0]:sp.subject[1]]
	return csr2, nil
}

// parseCertificate parses a DER certificate as x509.ParseCertificate does, and also
// reads one whose issuer or subject has the single fault ParseCertificateRequest
// accepts. Raw, RawTBSCertificate, RawIssuer and RawSubject are the bytes received:
// a SignerInfo and a RecipientInfo name the certificate by its issuer as encoded.
func parseCertificate(der []byte) (*x509.Certificate, error) {
	c, err := x509.ParseCertificate(der)
	if err == nil {
		return c, nil
	}
	fixed, sp, ok := retagCertificate(der)
	if !ok {
		return nil, err
	}
	c2, err2 := x509.ParseCertificate(fixed)
	if err2 != nil {
		return nil, err
	}
	c2.Raw = der
	c2.RawTBSCertificate = der[sp.tbs[0]:sp.tbs[1]]
	c2.RawIssuer = der[sp.issuer[0]:sp.issuer[1]]
	c2.RawSubject = der[sp.subject[0]:sp.subject[1]]
	return c2, nil
}

// spans are [start, end) offsets into the DER of the elements the readers restore.
type spans struct {
	tbs, issuer, subject [2]int
}

// retagRequest returns a copy of a CSR's DER with the mis-typed strings of its subject
// retagged as UTF8String, and false when there is nothing to retag or the structure is
// not a CSR's.
func retagRequest(der []byte) ([]byte, spans, bool) {
	var sp spans
	in := cryptobyte.String(der)
	var req, tbs, body, subject cryptobyte.String
	if !in.ReadASN1(&req, cbasn1.SEQUENCE) || !in.Empty() ||
		!req.ReadASN1Element(&tbs, cbasn1.SEQUENCE) {
		return nil, sp, false
	}
	sp.tbs = span(der, tbs)
	if !tbs.ReadASN1(&body, cbasn1.SEQUENCE) || !body.SkipASN1(cbasn1.INTEGER) ||
		!body.ReadASN1Element(&subject, cbasn1.SEQUENCE) {
		return nil, sp, false
	}
	sp.subject = span(der, subject)
	fixed := append([]byte(nil), der...)
	if !retagName(fixed, der, subject) {
		return nil, sp, false
	}
	return fixed, sp, true
}

// retagCertificate is retagRequest for a certificate's issuer and subject.
func retagCertificate(der []byte) ([]byte, spans, bool) {
	var sp spans
	in := cryptobyte.String(der)
	var cert, tbs, body, issuer, subject cryptobyte.String
	if !in.ReadASN1(&cert, cbasn1.SEQUENCE) || !in.Empty() ||
		!cert.ReadASN1Element(&tbs, cbasn1.SEQUENCE) {
		return nil, sp, false
	}
	sp.tbs = span(der, tbs)
	if !tbs.ReadASN1(&body, cbasn1.SEQUENCE) ||
		!body.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!body.SkipASN1(cbasn1.INTEGER) || !body.SkipASN1(cbasn1.SEQUENCE) ||
		!body.ReadASN1Element(&issuer, cbasn1.SEQUENCE) || !body.SkipASN1(cbasn1.SEQUENCE) ||
		!body.ReadASN1Element(&subject, cbasn1.SEQUENCE) {
		return nil, sp, false
	}
	sp.issuer, sp.subject = span(der, issuer), span(der, subject)
	fixed := append([]byte(nil), der...)
	a := retagName(fixed, der, issuer)
	b := retagName(fixed, der, subject)
	if !a && !b {
		return nil, sp, false
	}
	return fixed, sp, true
}

// retagName changes in fixed (a copy of der) the tag of every mis-typed string value
// of name (an element of der) to UTF8String, and reports whether it changed one. The
// tags are one byte each, so no length or offset changes.
func retagName(fixed, der []byte, name cryptobyte.String) bool {
	var rdns cryptobyte.String
	if !name.ReadASN1(&rdns, cbasn1.SEQUENCE) {
		return false
	}
	changed := false
	for !rdns.Empty() {
		var set cryptobyte.String
		if !rdns.ReadASN1(&set, cbasn1.SET) {
			return false
		}
		for !set.Empty() {
			var atv, value cryptobyte.String
			var tag cbasn1.Tag
			if !set.ReadASN1(&atv, cbasn1.SEQUENCE) || !atv.SkipASN1(cbasn1.OBJECT_IDENTIFIER) {
				return false
			}
			element := atv
			if !atv.ReadAnyASN1(&value, &tag) || !atv.Empty() {
				return false
			}
			if mistyped(tag, value) {
				fixed[span(der, element)[0]] = byte(cbasn1.UTF8String)
				changed = true
			}
		}
	}
	return changed
}

// mistyped reports a PrintableString or IA5String that crypto/x509 refuses only for
// its type: every character is valid UTF-8 and printable, but one is outside the
// declared type's set.
func mistyped(tag cbasn1.Tag, v []byte) bool {
	if (tag != cbasn1.PrintableString && tag != cbasn1.IA5String) || !utf8.Valid(v) {
		return false
	}
	outside := false
	for _, r := range string(v) {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false // a control character is malformed in any type
		}
		switch tag {
		case cbasn1.PrintableString:
			outside = outside || !x509Printable(r)
		case cbasn1.IA5String:
			outside = outside || r > 0x7f
		}
	}
	return outside
}

// x509Printable is PrintableString's character set as crypto/x509 reads it: X.680's,
// plus '*' and '&', which crypto/x509 tolerates.
func x509Printable(r rune) bool {
	return r < 0x80 && (isPrintable(byte(r)) || r == '*' || r == '&')
}

// span returns the [start, end) offsets of sub, a subslice of whole.
func span(whole []byte, sub cryptobyte.String) [2]int {
	start := cap(whole) - cap(sub)
	return [2]int{start, start + len(sub)}
}
