package challenge

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

var (
	t0        = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	edKey     = ed25519.NewKeyFromSeed(make([]byte, 32))
	edKey2    = ed25519.NewKeyFromSeed([]byte("0123456789abcdef0123456789abcdef"))
	ecKeyOnce = sync.OnceValue(func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	})
	rsaKeyOnce = sync.OnceValue(func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		return k
	})
	secret = []byte("an operator-chosen secret of 32+ bytes!")
)

var allSentinels = []error{ErrMalformed, ErrAlgorithm, ErrType, ErrUnknownKey, ErrSignature,
	ErrMissingClaim, ErrIssuer, ErrAudience, ErrNotYetValid, ErrExpired, ErrLifetime, ErrReplayed, ErrConfig}

// requireOnly asserts that err matches want and no other sentinel.
func requireOnly(t *testing.T, err, want error) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, want)
	n := 0
	for _, s := range allSentinels {
		if errors.Is(err, s) {
			n++
		}
	}
	require.Equal(t, 1, n, "error %q matches %d sentinels", err, n)
}

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

func testIssuer(key crypto.Signer) *Issuer {
	return &Issuer{Name: "mdm.example", Key: key, Now: fixedClock(t0)}
}

var stdRequest = Request{
	UserID:    "3b7f1c2e-5a4d-4e6f-9a8b-0c1d2e3f4a5b",
	DeviceID:  "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a",
	ProfileID: "2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d",
	Audience:  "gw-a.example",
}

func testVerifier(t *testing.T, keys ...crypto.Signer) *Verifier {
	t.Helper()
	ks := NewKeySet()
	for _, k := range keys {
		_, err := ks.AddKey(k.Public())
		require.NoError(t, err)
	}
	return &Verifier{Keys: ks, Issuer: "mdm.example", Audience: "gw-a.example", Now: fixedClock(t0)}
}

func kidOf(t *testing.T, k crypto.PublicKey) string {
	t.Helper()
	kid, err := DefaultKeyID(k)
	require.NoError(t, err)
	return kid
}

// forge builds a token from any header and claims, signed by jwt's
// implementation of alg with key (nil key: empty signature), in the
// transmitted alphabet.
func forge(t *testing.T, hdr, claims map[string]any, alg string, key any) string {
	t.Helper()
	h, err := json.Marshal(hdr)
	require.NoError(t, err)
	c, err := json.Marshal(claims)
	require.NoError(t, err)
	input := b64.EncodeToString(h) + "." + b64.EncodeToString(c)
	var sig []byte
	if key != nil {
		sig, err = jwt.GetSigningMethod(alg).Sign(input, key)
		require.NoError(t, err)
	}
	return encode(input + "." + b64.EncodeToString(sig))
}

// stdClaims are the claims Issuer would write for stdRequest at t0.
func stdClaims() map[string]any {
	return map[string]any{
		"jti": "AAAAAAAAAAAAAAAAAAAAAA", "iss": "mdm.example", "sub": stdRequest.UserID,
		"aud": "gw-a.example", "iat": t0.Unix(), "nbf": t0.Unix(), "exp": t0.Add(time.Hour).Unix(),
		"dev": stdRequest.DeviceID,
	}
}

func edHeader(t *testing.T) map[string]any {
	return map[string]any{"alg": "EdDSA", "typ": TokenType, "kid": kidOf(t, edKey.Public())}
}

func ed25519PublicKey(b []byte) ed25519.PublicKey { return ed25519.PublicKey(b) }
