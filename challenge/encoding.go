package challenge

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// TokenType is the typ header every challenge carries and every verifier
// requires (explicit typing, RFC 8725 section 3.11), so that no other JWT
// signed by the same key can be presented as a challenge.
const TokenType = "scep+jwt"

// MaxLength is the longest challenge [Verifier.Check] parses; longer input
// is refused with [ErrMalformed] before any decoding.
const MaxLength = 4096

// PKCS9MaxLength is ub-challengePassword from PKCS#9 (RFC 2985): the upper
// bound on a challengePassword's length. See the package documentation
// ("# Length") for what happens to challenges longer than this.
const PKCS9MaxLength = 255

// encode maps a compact JWS (base64url segments) to the transmitted
// alphabet: '-' becomes '+' and '_' becomes '/'. Letters, digits, '.', '+'
// and '/' are all PrintableString characters (X.680 section 41.4), and the
// result contains no '_', which some Windows clients refuse.
func encode(jws string) string {
	b := []byte(jws)
	for i, c := range b {
		switch c {
		case '-':
			b[i] = '+'
		case '_':
			b[i] = '/'
		}
	}
	return string(b)
}

// decode undoes encode. It also accepts the plain base64url form (a raw
// JWT), so tools that print JWTs can be used in tests. Any other byte, or
// input longer than MaxLength, fails.
func decode(s string) (string, bool) {
	if len(s) == 0 || len(s) > MaxLength {
		return "", false
	}
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
		case c == '+':
			b[i] = '-'
		case c == '/':
			b[i] = '_'
		default:
			return "", false
		}
	}
	return string(b), true
}

// Fingerprint returns a short, stable identifier of a challenge for logs:
// the first 12 hex digits of the SHA-256 of its transmitted form. The
// transmitted and plain base64url forms of one challenge have the same
// fingerprint. Log the fingerprint, never the challenge itself.
func Fingerprint(challenge string) string {
	sum := sha256.Sum256([]byte(encode(challenge)))
	return hex.EncodeToString(sum[:6])
}

// typMarker is what every header written by [Issuer] contains.
var typMarker = []byte(`"typ":"` + TokenType + `"`)

// LooksLikeToken reports, without any cryptography, whether s has the shape
// of a challenge minted by this package: three segments in the transmitted
// (or base64url) alphabet whose header declares typ [TokenType]. A gateway
// serving a mixed fleet uses it to route a challenge to this package or to
// another validator (for example Intune's opaque challenges). A true result
// says nothing about validity: always call [Verifier.Check] or
// [Verifier.Verify].
func LooksLikeToken(s string) bool {
	if len(s) < 20 || len(s) > MaxLength {
		return false
	}
	first := strings.IndexByte(s, '.')
	if first <= 0 || first > 512 {
		return false
	}
	rest := s[first+1:]
	second := strings.IndexByte(rest, '.')
	if second <= 0 || second == len(rest)-1 || strings.IndexByte(rest[second+1:], '.') >= 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
			c == '.' || c == '+' || c == '/' || c == '-' || c == '_') {
			return false
		}
	}
	var buf [512]byte
	hdr := []byte(s[:first])
	for i, c := range hdr {
		switch c {
		case '+':
			hdr[i] = '-'
		case '/':
			hdr[i] = '_'
		}
	}
	n, err := base64.RawURLEncoding.Decode(buf[:], hdr)
	if err != nil {
		return false
	}
	return bytes.Contains(buf[:n], typMarker)
}
