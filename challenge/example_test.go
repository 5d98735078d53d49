package challenge_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/scepkit/scepkit/challenge"
)

// A fixed key, clock and randomness make the examples' output stable; a
// real Issuer takes its key from an HSM, KMS or file and leaves Now and
// Rand nil.
var (
	exampleKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	exampleNow = func() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }
)

func ExampleIssuer_Issue() {
	iss := &challenge.Issuer{
		Name: "mdm.example.com",
		Key:  exampleKey, // Ed25519: alg EdDSA
		Now:  exampleNow,
		Rand: bytes.NewReader(make([]byte, 16)), // the jti; nil means crypto/rand
	}
	ch, c, err := iss.Issue(challenge.Request{
		UserID:    "3b7f1c2e-5a4d-4e6f-9a8b-0c1d2e3f4a5b",
		DeviceID:  "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a",
		ProfileID: "2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d",
		Audience:  "gw-a.example.com",
	})
	if err != nil {
		panic(err)
	}
	// Put ch in the SCEP profile; log only its fingerprint.
	fmt.Println("length:", len(ch))
	fmt.Println("fingerprint:", challenge.Fingerprint(ch))
	fmt.Println("ours:", challenge.LooksLikeToken(ch))
	fmt.Println("id:", c.ID, "kid:", c.KeyID, "alg:", c.Algorithm)
	fmt.Println("valid:", c.NotBefore.UTC().Format(time.TimeOnly), "to", c.Expires.UTC().Format(time.TimeOnly))
	// Output:
	// length: 512
	// fingerprint: e8415285e840
	// ours: true
	// id: AAAAAAAAAAAAAAAAAAAAAA kid: --6IM5l0 alg: EdDSA
	// valid: 12:00:00 to 13:00:00
}

func ExampleVerifier_Verify() {
	iss := &challenge.Issuer{Name: "mdm.example.com", Key: exampleKey, Now: exampleNow}
	ch, c, err := iss.Issue(challenge.Request{UserID: "user-1", DeviceID: "device-1", Audience: "gw-a.example.com"})
	if err != nil {
		panic(err)
	}

	// The gateway knows the MDM's public keys (for example from its JWKS).
	keys := challenge.NewKeySet()
	if err := keys.Add(c.KeyID, exampleKey.Public()); err != nil {
		panic(err)
	}
	v := &challenge.Verifier{
		Keys:     keys,
		Issuer:   "mdm.example.com",
		Audience: "gw-a.example.com",
		Replay:   new(challenge.MemoryReplayStore),
		Now:      func() time.Time { return exampleNow().Add(10 * time.Minute) },
	}
	got, err := v.Verify(context.Background(), ch)
	fmt.Println(got.UserID, got.DeviceID, err)

	// The same challenge again: refused, in phase 2.
	_, err = v.Verify(context.Background(), ch)
	fmt.Println(errors.Is(err, challenge.ErrReplayed), challenge.IsGenuineness(err))

	// At another gateway: refused.
	other := *v
	other.Audience = "gw-b.example.com"
	other.Replay = new(challenge.MemoryReplayStore)
	_, err = other.Verify(context.Background(), ch)
	fmt.Println(errors.Is(err, challenge.ErrAudience))

	// Two hours later: expired, phase 1.
	late := *v
	late.Now = func() time.Time { return exampleNow().Add(2 * time.Hour) }
	late.Replay = new(challenge.MemoryReplayStore)
	_, err = late.Verify(context.Background(), ch)
	fmt.Println(errors.Is(err, challenge.ErrExpired), challenge.IsExpiry(err))
	// Output:
	// user-1 device-1 <nil>
	// true true
	// true
	// true true
}

// The CRP's order: check, do the remaining phases, claim the id just before
// issuing, and release it if issuance fails for a transient reason.
func ExampleVerifier_Check() {
	iss := &challenge.Issuer{Name: "mdm.example.com", Key: exampleKey, Now: exampleNow}
	ch, _, _ := iss.Issue(challenge.Request{UserID: "user-1", Audience: "gw-a.example.com"})
	keys := challenge.NewKeySet()
	if _, err := keys.AddKey(exampleKey.Public()); err != nil { // the kid the Issuer writes
		panic(err)
	}
	v := &challenge.Verifier{Keys: keys, Issuer: "mdm.example.com", Audience: "gw-a.example.com",
		Replay: new(challenge.MemoryReplayStore), Now: exampleNow}
	ctx := context.Background()

	c, err := v.Check(ctx, ch) // phases 1 and 2, no one-time use yet
	if err != nil {
		panic(err)
	}
	// ... phase 3, template resolution ...
	if err := v.Claim(ctx, c); err != nil {
		panic(err)
	}
	caErr := errors.New("CA unreachable") // issuance failed transiently
	if caErr != nil {
		_ = v.Release(ctx, c) // the device may retry with the same challenge
	}
	_, err = v.Verify(ctx, ch)
	fmt.Println("retry:", err)
	// Output:
	// retry: <nil>
}

func ExampleKeySet_MarshalJSON() {
	keys := challenge.NewKeySet()
	_ = keys.Add("k1", exampleKey.Public())
	_ = keys.AddSecret("shared", bytes.Repeat([]byte{1}, 32)) // never exported
	doc, _ := keys.MarshalJSON()
	fmt.Println(string(doc))

	parsed, err := challenge.ParseJWKS(doc)
	fmt.Println(parsed.KeyIDs(), err)
	// Output:
	// {"keys":[{"kty":"OKP","use":"sig","alg":"EdDSA","kid":"k1","crv":"Ed25519","x":"6kpsY-KcUgq-9VB7Ey7F-ZVHdq6-vnuSQh7qaRRG0iw"}]}
	// [k1] <nil>
}
