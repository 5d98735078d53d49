package storetest

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/scep"
)

// Release is what the devices were told by an earlier release that wrote a state a
// backend's upgrade test opens (the manifest.json beside that state in testdata).
type Release struct {
	Issued          map[string]string `json:"issued"` // transactionID: serial (hex)
	Pending         []string          `json:"pending"`
	Revoked         []string          `json:"revoked"`
	UsedChallenges  []string          `json:"used_challenges"`
	UnusedChallenge string            `json:"unused_challenge"`
}

// CheckEarlierRelease checks that s, holding the state rel wrote once this release
// opened (and upgraded) it, keeps the answers rel gave, on s's clock now: a used
// challenge is refused as replayed, the challenge never sent is taken once, each
// transaction answered with a certificate gets it (the same serial), every such
// certificate is in the inventory, not withheld, and revoked exactly if rel revoked
// it, and the revocations listed are rel's. It then decides rel's first pending
// request (a rejection) and checks that it is no longer listed, so a caller checks
// the pending list before. It returns the certificates the inventory listed.
func CheckEarlierRelease(t *testing.T, s crp.Store, rel *Release, now time.Time) []*crp.IssuedCertificate {
	t.Helper()
	ctx := context.Background()
	until := now.Add(time.Hour)

	for _, jti := range rel.UsedChallenges {
		if err := s.Claim(ctx, jti, until); !errors.Is(err, challenge.ErrReplayed) {
			t.Fatalf("challenge %s used before the upgrade: claim: %v, want ErrReplayed", jti, err)
		}
	}
	if err := s.Claim(ctx, rel.UnusedChallenge, until); err != nil {
		t.Fatalf("a challenge never sent: claim: %v", err)
	}
	if err := s.Claim(ctx, rel.UnusedChallenge, until); !errors.Is(err, challenge.ErrReplayed) {
		t.Fatalf("a challenge claimed again: %v, want ErrReplayed", err)
	}

	for tid, serial := range rel.Issued {
		r, err := s.Get(ctx, tid)
		switch {
		case err != nil:
			t.Fatalf("transaction %s: %v", tid, err)
		case r.Status != scep.Success:
			t.Fatalf("transaction %s: status %v, want SUCCESS", tid, r.Status)
		case r.Certificate == nil:
			t.Fatalf("transaction %s: no certificate", tid)
		case r.Certificate.SerialNumber.Text(16) != serial:
			t.Fatalf("transaction %s: serial %s, want %s", tid, r.Certificate.SerialNumber.Text(16), serial)
		}
	}

	certs, err := s.Certificates(ctx, crp.CertificateQuery{Limit: crp.MaxListLimit})
	if err != nil {
		t.Fatalf("certificates: %v", err)
	}
	inventory := map[string]*crp.IssuedCertificate{}
	for _, c := range certs {
		inventory[c.Certificate.SerialNumber.Text(16)] = c
	}
	for tid, serial := range rel.Issued {
		c, ok := inventory[serial]
		if !ok {
			t.Fatalf("certificate %s of transaction %s not in the inventory", serial, tid)
		}
		if c.Withheld {
			t.Fatalf("certificate %s listed withheld", serial)
		}
		revoked, err := s.IsRevoked(ctx, c.Certificate)
		if err != nil {
			t.Fatalf("certificate %s: is revoked: %v", serial, err)
		}
		if want := slices.Contains(rel.Revoked, serial); revoked != want {
			t.Fatalf("certificate %s: revoked %v, want %v", serial, revoked, want)
		}
	}
	revs, err := s.RevokedSince(ctx, time.Time{})
	if err != nil {
		t.Fatalf("revoked since: %v", err)
	}
	var revoked []string
	for _, r := range revs {
		revoked = append(revoked, r.Serial.Text(16))
	}
	if !reflect.DeepEqual(rel.Revoked, revoked) {
		t.Fatalf("revocations listed %v, want %v", revoked, rel.Revoked)
	}

	// A pending request is decided once: the first decision's record wins.
	r, err := s.Get(ctx, rel.Pending[0])
	if err != nil {
		t.Fatalf("transaction %s: %v", rel.Pending[0], err)
	}
	r.Status, r.Reason = scep.Failure, crp.ReasonRejected
	if err := s.Put(ctx, r); err != nil {
		t.Fatalf("transaction %s: rejecting: %v", rel.Pending[0], err)
	}
	pending, err := s.Pending(ctx, "", 0)
	if err != nil {
		t.Fatalf("pending: %v", err)
	}
	if len(pending) != len(rel.Pending)-1 {
		t.Fatalf("%d pending once one was decided, want %d", len(pending), len(rel.Pending)-1)
	}
	return certs
}
