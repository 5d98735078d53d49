package challenge

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzCheckUnforgeable: with the verifier's clock inside the seeds' validity, a
// challenge Check accepts has the signed part (header and payload, RFC 7515 §5.2) of
// a challenge an Issuer minted, and the same claims: no change to what is signed
// gets past the signature, whatever the encoding.
func FuzzCheckUnforgeable(f *testing.F) {
	ks := NewKeySet()
	edKid, _ := DefaultKeyID(edKey.Public())
	if err := ks.Add(edKid, edKey.Public()); err != nil {
		f.Fatal(err)
	}
	if err := ks.AddSecret("s1", secret); err != nil {
		f.Fatal(err)
	}
	v := &Verifier{
		Keys: ks, Issuer: "mdm.example", Audience: "gw-a.example",
		Algorithms: []string{EdDSA, ES256, RS256, PS256, HS256},
		Now:        fixedClock(t0.Add(time.Minute)),
	}
	// Minted from a fixed jti: the fuzzing workers each run this setup, and must
	// know the seeds the coordinator added.
	minted := map[string]*Claims{}
	for _, iss := range []*Issuer{testIssuer(edKey), {Name: "mdm.example", Secret: secret, KeyID: "s1", Now: fixedClock(t0)}} {
		iss.Rand = bytes.NewReader(bytes.Repeat([]byte{7}, 64))
		ch, _, err := iss.Issue(stdRequest)
		if err != nil {
			f.Fatal(err)
		}
		c, err := v.Check(context.Background(), ch)
		if err != nil {
			f.Fatalf("a fresh challenge refused: %v", err)
		}
		i := strings.LastIndexByte(ch, '.')
		minted[ch[:i]] = c
		f.Add(ch)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := v.Check(context.Background(), s)
		if err != nil {
			return
		}
		i := strings.LastIndexByte(s, '.')
		want, ok := minted[s[:max(i, 0)]]
		if i < 0 || !ok {
			t.Fatalf("accepted a challenge no Issuer minted: %q", s)
		}
		if !reflect.DeepEqual(c, want) {
			t.Fatalf("accepted %q with claims %+v, minted %+v", s, c, want)
		}
	})
}
