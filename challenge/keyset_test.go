package challenge

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestJWKSRoundTrip(t *testing.T) {
	t.Parallel()
	ks := NewKeySet()
	edKid, ecKid, rsaKid := kidOf(t, edKey.Public()), kidOf(t, ecKeyOnce().Public()), kidOf(t, rsaKeyOnce().Public())
	require.NoError(t, ks.Add(edKid, edKey.Public()))
	require.NoError(t, ks.Add(ecKid, ecKeyOnce())) // a Signer: its public half
	require.NoError(t, ks.AddWithAlgorithm(rsaKid, PS256, rsaKeyOnce().Public()))
	require.NoError(t, ks.AddSecret("hmac", secret))
	require.NoError(t, ks.Add(edKid, edKey.Public()), "same key again is a no-op")
	requireOnly(t, ks.Add(edKid, edKey2.Public()), ErrConfig)

	doc, err := json.Marshal(ks)
	require.NoError(t, err)
	require.NotContains(t, string(doc), "oct")
	require.NotContains(t, string(doc), "hmac")
	var parsed struct{ Keys []map[string]any }
	require.NoError(t, json.Unmarshal(doc, &parsed))
	require.Len(t, parsed.Keys, 3)

	back, err := ParseJWKS(doc)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{edKid, ecKid, rsaKid}, back.KeyIDs())
	for _, iss := range []*Issuer{testIssuer(edKey), testIssuer(ecKeyOnce()), {Name: "mdm.example", Key: rsaKeyOnce(), Algorithm: PS256, Now: fixedClock(t0)}} {
		ch, _, err := iss.Issue(stdRequest)
		require.NoError(t, err)
		v := &Verifier{Keys: back, Issuer: "mdm.example", Audience: "gw-a.example", Now: fixedClock(t0)}
		_, err = v.Check(context.Background(), ch)
		require.NoError(t, err)
	}
	// The PS256 pin survives the JWKS: RS256 with that kid is refused.
	rs := &Issuer{Name: "mdm.example", Key: rsaKeyOnce(), Algorithm: RS256, Now: fixedClock(t0)}
	ch, _, err := rs.Issue(stdRequest)
	require.NoError(t, err)
	_, err = (&Verifier{Keys: back, Issuer: "mdm.example", Audience: "gw-a.example", Now: fixedClock(t0)}).Check(context.Background(), ch)
	requireOnly(t, err, ErrAlgorithm)
}

func TestParseJWKSRefuses(t *testing.T) {
	t.Parallel()
	for _, doc := range []string{
		`not json`,
		`{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]}`,
		`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA"}]}`,
		`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"AAAA"}]}`,
		`{"keys":[{"kty":"EC","crv":"P-256","kid":"a","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]}`,
		`{"keys":[{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"}]}`,
		`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","alg":"ES256","x":"A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"}]}`,
		`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"},{"kty":"OKP","crv":"Ed25519","kid":"a","x":"A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"}]}`,
	} {
		_, err := ParseJWKS([]byte(doc))
		requireOnly(t, err, ErrConfig)
	}
	// Unsupported curves and encryption keys are skipped.
	ks, err := ParseJWKS([]byte(`{"keys":[{"kty":"EC","crv":"P-384","kid":"p384","x":"A","y":"A"},{"kty":"OKP","crv":"Ed25519","use":"enc","kid":"e","x":"A"}]}`))
	require.NoError(t, err)
	require.Empty(t, ks.KeyIDs())
}

