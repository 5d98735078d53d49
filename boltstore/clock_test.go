package boltstore_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/boltstore"
	"github.com/scepkit/scepkit/challenge"
)

// steppedClock is a clock a test sets.
type steppedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *steppedClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *steppedClock) Set(t time.Time)     { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func (c *steppedClock) Add(d time.Duration) { c.Set(c.Now().Add(d)) }

// TestClaimSurvivesClockStep: the gateway's clock steps forward two hours (a virtual
// machine resumed with its host's time, say), writes in that time sweep the expired
// claims, and the clock steps back. A challenge used before the step is still within
// its hour by the clock after it, and must be refused as replayed: before claims
// carried challenge.ClaimMargin, the sweep had deleted its claim and it passed again.
func TestClaimSurvivesClockStep(t *testing.T) {
	ctx := context.Background()
	t0 := time.Now().Truncate(time.Second)
	clk := &steppedClock{t: t0}
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "state.db"), &boltstore.Options{Now: clk.Now})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })

	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	ks := challenge.NewKeySet()
	_, err = ks.AddKey(key.Public())
	require.NoError(t, err)
	iss := &challenge.Issuer{Name: "mdm.example", Key: key, Now: clk.Now}
	v := &challenge.Verifier{Keys: ks, Issuer: "mdm.example", Audience: "gw.example", Replay: s, Now: clk.Now}
	ch, _, err := iss.Issue(challenge.Request{UserID: "u1", Audience: "gw.example"})
	require.NoError(t, err)

	clk.Add(10 * time.Minute)
	_, err = v.Verify(ctx, ch)
	require.NoError(t, err)

	clk.Add(2 * time.Hour)
	for i := range 4 * 64 {
		require.NoError(t, s.Claim(ctx, fmt.Sprint("other-", i), clk.Now().Add(time.Hour)))
	}

	clk.Set(t0.Add(11 * time.Minute))
	_, err = v.Verify(ctx, ch)
	require.ErrorIs(t, err, challenge.ErrReplayed)
}
