package challenge

import (
	"context"
	"errors"
	"testing"
	"time"
)

// FuzzVerify feeds arbitrary strings to Verify. Properties: no panic; never
// accepted (the verifier's clock is two hours after the seeds were minted,
// so even an untouched seed is refused); every refusal matches exactly one
// sentinel; LooksLikeToken and Fingerprint never panic.
func FuzzVerify(f *testing.F) {
	ks := NewKeySet()
	mustAdd := func(err error) {
		if err != nil {
			f.Fatal(err)
		}
	}
	edKid, _ := DefaultKeyID(edKey.Public())
	mustAdd(ks.Add(edKid, edKey.Public()))
	mustAdd(ks.AddSecret("s1", secret))
	v := &Verifier{
		Keys: ks, Issuer: "mdm.example", Audience: "gw-a.example",
		Algorithms: []string{EdDSA, ES256, RS256, PS256, HS256},
		Replay:     new(MemoryReplayStore),
		Now:        fixedClock(t0.Add(2 * time.Hour)),
	}
	for _, iss := range []*Issuer{testIssuer(edKey), {Name: "mdm.example", Secret: secret, KeyID: "s1", Now: fixedClock(t0)}} {
		ch, _, err := iss.Issue(stdRequest)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(ch)
	}
	f.Add("")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Fuzz(func(t *testing.T, s string) {
		_ = LooksLikeToken(s)
		_ = Fingerprint(s)
		c, err := v.Verify(context.Background(), s)
		if err == nil {
			t.Fatalf("accepted %q: %+v", s, c)
		}
		if c != nil {
			t.Fatalf("claims with error %v", err)
		}
		n := 0
		for _, e := range allSentinels {
			if errors.Is(err, e) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("error %v matches %d sentinels", err, n)
		}
	})
}
