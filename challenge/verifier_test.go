package challenge

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestIssueVerifyAlgorithms(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, alg string
		key       crypto.Signer
		want      string
	}{
		{"Ed25519", "", edKey, EdDSA},
		{"ES256", "", ecKeyOnce(), ES256},
		{"RS256", "", rsaKeyOnce(), RS256},
		{"PS256", PS256, rsaKeyOnce(), PS256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			iss := testIssuer(tc.key)
			iss.Algorithm = tc.alg
			ch, c, err := iss.Issue(stdRequest)
			require.NoError(t, err)
			require.Equal(t, tc.want, c.Algorithm)
			require.NotContains(t, ch, "_")
			require.NotContains(t, ch, "-")
			t.Logf("%s: %d characters", tc.name, len(ch))
			v := testVerifier(t, tc.key)
			got, err := v.Check(context.Background(), ch)
			require.NoError(t, err)
			require.Equal(t, c, got)
			require.Equal(t, stdRequest.UserID, got.UserID)
			require.Equal(t, stdRequest.DeviceID, got.DeviceID)
			require.Equal(t, stdRequest.ProfileID, got.ProfileID)
			require.Equal(t, t0, got.IssuedAt.UTC())
			require.Equal(t, t0, got.NotBefore.UTC())
			require.Equal(t, t0.Add(time.Hour), got.Expires.UTC())
			require.True(t, LooksLikeToken(ch))
		})
	}
}

func TestIssueHS256(t *testing.T) {
	iss := &Issuer{Name: "mdm.example", Secret: secret, KeyID: "s1", Now: fixedClock(t0)}
	ch, _, err := iss.Issue(stdRequest)
	require.NoError(t, err)
	ks := NewKeySet()
	require.NoError(t, ks.AddSecret("s1", secret))
	v := &Verifier{Keys: ks, Issuer: "mdm.example", Audience: "gw-a.example", Now: fixedClock(t0)}
	_, err = v.Check(context.Background(), ch)
	requireOnly(t, err, ErrAlgorithm) // HS256 is never a default
	v.Algorithms = []string{HS256}
	_, err = v.Check(context.Background(), ch)
	require.NoError(t, err)
	// The secret is never exported.
	doc, err := ks.MarshalJSON()
	require.NoError(t, err)
	require.JSONEq(t, `{"keys":[]}`, string(doc))
	pub, ok := ks.Lookup("s1")
	require.True(t, ok)
	require.Nil(t, pub)
}

func TestIssueErrors(t *testing.T) {
	t.Parallel()
	iss := testIssuer(edKey)
	for _, tc := range []struct {
		name string
		iss  *Issuer
		req  func(*Request)
		want error
	}{
		{"lifetime over one hour", iss, func(r *Request) { r.Lifetime = time.Hour + time.Second }, ErrLifetime},
		{"negative lifetime", iss, func(r *Request) { r.Lifetime = -time.Minute }, ErrLifetime},
		{"sub-second lifetime", iss, func(r *Request) { r.Lifetime = time.Millisecond }, ErrLifetime},
		{"no user", iss, func(r *Request) { r.UserID = "" }, ErrMissingClaim},
		{"no audience", iss, func(r *Request) { r.Audience = "" }, ErrMissingClaim},
		{"no name", &Issuer{Key: edKey}, func(*Request) {}, ErrConfig},
		{"no key", &Issuer{Name: "m"}, func(*Request) {}, ErrConfig},
		{"key and secret", &Issuer{Name: "m", Key: edKey, Secret: secret}, func(*Request) {}, ErrConfig},
		{"short secret", &Issuer{Name: "m", Secret: []byte("short"), KeyID: "s"}, func(*Request) {}, ErrConfig},
		{"secret without kid", &Issuer{Name: "m", Secret: secret}, func(*Request) {}, ErrConfig},
		{"alg does not fit key", &Issuer{Name: "m", Key: edKey, Algorithm: ES256}, func(*Request) {}, ErrConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := stdRequest
			tc.req(&r)
			_, _, err := tc.iss.Issue(r)
			requireOnly(t, err, tc.want)
		})
	}
	r := stdRequest
	r.Lifetime = 30 * time.Minute
	_, c, err := iss.Issue(r)
	require.NoError(t, err)
	require.Equal(t, 30*time.Minute, c.Expires.Sub(c.IssuedAt))
}

