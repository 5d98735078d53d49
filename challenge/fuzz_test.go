package challenge

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
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

// FuzzParseJWKS feeds arbitrary documents to ParseJWKS, as a JWKS file or the MDM's
// JWKS URL gives them. Properties: no panic; on error no set; a set it returns
// holds no secret, survives MarshalJSON and ParseJWKS with the same keys and the same
// algorithms allowed; and a challenge signed by a key of ours under one of its kids
// is refused cleanly (never accepted, never a panic), whatever the key it names.
func FuzzParseJWKS(f *testing.F) {
	for _, name := range []string{"jwks-two-keys.json", "jwks-duplicate-kid.json", "jwks-trailing-comma.json"} {
		b, err := os.ReadFile(filepath.Join("..", "internal", "mdmfile", "testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	ks := NewKeySet()
	for _, k := range []crypto.PublicKey{edKey.Public(), ecKeyOnce().Public(), rsaKeyOnce().Public()} {
		if _, err := ks.AddKey(k); err != nil {
			f.Fatal(err)
		}
	}
	doc, err := json.Marshal(ks)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(doc)
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"r","alg":"PS256","n":"AQAB","e":"AQAB"},{"kty":"oct","kid":"s","k":"AA"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-384","kid":"p","x":"A","y":"A"},{"kty":"OKP","crv":"Ed25519","use":"enc","kid":"e","x":"A"}]}`))
	signers := map[keyKind]*Issuer{
		kindEd25519: {Name: "mdm.example", Key: edKey, Now: fixedClock(t0)},
		kindP256:    {Name: "mdm.example", Key: ecKeyOnce(), Now: fixedClock(t0)},
		kindRSA:     {Name: "mdm.example", Key: rsaKeyOnce(), Algorithm: RS256, Now: fixedClock(t0)},
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ks, err := ParseJWKS(b)
		if err != nil {
			if ks != nil {
				t.Fatalf("a key set with the error %v", err)
			}
			return
		}
		allowed := func(s *KeySet, kid string) (kind keyKind, alg string) {
			e := s.lookup(kid)
			if e == nil {
				t.Fatalf("kid %q listed, not found", kid)
			}
			if e.kind == kindHMAC {
				t.Fatalf("kid %q: a secret from a JWKS", kid)
			}
			alg = e.alg
			if alg == "" && e.kind != kindRSA {
				alg = map[keyKind]string{kindEd25519: EdDSA, kindP256: ES256}[e.kind] // the only one of its kind
			}
			return e.kind, alg
		}
		out, err := json.Marshal(ks)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseJWKS(out)
		if err != nil {
			t.Fatalf("written back as %s, refused: %v", out, err)
		}
		kids := ks.KeyIDs()
		if !slices.Equal(kids, back.KeyIDs()) {
			t.Fatalf("written back, kids %q became %q", kids, back.KeyIDs())
		}
		for _, kid := range kids {
			k1, a1 := allowed(ks, kid)
			k2, a2 := allowed(back, kid)
			if k1 != k2 || a1 != a2 || !sameKey(ks.lookup(kid), &keyEntry{kind: k1, alg: ks.lookup(kid).alg, pub: back.lookup(kid).pub}) {
				t.Fatalf("written back, kid %q changed (%v %q, then %v %q)", kid, k1, a1, k2, a2)
			}
		}
		v := &Verifier{Keys: ks, Issuer: "mdm.example", Audience: stdRequest.Audience,
			Algorithms: []string{EdDSA, ES256, RS256, PS256}, Replay: new(MemoryReplayStore), Now: fixedClock(t0)}
		for _, kid := range kids[:min(len(kids), 3)] {
			iss := *signers[ks.lookup(kid).kind]
			iss.KeyID = kid
			ch, _, err := iss.Issue(stdRequest)
			if err != nil {
				t.Fatal(err)
			}
			if c, err := v.Verify(context.Background(), ch); err == nil && !sameKey(ks.lookup(kid), &keyEntry{kind: ks.lookup(kid).kind, alg: ks.lookup(kid).alg, pub: iss.Key.Public()}) {
				t.Fatalf("kid %q: a challenge signed by another key accepted: %+v", kid, c)
			}
		}
	})
}
