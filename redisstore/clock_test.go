package redisstore_test

import (
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/internal/redistest"
	"github.com/scepkit/scepkit/redisstore"
)

// TestClaimOutlivesClocks: Redis expires a claim by its own clock, from a TTL the
// claiming gateway computed by its clock. Either clock may run ahead of the gateway
// the device presents the challenge to next: Redis's clock stepped forward (which
// shortens every key's remaining TTL by the step), or the claiming gateway running
// minutes ahead of another one (its TTL is short by its lead). The challenge, still
// within its validity at the slower gateway, must be refused as replayed. Before
// claims carried challenge.ClaimMargin, the key was gone and the challenge passed.
//
// The passing of time on Redis's side is played by shortening the claim keys' TTLs:
// libfaketime cannot run Debian's redis-server (its jemalloc recurses into
// clock_gettime at start), and what a clock step does to a key is exactly that.
func TestClaimOutlivesClocks(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	ks := challenge.NewKeySet()
	_, err := ks.AddKey(key.Public())
	require.NoError(t, err)

	for _, tc := range []struct {
		name string
		// lead is how far the claiming gateway's clock runs ahead of the other's;
		// elapsed is the time until the device presents the challenge again at the
		// other gateway, and redisStep how far Redis's clock stepped forward meanwhile.
		lead, elapsed, redisStep time.Duration
	}{
		{"Redis's clock steps forward 2 h", 0, time.Minute, 2 * time.Hour},
		{"Redis's clock steps forward 14 h", 0, time.Minute, 14 * time.Hour},
		{"claiming gateway 10 min ahead", 10 * time.Minute, 55 * time.Minute, 0},
		{"claiming gateway 1 min ahead, last seconds", time.Minute, 60*time.Minute + 20*time.Second, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := srv.Client(t)
			prefix := "clock:" + tc.name + ":"
			t0 := time.Now().Truncate(time.Second)
			clk := t0
			iss := &challenge.Issuer{Name: "mdm.example", Key: key, Now: func() time.Time { return t0 }}
			ch, _, err := iss.Issue(challenge.Request{UserID: "u1", Audience: "gw.example"})
			require.NoError(t, err)
			ahead := func() time.Time { return clk.Add(tc.lead) }
			a := &challenge.Verifier{Keys: ks, Issuer: "mdm.example", Audience: "gw.example", Now: ahead,
				Replay: &redisstore.Store{Client: c, Prefix: prefix, Now: ahead}}
			b := &challenge.Verifier{Keys: ks, Issuer: "mdm.example", Audience: "gw.example", Now: func() time.Time { return clk },
				Replay: &redisstore.Store{Client: c, Prefix: prefix, Now: func() time.Time { return clk }}}
			_, err = a.Verify(ctx, ch)
			require.NoError(t, err)

			clk = clk.Add(tc.elapsed)
			keys, err := c.Keys(ctx, prefix+"claim:*").Result()
			require.NoError(t, err)
			require.Len(t, keys, 1)
			ttl := c.PTTL(ctx, keys[0]).Val() - tc.elapsed - tc.redisStep
			if ttl <= 0 {
				require.NoError(t, c.Del(ctx, keys[0]).Err())
			} else {
				require.True(t, c.PExpire(ctx, keys[0], ttl).Val())
			}

			_, err = b.Check(ctx, ch)
			require.NoError(t, err, "still valid at the other gateway")
			_, err = b.Verify(ctx, ch)
			require.ErrorIs(t, err, challenge.ErrReplayed)
		})
	}
}
