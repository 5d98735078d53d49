package scep

import (
	"sort"
	"strings"
)

// Capability is one keyword of a GetCACaps answer (RFC 8894 §3.5.2).
type Capability string

// The capability keywords of RFC 8894 §3.5.2, plus Update from earlier drafts.
const (
	CapAES           Capability = "AES"
	CapDES3          Capability = "DES3"
	CapGetNextCACert Capability = "GetNextCACert"
	CapPOSTPKIOp     Capability = "POSTPKIOperation"
	CapRenewal       Capability = "Renewal"
	CapSHA1          Capability = "SHA-1"
	CapSHA256        Capability = "SHA-256"
	CapSHA512        Capability = "SHA-512"
	CapSCEPStandard  Capability = "SCEPStandard"
	CapUpdate        Capability = "Update"
)

var canonicalCaps = [...]Capability{CapAES, CapDES3, CapGetNextCACert, CapPOSTPKIOp, CapRenewal,
	CapSHA1, CapSHA256, CapSHA512, CapSCEPStandard, CapUpdate}

// Caps is a GetCACaps answer: a set of capabilities in the order they were listed.
// Keywords this package does not know are kept as they were written.
type Caps []Capability

// ParseCaps parses a GetCACaps body tolerantly: keywords separated by LF or CRLF (or
// any white space), matched case-insensitively to their canonical spelling, empty lines
// and duplicates dropped, unknown words kept. It never fails; at most 64 keywords of at
// most 64 bytes each are kept.
func ParseCaps(body string) Caps {
	var out Caps
	seen := map[string]bool{}
	for _, f := range strings.Fields(body) {
		if len(out) == 64 {
			break
		}
		if len(f) > 64 {
			continue
		}
		c := Capability(f)
		for _, k := range canonicalCaps {
			if asciiEqualFold(f, string(k)) {
				c = k
				break
			}
		}
		key := strings.ToLower(string(c))
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, c)
	}
	return out
}

// asciiEqualFold reports whether a and b are the same ASCII word but for case.
// Capabilities are ASCII words (RFC 8894 section 3.5.2): strings.EqualFold's Unicode
// folding would read "AEſ" (with a long s) as AES.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Has reports whether c is in the set (case-insensitively, ASCII letters only).
func (cs Caps) Has(c Capability) bool {
	for _, x := range cs {
		if asciiEqualFold(string(x), string(c)) {
			return true
		}
	}
	return false
}

// String returns the caps as a GetCACaps body: one keyword per line, LF-separated.
func (cs Caps) String() string {
	var b strings.Builder
	for _, c := range cs {
		b.WriteString(string(c))
		b.WriteByte('\n')
	}
	return b.String()
}

// Sorted returns a copy in a stable order (canonical keywords first, in RFC order).
func (cs Caps) Sorted() Caps {
	rank := func(c Capability) int {
		for i, k := range canonicalCaps {
			if k == c {
				return i
			}
		}
		return len(canonicalCaps)
	}
	out := append(Caps(nil), cs...)
	sort.SliceStable(out, func(i, j int) bool { return rank(out[i]) < rank(out[j]) })
	return out
}

// supports reports whether a server announcing cs supports c: listed, or implied by
// SCEPStandard, which RFC 8894 §3.5.2 defines as AES, POSTPKIOperation and SHA-256.
func (cs Caps) supports(c Capability) bool {
	switch c {
	case CapAES, CapPOSTPKIOp, CapSHA256:
		return cs.Has(c) || cs.Has(CapSCEPStandard)
	}
	return cs.Has(c)
}

// Cipher returns the content cipher to use with a server announcing cs: AES-256 when
// AES is listed (or SCEPStandard, or the caps are empty, as RFC 8894 §3.5.2 expects of
// a modern server), 3DES otherwise. Never single DES: GetCACaps travels unsigned, so
// anyone on the path could strip AES and DES3 from it and then break the 56-bit key
// to read the request's challenge. A client that must speak single DES to an old
// server chooses it explicitly ([Client.Cipher]).
func (cs Caps) Cipher() Cipher {
	if cs.supports(CapAES) || len(cs) == 0 {
		return AES256CBC
	}
	return DES3CBC
}
