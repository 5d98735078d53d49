package challenge

import (
	"encoding/json"
	"time"

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