func TestThumbprint(t *testing.T) {
	t.Parallel()
	// RFC 8037 appendix A.3: thumbprint of the Ed25519 key of A.2.
	x := "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
	pub, err := b64.DecodeString(x)
	require.NoError(t, err)
	tp, err := Thumbprint(ed25519PublicKey(pub))
	require.NoError(t, err)
	require.Equal(t, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k", tp)
	kid, err := DefaultKeyID(ed25519PublicKey(pub))
	require.NoError(t, err)
	require.Equal(t, tp[:KeyIDLength], kid)
}

// AddKey is the one-argument form: the key goes in under the kid an Issuer with
// an empty KeyID writes, so its challenges verify without the caller repeating
// DefaultKeyID.
func TestKeySetAddKey(t *testing.T) {
	t.Parallel()
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		key  crypto.Signer
	}{
		{"Ed25519", edKey},
		{"ECDSA P-256", ecKeyOnce()},
		{"RSA-2048", rsaKeyOnce()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ks := NewKeySet()
			kid, err := ks.AddKey(tc.key.Public())
			require.NoError(t, err)
			require.Equal(t, kidOf(t, tc.key.Public()), kid)
			require.Equal(t, []string{kid}, ks.KeyIDs())
			again, err := ks.AddKey(tc.key) // a Signer's public half; adding twice is a no-op
			require.NoError(t, err)
			require.Equal(t, kid, again)

			ch, _, err := testIssuer(tc.key).Issue(stdRequest)
			require.NoError(t, err)
			v := &Verifier{Keys: ks, Issuer: "mdm.example", Audience: "gw-a.example", Now: fixedClock(t0)}
			_, err = v.Check(context.Background(), ch)
			require.NoError(t, err)
		})
	}
	ks := NewKeySet()
	_, err = ks.AddKey(p384.Public())
	requireOnly(t, err, ErrConfig)
	requireOnly(t, ks.Add("", edKey.Public()), ErrConfig)
	require.Empty(t, ks.KeyIDs())
}

func TestKeySetReplace(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	secret := bytes.Repeat([]byte{7}, MinSecretLen)
	build := func(alg string, withSecret bool) *KeySet {
		ks := NewKeySet()
		require.NoError(t, ks.AddWithAlgorithm("k1", alg, pub))
		if withSecret {
			require.NoError(t, ks.AddSecret("s1", secret))
		}
		return ks
	}
	dst := NewKeySet()
	for _, tc := range []struct {
		name    string
		src     *KeySet
		changed bool
		kids    []string
	}{
		{"first keys", build("", true), true, []string{"k1", "s1"}},
		{"same keys", build("", true), false, []string{"k1", "s1"}},
		{"pin added", build(EdDSA, true), true, []string{"k1", "s1"}},
		{"secret gone", build(EdDSA, false), true, []string{"k1"}},
		{"nil empties", nil, true, nil},
		{"empty stays empty", NewKeySet(), false, nil},
	} {
		require.Equal(t, tc.changed, dst.Replace(tc.src), tc.name)
		require.ElementsMatch(t, tc.kids, dst.KeyIDs(), tc.name)
		if tc.src != nil && len(tc.kids) > 0 {
			want, _ := tc.src.Algorithm("k1")
			got, _ := dst.Algorithm("k1")
			require.Equal(t, want, got, "%s: the pin is copied", tc.name)
		}
	}
}

// TestParseJWKSLinear: the memory ParseJWKS allocates grows with the document, not
// with its square. A JWKS of many keys (LoadKeySet takes up to 1 MiB, some eleven
// thousand Ed25519 keys) used to copy the set's map at each key: about 6 s of CPU
// and gigabytes of garbage, at every refresh.
func TestParseJWKSLinear(t *testing.T) {
	const n = 4000
	x := b64.EncodeToString(edKey.Public().(ed25519.PublicKey))
	var doc bytes.Buffer
	doc.WriteString(`{"keys":[`)
	for i := range n {
		if i > 0 {
			doc.WriteByte(',')
		}
		fmt.Fprintf(&doc, `{"kty":"OKP","crv":"Ed25519","kid":"k%d","x":%q}`, i, x)
	}
	doc.WriteString(`]}`)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	ks, err := ParseJWKS(doc.Bytes())
	runtime.ReadMemStats(&after)
	require.NoError(t, err)
	require.Len(t, ks.KeyIDs(), n)
	// Linear: a few KiB per key at most (copying the map at each key took some 90 KiB a key here).
	perKey := (after.TotalAlloc - before.TotalAlloc) / n
	t.Logf("%d bytes a key", perKey)
	require.Less(t, perKey, uint64(4<<10), "bytes allocated per key of the document")
}
