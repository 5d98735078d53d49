package challenge

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestClaimOutlivesClockDisagreement: a challenge used once must not pass again when
// the clock that sweeps the replay store runs ahead of the clock that verifies: the
// gateway's clock stepped forward (an NTP correction, a VM resumed with the host's
// time) and back, or another gateway sharing the store runs minutes ahead. Until the
// claim kept exactly exp plus the leeway, the sweep under the faster clock forgot it
// while the slower clock still accepted the challenge, and a used challenge issued a
// second certificate.
func TestClaimOutlivesClockDisagreement(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// Relative to the challenge's iat: when it is used, when the store is
		// swept (by the faster clock), when it is presented again (by the slower).
		used, swept, again time.Duration
	}{
		{"clock stepped forward 2 min and back", 59 * time.Minute, 62 * time.Minute, 59*time.Minute + 30*time.Second},
		{"clock stepped forward 2 h and back", 10 * time.Minute, 2*time.Hour + 10*time.Minute, 11 * time.Minute},
		{"clock stepped forward 14 h (local time taken for UTC) and back", 5 * time.Minute, 14*time.Hour + 5*time.Minute, 6 * time.Minute},
		{"gateway 5 min ahead sweeps the shared store", 58 * time.Minute, 64 * time.Minute, 59 * time.Minute},
		{"store clock 90 s ahead, at the leeway's edge", 60 * time.Minute, 61*time.Minute + 31*time.Second, 60*time.Minute + 29*time.Second},
		{"used in its last second, swept a day later", 60*time.Minute + 29*time.Second, 24*time.Hour + 59*time.Minute, 60*time.Minute + 29*time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			ch, _, err := testIssuer(edKey).Issue(stdRequest)
			require.NoError(t, err)
			clk := &clock{t: t0.Add(tc.used)}
			store := &MemoryReplayStore{Now: clk.Now}
			v := testVerifier(t, edKey)
			v.Replay, v.Now = store, clk.Now
			_, err = v.Verify(ctx, ch)
			require.NoError(t, err, "first use")

			// The faster clock: other challenges are claimed, and their claims sweep
			// the expired entries of every shard.
			clk.Add(tc.swept - tc.used)
			for i := range 64 * sweepBudget * 4 {
				require.NoError(t, store.Claim(ctx, fmt.Sprint("other-", i), clk.Now().Add(time.Hour)))
			}

			// The slower clock: the challenge is still within exp plus the leeway.
			clk.Add(tc.again - tc.swept)
			_, err = v.Check(ctx, ch)
			require.NoError(t, err, "the challenge is still acceptable by this clock")
			_, err = v.Verify(ctx, ch)
			requireOnly(t, err, ErrReplayed)
		})
	}
}

// TestClaimRetentionBounded: whatever exp a signer writes, the claim of a challenge
// the verifier accepts covers every moment it could be accepted again (exp plus the
// leeway) and ends within an hour and two leeways of now plus ClaimMargin: a
// challenge whose exp is far ahead (an MDM bug, a hostile or compromised issuer) is
// refused before anything is claimed, since iat may not be ahead beyond the leeway
// and exp - iat may not exceed an hour.
func TestClaimRetentionBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	leeway := DefaultLeeway
	for _, tc := range []struct {
		name     string
		iat, exp time.Time
		want     error
	}{
		{"ordinary", t0, t0.Add(time.Hour), nil},
		{"iat at the leeway's edge, an hour's life", t0.Add(leeway), t0.Add(leeway + time.Hour), nil},
		{"iat beyond the leeway", t0.Add(leeway + time.Second), t0.Add(leeway + time.Second + time.Hour), ErrNotYetValid},
		{"exp a year ahead", t0, t0.AddDate(1, 0, 0), ErrLifetime},
		{"exp in 9999", t0, time.Unix(maxUnix, 0), ErrLifetime},
		{"iat and exp a year ahead", t0.AddDate(1, 0, 0), t0.AddDate(1, 0, 0).Add(time.Hour), ErrNotYetValid},
		{"issued 59 min ago, last second", t0.Add(-59 * time.Minute), t0.Add(time.Minute), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := stdClaims()
			c["iat"], c["nbf"], c["exp"] = tc.iat.Unix(), tc.iat.Unix(), tc.exp.Unix()
			ch := forge(t, edHeader(t), c, EdDSA, edKey)
			var until time.Time
			v := testVerifier(t, edKey)
			v.Replay = ReplayFunc(func(_ context.Context, _ string, u time.Time) error { until = u; return nil })
			_, err := v.Verify(ctx, ch)
			if tc.want != nil {
				requireOnly(t, err, tc.want)
				require.True(t, until.IsZero(), "nothing claimed")
				return
			}
			require.NoError(t, err)
			require.False(t, until.Before(tc.exp.Add(leeway)), "covers the challenge's last acceptable moment")
			require.LessOrEqual(t, until.Sub(t0), MaxLifetime+2*leeway+ClaimMargin, "bounded")
		})
	}
}
