package challenge

import (
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// MaxLifetime is the longest a challenge may be valid, measured exp - iat:
// one hour, as NDES and Intune use. It is not configurable.
const MaxLifetime = time.Hour

// Claims is what a verified challenge says. [Issuer.Issue] returns the
// claims it signed; [Verifier.Check] returns the claims it verified.
type Claims struct {
	// ID is the unique token id (jti): 16 random bytes in base64url
	// when minted by [Issuer]. It is the key of one-time use.
	ID string
	// Issuer (iss) names the MDM that minted the challenge.
	Issuer string
	// Audience (aud) is the identity of the one gateway the challenge is
	// meant for. A verified challenge always has exactly one.
	Audience string
	// UserID (sub) is the user the challenge was minted for.
	UserID string
	// DeviceID (private claim "dev") and ProfileID ("prof") are empty when
	// the request had none.
	DeviceID, ProfileID string
	// IssuedAt (iat), NotBefore (nbf) and Expires (exp) have one-second
	// precision.
	IssuedAt, NotBefore, Expires time.Time
	// Extra holds the request's optional extra claims, carried in the
	// private claim "x" (a JSON object), so they can never shadow a
	// registered claim. Numbers come back as float64, as encoding/json
	// decodes them.
	Extra map[string]any
	// KeyID and Algorithm are the kid and alg headers of the token.
	KeyID, Algorithm string
}

// wireClaims is the JSON payload. Times are integer seconds so that
// decoding needs no custom unmarshaler and rejects fractions.
type wireClaims struct {
	ID        string         `json:"jti,omitempty"`
	Issuer    string         `json:"iss,omitempty"`
	Subject   string         `json:"sub,omitempty"`
	Audience  audience       `json:"aud,omitempty"`
	IssuedAt  *int64         `json:"iat,omitempty"`
	NotBefore *int64         `json:"nbf,omitempty"`
	Expires   *int64         `json:"exp,omitempty"`
	Device    string         `json:"dev,omitempty"`
	Profile   string         `json:"prof,omitempty"`
	Extra     map[string]any `json:"x,omitempty"`
}

// audience is aud on the wire: a JSON string, or (from other minters) an
// array of strings. Issuer always writes a string.
type audience []string

func (a audience) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

func (a *audience) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = audience{s}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return err
	}
	*a = l
	return nil
}

// The jwt.Claims methods. The parser runs with claims validation off; the
// Verifier checks every claim itself so that the order and the errors are
// its own.

func numericDate(p *int64) *jwt.NumericDate {
	if p == nil {
		return nil
	}
	return jwt.NewNumericDate(time.Unix(*p, 0))
}

func (c *wireClaims) GetExpirationTime() (*jwt.NumericDate, error) {
	return numericDate(c.Expires), nil
}
func (c *wireClaims) GetIssuedAt() (*jwt.NumericDate, error)  { return numericDate(c.IssuedAt), nil }
func (c *wireClaims) GetNotBefore() (*jwt.NumericDate, error) { return numericDate(c.NotBefore), nil }
func (c *wireClaims) GetIssuer() (string, error)              { return c.Issuer, nil }
func (c *wireClaims) GetSubject() (string, error)             { return c.Subject, nil }
func (c *wireClaims) GetAudience() (jwt.ClaimStrings, error) {
	return jwt.ClaimStrings(c.Audience), nil
}

var _ jwt.Claims = (*wireClaims)(nil)

// checkedClaims is what [Verifier.Check] decodes a token's payload into: the
// wireClaims, with a decoder that reads the common case, the claims
// [Issuer] writes, without encoding/json's reflection (about half of the
// cost of parsing a challenge). Everything else goes to encoding/json, so
// the result, and whether there is an error, are those of decoding into
// wireClaims (FuzzClaimsDecoding compares the two).
type checkedClaims struct {
	wireClaims
}

func (c *checkedClaims) UnmarshalJSON(b []byte) error {
	if fastClaims(b, &c.wireClaims) {
		return nil
	}
	c.wireClaims = wireClaims{}
	return json.Unmarshal(b, &c.wireClaims)
}

// fastClaims decodes b into w, which must be zero, if b is a JSON object of
// at most the members jti, iss, sub, aud, dev and prof with string values
// and iat, nbf and exp with integer values, each at most once, keys spelled
// exactly so, strings without escapes or control characters and valid
// UTF-8, integers of at most 18 digits without fraction or exponent. For
// such input encoding/json gives the same result. It reports false, leaving
// w in any state, for anything else.
func fastClaims(b []byte, w *wireClaims) bool {
	i := skipSpace(b, 0)
	if i == len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipSpace(b, i+1) == len(b)
	}
	var seen uint16
	for {
		key, j, ok := plainString(b, i)
		if !ok {
			return false
		}
		i = skipSpace(b, j)
		if i == len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		var field *string
		var date **int64
		var bit uint16
		switch string(key) {
		case "jti":
			field, bit = &w.ID, 1<<0
		case "iss":
			field, bit = &w.Issuer, 1<<1
		case "sub":
			field, bit = &w.Subject, 1<<2
		case "aud":
			bit = 1 << 3
		case "dev":
			field, bit = &w.Device, 1<<4
		case "prof":
			field, bit = &w.Profile, 1<<5
		case "iat":
			date, bit = &w.IssuedAt, 1<<6
		case "nbf":
			date, bit = &w.NotBefore, 1<<7
		case "exp":
			date, bit = &w.Expires, 1<<8
		default:
			return false
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		if date != nil {
			n, j, ok := plainInt(b, i)
			if !ok {
				return false
			}
			*date = &n
			i = j
		} else {
			s, j, ok := plainString(b, i)
			if !ok {
				return false
			}
			if field != nil {
				*field = string(s)
			} else {
				w.Audience = audience{string(s)}
			}
			i = j
		}
		i = skipSpace(b, i)
		if i == len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return skipSpace(b, i+1) == len(b)
		default:
			return false
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainString reads a JSON string at b[i] that has no escape and no control
// character and is valid UTF-8, and returns its content and the index after
// it.
func plainString(b []byte, i int) ([]byte, int, bool) {
	if i == len(b) || b[i] != '"' {
		return nil, 0, false
	}
	ascii := true
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			s := b[i+1 : j]
			if !ascii && !utf8.Valid(s) {
				return nil, 0, false
			}
			return s, j + 1, true
		case c == '\\' || c < 0x20:
			return nil, 0, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, 0, false
}

// plainInt reads a JSON number at b[i] that is an integer of 1 to 18 digits,
// optionally negative, without fraction or exponent, and returns it and the
// index after it.
func plainInt(b []byte, i int) (int64, int, bool) {
	neg := i < len(b) && b[i] == '-'
	if neg {
		i++
	}
	start := i
	var n int64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		n = n*10 + int64(b[i]-'0')
		i++
	}
	digits := i - start
	if digits == 0 || digits > 18 || (digits > 1 && b[start] == '0') {
		return 0, 0, false
	}
	if i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E') {
		return 0, 0, false
	}
	if neg {
		n = -n
	}
	return n, i, true
}
