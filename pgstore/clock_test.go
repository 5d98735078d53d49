package pgstore_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/internal/pgtest"
	"github.com/scepkit/scepkit/pgstore"
)

// gatewaysMinutesApart: two gateways share one database, gateway A's clock ten
// minutes ahead of B's. pgstore expires claims by the clock of the gateway that
// writes (not PostgreSQL's now()), so A's sweeps delete what B still protects unless
// a claim outlives its challenge by more than the clocks disagree. B accepts a
// challenge two minutes before it expires, A sweeps, and the device presents the same
// challenge at B again within its validity: it must be refused as replayed. Before
// claims carried challenge.ClaimMargin, A's sweep deleted B's claim and it passed.
func gatewaysMinutesApart(t *testing.T, srv *pgtest.Server) {
	ctx := context.Background()
	dsn := srv.NewDatabase(t)
	now := time.Now()
	aheadClock := func() time.Time { return time.Now().Add(10 * time.Minute) }
	a, err := pgstore.Open(ctx, dsn, &pgstore.Options{Now: aheadClock})
	require.NoError(t, err)
	t.Cleanup(a.Close)
	b, err := pgstore.Open(ctx, dsn, nil)
	require.NoError(t, err)
	t.Cleanup(b.Close)

	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	ks := challenge.NewKeySet()
	_, err = ks.AddKey(key.Public())
	require.NoError(t, err)
	// Issued 58 minutes ago by the MDM: two minutes left.
	iss := &challenge.Issuer{Name: "mdm.example", Key: key, Now: func() time.Time { return now.Add(-58 * time.Minute) }}
	ch, _, err := iss.Issue(challenge.Request{UserID: "u1", Audience: "gw.example"})
	require.NoError(t, err)
	verifier := func(s *pgstore.Store) *challenge.Verifier {
		return &challenge.Verifier{Keys: ks, Issuer: "mdm.example", Audience: "gw.example", Replay: s}
	}
	_, err = verifier(b).Verify(ctx, ch)
	require.NoError(t, err)

	// Gateway A's enrollments: enough writes to sweep, by A's clock.
	for i := range 2 * pgstore.SweepEvery {
		require.NoError(t, a.Claim(ctx, fmt.Sprint("a-", i), aheadClock().Add(time.Hour)))
	}
	a.Close() // waits for the sweeps the writes started

	v := verifier(b)
	_, err = v.Check(ctx, ch)
	require.NoError(t, err, "still valid by B's clock")
	_, err = v.Verify(ctx, ch)
	require.ErrorIs(t, err, challenge.ErrReplayed)
}
