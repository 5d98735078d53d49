package challenge

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

// requireSameClaimsDecoding decodes b the way jwt's parser does, into
// checkedClaims and into plain wireClaims, and requires the same outcome.
func requireSameClaimsDecoding(t *testing.T, b []byte) {
	t.Helper()
	var want wireClaims
	var wc jwt.Claims = &want
	wantErr := json.Unmarshal(b, &wc)
	var got checkedClaims
	var gc jwt.Claims = &got
	gotErr := json.Unmarshal(b, &gc)
	if wantErr != nil {
		require.Error(t, gotErr, "%q", b)
		require.Equal(t, wantErr.Error(), gotErr.Error(), "%q", b)
		return
	}
	require.NoError(t, gotErr, "%q", b)
	require.Equal(t, want, got.wireClaims, "%q", b)
}

var claimsSeeds = []string{
	`{"jti":"AAAAAAAAAAAAAAAAAAAAAA","iss":"mdm.example","sub":"u1","aud":"gw-a.example","iat":1772366400,"nbf":1772366400,"exp":1772370000,"dev":"d1","prof":"p1"}`,
	`{}`, ` { } `, `null`, `[]`, `"x"`, `1`, `{"jti":"a"}`, `{"jti":"a",}`,
	`{"jti":"a","jti":"b"}`, `{"JTI":"a"}`, `{"Iss":"a","iss":"b"}`, `{"iss":"a","ISS":"b"}`,
	`{"aud":["a","b"]}`, `{"aud":[]}`, `{"aud":null}`, `{"aud":1}`, `{"aud":"a\u0062"}`,
	`{"iss":"\u00e9"}`, `{"iss":"é"}`, "{\"iss\":\"\xff\"}", "{\"iss\":\"\xed\xa0\x80\"}",
	`{"iss":"a\"b"}`, `{"iss":"a\\b"}`, `{"iss":"a\/b"}`, `{"iss":null}`, `{"iss":1}`, `{"iss":true}`,
	`{"iat":0}`, `{"iat":-0}`, `{"iat":-1}`, `{"iat":1.0}`, `{"iat":1e3}`, `{"iat":1E3}`, `{"iat":"1"}`,
	`{"iat":null}`, `{"iat":999999999999999999}`, `{"iat":9223372036854775807}`, `{"iat":9223372036854775808}`,
	`{"iat":-9223372036854775808}`, `{"iat":01}`, `{"iat":1,"iat":2}`,
	`{"x":{"a":1}}`, `{"x":null}`, `{"x":1}`, `{"other":1}`, `{"dev":"d","prof":"p"}`,
	"{\t\"jti\" :\n\"a\" ,\r\"iat\" : 1 }", `{"jti":"a"}x`, `{"jti":"a"`, `{"jti"}`, `{"jti":}`, `{:"a"}`,
	"{\"iss\":\"a\x01\"}", `{"iss":"` + strings.Repeat("z", 5000) + `"}`,
}

func TestClaimsDecodingMatchesJSON(t *testing.T) {
	for _, s := range claimsSeeds {
		requireSameClaimsDecoding(t, []byte(s))
	}
}

// TestClaimsFastPath checks that what Issuer writes takes the fast path.
func TestClaimsFastPath(t *testing.T) {
	for _, req := range []Request{stdRequest, {UserID: "u1", Audience: "gw-a.example"}} {
		ch, _, err := testIssuer(edKey).Issue(req)
		require.NoError(t, err)
		raw, ok := decode(ch)
		require.True(t, ok)
		payload, err := b64.DecodeString(strings.Split(raw, ".")[1])
		require.NoError(t, err)
		var w wireClaims
		require.True(t, fastClaims(payload, &w), "%s", payload)
		requireSameClaimsDecoding(t, payload)
	}
}

func FuzzClaimsDecoding(f *testing.F) {
	for _, s := range claimsSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		requireSameClaimsDecoding(t, b)
	})
}