// TestCheckFailures is the table of every refusal, in check order.
func TestCheckFailures(t *testing.T) {
	t.Parallel()
	edKid := kidOf(t, edKey.Public())
	ecKid := kidOf(t, ecKeyOnce().Public())
	rsaKid := kidOf(t, rsaKeyOnce().Public())
	edPubDER, err := x509.MarshalPKIXPublicKey(edKey.Public())
	require.NoError(t, err)
	rsaPubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(rsaKeyOnce().Public()))})
	good, _, err := testIssuer(edKey).Issue(stdRequest)
	require.NoError(t, err)
	parts := strings.Split(good, ".")

	with := func(mod func(h, c map[string]any)) (map[string]any, map[string]any) {
		h, c := edHeader(t), stdClaims()
		mod(h, c)
		return h, c
	}
	signed := func(mod func(h, c map[string]any)) string {
		h, c := with(mod)
		return forge(t, h, c, EdDSA, edKey)
	}
	at := func(d time.Duration) func() time.Time { return fixedClock(t0.Add(d)) }

	for _, tc := range []struct {
		name      string
		challenge string
		verifier  func(*Verifier)
		want      error // nil: accepted
	}{
		{"accepted", good, nil, nil},
		{"raw base64url form accepted", strings.NewReplacer("+", "-", "/", "_").Replace(good), nil, nil},
		{"forged but well formed", signed(func(h, c map[string]any) {}), nil, nil},

		// well-formed
		{"empty", "", nil, ErrMalformed},
		{"one segment", "abc", nil, ErrMalformed},
		{"two segments", parts[0] + "." + parts[1], nil, ErrMalformed},
		{"four segments", good + ".AAAA", nil, ErrMalformed},
		{"space", "a b.c.d", nil, ErrMalformed},
		{"non-ASCII", parts[0] + ".é." + parts[2], nil, ErrMalformed},
		{"too long", strings.Repeat("A", MaxLength+1), nil, ErrMalformed},
		{"header not JSON", b64.EncodeToString([]byte("hello")) + "." + parts[1] + "." + parts[2], nil, ErrMalformed},
		{"bad base64 in payload", parts[0] + ".A." + parts[2], nil, ErrMalformed},
		{"fractional exp", signed(func(h, c map[string]any) { c["exp"] = 1772370000.5 }), nil, ErrMalformed},
		{"exp as string", signed(func(h, c map[string]any) { c["exp"] = "1772370000" }), nil, ErrMalformed},
		{"crit header", signed(func(h, c map[string]any) { h["crit"] = []string{"exp"} }), nil, ErrMalformed},
		{"exp beyond year 9999", signed(func(h, c map[string]any) { c["exp"] = int64(1) << 40 }), nil, ErrMalformed},
		{"negative iat", signed(func(h, c map[string]any) { c["iat"] = -1 }), nil, ErrMalformed},

		// algorithm
		{"alg none", func() string {
			h, c := with(func(h, c map[string]any) { h["alg"] = "none" })
			return forge(t, h, c, "none", nil)
		}(), nil, ErrAlgorithm},
		{"alg missing", func() string {
			h, c := with(func(h, c map[string]any) { delete(h, "alg") })
			return forge(t, h, c, EdDSA, edKey)
		}(), nil, ErrAlgorithm},
		{"alg unknown", func() string {
			h, c := with(func(h, c map[string]any) { h["alg"] = "XX512" })
			return forge(t, h, c, EdDSA, edKey)
		}(), nil, ErrAlgorithm},
		{"HS256 keyed with the Ed25519 public key", func() string {
			h, c := with(func(h, c map[string]any) { h["alg"] = HS256 })
			return forge(t, h, c, HS256, []byte(edKey.Public().(ed25519.PublicKey)))
		}(), nil, ErrAlgorithm},
		{"HS256 keyed with the Ed25519 public key DER, HS256 allowed", func() string {
			h, c := with(func(h, c map[string]any) { h["alg"] = HS256 })
			return forge(t, h, c, HS256, edPubDER)
		}(), func(v *Verifier) { v.Algorithms = []string{EdDSA, HS256} }, ErrAlgorithm},
		{"HS256 keyed with the RSA public key PEM", func() string {
			h, c := with(func(h, c map[string]any) { h["alg"] = HS256; h["kid"] = rsaKid })
			return forge(t, h, c, HS256, rsaPubPEM)
		}(), func(v *Verifier) { require.NoError(t, v.Keys.Add(rsaKid, rsaKeyOnce().Public())) }, ErrAlgorithm},
		{"ES256 header, kid of an Ed25519 key", func() string {
			h, c := with(func(h, c map[string]any) { h["alg"] = ES256 })
			return forge(t, h, c, ES256, ecKeyOnce())
		}(), nil, ErrAlgorithm},
		{"RS256 token, key pinned to PS256", func() string {
			h, c := with(func(h, c map[string]any) { h["alg"] = RS256; h["kid"] = rsaKid })
			return forge(t, h, c, RS256, rsaKeyOnce())
		}(), func(v *Verifier) { require.NoError(t, v.Keys.AddWithAlgorithm(rsaKid, PS256, rsaKeyOnce().Public())) }, ErrAlgorithm},
		{"ES256 not on the verifier's list", func() string {
			h, c := with(func(h, c map[string]any) { h["alg"] = ES256; h["kid"] = ecKid })
			return forge(t, h, c, ES256, ecKeyOnce())
		}(), func(v *Verifier) {
			v.Algorithms = []string{EdDSA}
			require.NoError(t, v.Keys.Add(ecKid, ecKeyOnce().Public()))
		}, ErrAlgorithm},

		// type
		{"typ JWT", signed(func(h, c map[string]any) { h["typ"] = "JWT" }), nil, ErrType},
		{"typ missing", signed(func(h, c map[string]any) { delete(h, "typ") }), nil, ErrType},
		{"typ not a string", signed(func(h, c map[string]any) { h["typ"] = 7 }), nil, ErrType},

		// key
		{"kid missing", signed(func(h, c map[string]any) { delete(h, "kid") }), nil, ErrUnknownKey},
		{"kid unknown", signed(func(h, c map[string]any) { h["kid"] = "nope" }), nil, ErrUnknownKey},
		{"kid of a removed key", good, func(v *Verifier) { v.Keys.Remove(edKid) }, ErrUnknownKey},

		// signature
		{"tampered payload", parts[0] + "." + b64.EncodeToString([]byte(strings.Replace(string(must(b64.DecodeString(strings.NewReplacer("+", "-", "/", "_").Replace(parts[1])))), "gw-a", "gw-b", 1))) + "." + parts[2], nil, ErrSignature},
		{"tampered signature", parts[0] + "." + parts[1] + "." + flip(parts[2]), nil, ErrSignature},
		{"empty signature", parts[0] + "." + parts[1] + ".", nil, ErrSignature},
		{"signed by another key under our kid", func() string { h, c := with(func(h, c map[string]any) {}); return forge(t, h, c, EdDSA, edKey2) }(), nil, ErrSignature},

		// claims present
		{"no jti", signed(func(h, c map[string]any) { delete(c, "jti") }), nil, ErrMissingClaim},
		{"no iss", signed(func(h, c map[string]any) { delete(c, "iss") }), nil, ErrMissingClaim},
		{"no sub", signed(func(h, c map[string]any) { delete(c, "sub") }), nil, ErrMissingClaim},
		{"no aud", signed(func(h, c map[string]any) { delete(c, "aud") }), nil, ErrMissingClaim},
		{"empty aud list", signed(func(h, c map[string]any) { c["aud"] = []string{} }), nil, ErrMissingClaim},
		{"no iat", signed(func(h, c map[string]any) { delete(c, "iat") }), nil, ErrMissingClaim},
		{"no nbf", signed(func(h, c map[string]any) { delete(c, "nbf") }), nil, ErrMissingClaim},
		{"no exp", signed(func(h, c map[string]any) { delete(c, "exp") }), nil, ErrMissingClaim},

		// issuer, audience
		{"another issuer", signed(func(h, c map[string]any) { c["iss"] = "evil.example" }), nil, ErrIssuer},
		{"minted for gateway B", signed(func(h, c map[string]any) { c["aud"] = "gw-b.example" }), nil, ErrAudience},
		{"two audiences", signed(func(h, c map[string]any) { c["aud"] = []string{"gw-a.example", "gw-b.example"} }), nil, ErrAudience},
		{"one audience as a list", signed(func(h, c map[string]any) { c["aud"] = []string{"gw-a.example"} }), nil, nil},
		{"presented at gateway B", good, func(v *Verifier) { v.Audience = "gw-b.example" }, ErrAudience},

		// time, default leeway 30 s
		{"at 59:59", good, func(v *Verifier) { v.Now = at(59*time.Minute + 59*time.Second) }, nil},
		{"at 60:29 (leeway)", good, func(v *Verifier) { v.Now = at(60*time.Minute + 29*time.Second) }, nil},
		{"at 60:30", good, func(v *Verifier) { v.Now = at(60*time.Minute + 30*time.Second) }, ErrExpired},
		{"at 60:31", good, func(v *Verifier) { v.Now = at(60*time.Minute + 31*time.Second) }, ErrExpired},
		{"30 s early (leeway)", good, func(v *Verifier) { v.Now = at(-30 * time.Second) }, nil},
		{"31 s early", good, func(v *Verifier) { v.Now = at(-31 * time.Second) }, ErrNotYetValid},
		// time, no leeway
		{"no leeway, at 59:59", good, func(v *Verifier) { v.Leeway = NoLeeway; v.Now = at(59*time.Minute + 59*time.Second) }, nil},
		{"no leeway, at 60:00", good, func(v *Verifier) { v.Leeway = NoLeeway; v.Now = at(time.Hour) }, ErrExpired},
		{"no leeway, at 60:01", good, func(v *Verifier) { v.Leeway = NoLeeway; v.Now = at(time.Hour + time.Second) }, ErrExpired},
		{"no leeway, 1 s early", good, func(v *Verifier) { v.Leeway = NoLeeway; v.Now = at(-time.Second) }, ErrNotYetValid},
		{"leeway 1 min, at 60:59", good, func(v *Verifier) { v.Leeway = time.Minute; v.Now = at(time.Hour + 59*time.Second) }, nil},
		{"nbf in the future", signed(func(h, c map[string]any) { c["nbf"] = t0.Add(10 * time.Minute).Unix() }), nil, ErrNotYetValid},
		{"iat in the future", signed(func(h, c map[string]any) { c["iat"] = t0.Add(10 * time.Minute).Unix() }), nil, ErrNotYetValid},
		{"expired yesterday", signed(func(h, c map[string]any) {
			c["iat"], c["nbf"], c["exp"] = t0.Add(-25*time.Hour).Unix(), t0.Add(-25*time.Hour).Unix(), t0.Add(-24*time.Hour).Unix()
		}), nil, ErrExpired},
		{"lifetime 1 h 1 s, validly signed", signed(func(h, c map[string]any) { c["exp"] = t0.Add(time.Hour + time.Second).Unix() }), nil, ErrLifetime},
		{"lifetime one year, validly signed", signed(func(h, c map[string]any) { c["exp"] = t0.AddDate(1, 0, 0).Unix() }), nil, ErrLifetime},
		{"exp before iat", signed(func(h, c map[string]any) {
			c["iat"], c["nbf"], c["exp"] = t0.Unix(), t0.Add(-time.Hour).Unix(), t0.Add(time.Second).Unix()-2
		}), func(v *Verifier) { v.Now = at(-2 * time.Second) }, ErrLifetime},

		// configuration
		{"no audience configured", good, func(v *Verifier) { v.Audience = "" }, ErrConfig},
		{"no issuer configured", good, func(v *Verifier) { v.Issuer = "" }, ErrConfig},
		{"no keys", good, func(v *Verifier) { v.Keys = nil }, ErrConfig},
		{"leeway over a minute", good, func(v *Verifier) { v.Leeway = time.Minute + 1 }, ErrConfig},
		{"alg none listed", good, func(v *Verifier) { v.Algorithms = []string{"none"} }, ErrConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := testVerifier(t, edKey)
			if tc.verifier != nil {
				tc.verifier(v)
			}
			c, err := v.Check(context.Background(), tc.challenge)
			if tc.want == nil {
				require.NoError(t, err)
				require.NotNil(t, c)
				return
			}
			requireOnly(t, err, tc.want)
			require.Nil(t, c)
			require.Equal(t, tc.want == ErrExpired || tc.want == ErrNotYetValid || tc.want == ErrLifetime, IsExpiry(err))
			require.Equal(t, tc.want != ErrConfig && !IsExpiry(err), IsGenuineness(err))
			if len(tc.challenge) > 20 {
				require.NotContains(t, err.Error(), tc.challenge[len(tc.challenge)-20:], "error text must not carry the challenge")
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// flip changes the first character of a base64 segment.
func flip(s string) string {
	if s[0] == 'A' {
		return "B" + s[1:]
	}
	return "A" + s[1:]
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	oldIss, newIss := testIssuer(edKey), testIssuer(ecKeyOnce())
	oldCh, _, err := oldIss.Issue(stdRequest)
	require.NoError(t, err)
	v := testVerifier(t, edKey, ecKeyOnce())
	newCh, _, err := newIss.Issue(stdRequest)
	require.NoError(t, err)
	for _, ch := range []string{oldCh, newCh} {
		_, err := v.Check(context.Background(), ch)
		require.NoError(t, err)
	}
	require.True(t, v.Keys.Remove(kidOf(t, edKey.Public())))
	require.False(t, v.Keys.Remove(kidOf(t, edKey.Public())))
	_, err = v.Check(context.Background(), oldCh)
	requireOnly(t, err, ErrUnknownKey)
	_, err = v.Check(context.Background(), newCh)
	require.NoError(t, err)
}

func TestVerifyReplay(t *testing.T) {
	t.Parallel()
	ch, c, err := testIssuer(edKey).Issue(stdRequest)
	require.NoError(t, err)
	store := &MemoryReplayStore{Now: fixedClock(t0)}
	v := testVerifier(t, edKey)
	v.Replay = store
	ctx := context.Background()
	_, err = v.Verify(ctx, ch)
	require.NoError(t, err)
	_, err = v.Verify(ctx, ch)
	requireOnly(t, err, ErrReplayed)
	// Check does not consume; Release gives the challenge back.
	_, err = v.Check(ctx, ch)
	require.NoError(t, err)
	require.NoError(t, v.Release(ctx, c))
	_, err = v.Verify(ctx, ch)
	require.NoError(t, err)

	// A store failure is not a verdict on the challenge.
	v.Replay = ReplayFunc(func(context.Context, string, time.Time) error { return context.DeadlineExceeded })
	_, err = v.Verify(ctx, ch)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.False(t, IsExpiry(err) || IsGenuineness(err))
	require.ErrorIs(t, v.Release(ctx, c), errors.ErrUnsupported)

	// The claim lasts as long as the challenge can be accepted (exp + leeway),
	// and a margin for clocks that disagree.
	var until time.Time
	v.Replay = ReplayFunc(func(_ context.Context, _ string, u time.Time) error { until = u; return nil })
	_, err = v.Verify(ctx, ch)
	require.NoError(t, err)
	require.Equal(t, c.Expires.Add(DefaultLeeway+ClaimMargin), until)
}

// TestVerifyWithoutReplayStoreIsConfigError: Verify with Replay nil used to
// be Check, so a direct caller that forgot the store accepted one challenge
// any number of times. It is now a configuration error, every time.
func TestVerifyWithoutReplayStoreIsConfigError(t *testing.T) {
	ch, c, err := testIssuer(edKey).Issue(stdRequest)
	require.NoError(t, err)
	v := testVerifier(t, edKey)
	v.Replay = nil
	for range 2 {
		got, err := v.Verify(context.Background(), ch)
		require.ErrorIs(t, err, ErrConfig)
		require.Nil(t, got)
	}
	require.ErrorIs(t, v.Claim(context.Background(), c), ErrConfig)
	_, err = v.Check(context.Background(), ch)
	require.NoError(t, err, "Check alone stays available to callers that claim themselves")
}

// TestVerifyConcurrent presents one challenge from many goroutines at
// once: exactly one wins, because the claim is one atomic operation, not a
// lookup followed by a store that two requests can both pass.
func TestVerifyConcurrent(t *testing.T) {
	t.Parallel()
	ch, _, err := testIssuer(edKey).Issue(stdRequest)
	require.NoError(t, err)
	v := testVerifier(t, edKey)
	v.Replay = &MemoryReplayStore{Now: fixedClock(t0)}
	const n = 256
	var ok, replayed atomic.Int32
	var start, done sync.WaitGroup
	start.Add(1)
	for range n {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			_, err := v.Verify(context.Background(), ch)
			switch {
			case err == nil:
				ok.Add(1)
			case IsGenuineness(err):
				replayed.Add(1)
			}
		}()
	}
	start.Done()
	done.Wait()
	require.EqualValues(t, 1, ok.Load())
	require.EqualValues(t, n-1, replayed.Load())
}

// TestVerifierValidate: Validate refuses, with ErrConfig, what would make every Check
// or Verify fail, and passes a Verifier that works.
func TestVerifierValidate(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	for _, c := range []struct {
		name   string
		mangle func(v *Verifier)
		ok     bool
	}{
		{"complete", func(v *Verifier) {}, true},
		{"no Keys", func(v *Verifier) { v.Keys = nil }, false},
		{"no Issuer", func(v *Verifier) { v.Issuer = "" }, false},
		{"no Audience", func(v *Verifier) { v.Audience = "" }, false},
		{"no Replay", func(v *Verifier) { v.Replay = nil }, false},
		{"Leeway over MaxLeeway", func(v *Verifier) { v.Leeway = MaxLeeway + time.Second }, false},
		{"NoLeeway", func(v *Verifier) { v.Leeway = NoLeeway }, true},
		{"empty Algorithms", func(v *Verifier) { v.Algorithms = []string{} }, false},
		{"none allowed", func(v *Verifier) { v.Algorithms = []string{"none"} }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := testVerifier(t, key)
			v.Replay = &MemoryReplayStore{}
			c.mangle(v)
			if c.ok {
				require.NoError(t, v.Validate())
			} else {
				require.ErrorIs(t, v.Validate(), ErrConfig)
			}
		})
	}
}

// TestCheckDuringKeyRemoval: a key removed while Check runs (a JWKS refresh
// dropping a kid) makes Check fail with ErrUnknownKey or succeed, never panic.
// Check used to look the kid up twice, and the second lookup could find nothing.
func TestCheckDuringKeyRemoval(t *testing.T) {
	t.Parallel()
	ch, _, err := testIssuer(edKey).Issue(stdRequest)
	require.NoError(t, err)
	v := testVerifier(t, edKey)
	kid := kidOf(t, edKey.Public())
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			v.Keys.Remove(kid)
			_ = v.Keys.Add(kid, edKey.Public())
		}
	}()
	defer func() { close(stop); <-done }()
	n := 20000 // the window is a few instructions wide: before the fix, most runs panicked
	if raceEnabled {
		n = 2000
	}
	for range n {
		if _, err := v.Check(context.Background(), ch); err != nil {
			requireOnly(t, err, ErrUnknownKey)
		}
	}
}

// TestDefaultAlgorithmsIsNoSwitch: a Verifier with nil Algorithms keeps the default
// allow-list whatever the process does to the DefaultAlgorithms variable: HS256
// (a shared secret: whoever verifies can mint) is never turned on for every
// Verifier at once by a package-level write, and EdDSA is never turned off.
// (Not parallel: it writes the package variable.)
func TestDefaultAlgorithmsIsNoSwitch(t *testing.T) {
	iss := &Issuer{Name: "mdm.example", Secret: secret, KeyID: "s1", Now: fixedClock(t0)}
	hs, _, err := iss.Issue(stdRequest)
	require.NoError(t, err)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	ed, _, err := (&Issuer{Name: "mdm.example", Key: priv, Now: fixedClock(t0)}).Issue(stdRequest)
	require.NoError(t, err)
	ks := NewKeySet()
	require.NoError(t, ks.AddSecret("s1", secret))
	_, err = ks.AddKey(pub)
	require.NoError(t, err)

	saved := slices.Clone(DefaultAlgorithms)
	defer func() { DefaultAlgorithms = saved }()
	for _, tc := range []struct {
		name   string
		mutate func()
	}{
		{"HS256 appended", func() { DefaultAlgorithms = append(DefaultAlgorithms, HS256) }},
		{"an element overwritten", func() { DefaultAlgorithms[0] = HS256 }},
		{"set to HS256 alone", func() { DefaultAlgorithms = []string{HS256} }},
		{"set to nil", func() { DefaultAlgorithms = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			DefaultAlgorithms = slices.Clone(saved)
			tc.mutate()
			v := &Verifier{Keys: ks, Issuer: "mdm.example", Audience: "gw-a.example", Now: fixedClock(t0)}
			_, err := v.Check(context.Background(), hs)
			requireOnly(t, err, ErrAlgorithm)
			_, err = v.Check(context.Background(), ed)
			require.NoError(t, err)
		})
	}
}
