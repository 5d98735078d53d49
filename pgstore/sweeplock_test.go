package pgstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/internal/pgtest"
	"github.com/scepkit/scepkit/pgstore"
	"github.com/scepkit/scepkit/scep"
)

// sweepSkipsLockedRows: another session holds the row of an expired claim and of an
// expired record (a second gateway's sweep deleting them, a claim taken again). The
// write that sweeps returns while they are held, and the other expired rows are
// deleted: the sweep takes the rows no one holds. Before, it waited for the held
// rows, and the write that swept (an enrollment's claim) returned only once they
// were given back, or after Options.Timeout.
func sweepSkipsLockedRows(t *testing.T, srv *pgtest.Server) {
	ctx := context.Background()
	dsn := srv.NewDatabase(t)
	now := time.Now()
	clock := func() time.Time { return now }
	s, err := pgstore.Open(ctx, dsn, &pgstore.Options{Now: clock, Timeout: time.Minute})
	require.NoError(t, err)
	defer s.Close()
	for i := range 10 {
		id := fmt.Sprint("old-", i)
		require.NoError(t, s.Claim(ctx, id, now.Add(time.Minute)))
		require.NoError(t, s.Put(ctx, &crp.Record{TransactionID: id, Status: scep.Failure, Expires: now.Add(time.Minute)}))
	}
	pool, err := pgxpool.New(ctx, dsn)
	require.NoError(t, err)
	defer pool.Close()

	htx := holderTransaction(t, ctx, dsn)
	for _, sql := range []string{"SELECT 1 FROM scepkit_claims WHERE id = 'old-0' FOR UPDATE",
		"SELECT 1 FROM scepkit_transactions WHERE id = 'old-0' FOR UPDATE"} {
		_, err = htx.Exec(ctx, sql)
		require.NoError(t, err)
	}

	now = now.Add(time.Hour)
	wrote := make(chan error, 1)
	go func() {
		for i := range pgstore.SweepEvery {
			if err := s.Claim(ctx, fmt.Sprint("new-", i), now.Add(time.Hour)); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- nil
	}()
	waiting := make(chan struct{})
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			var n int
			if pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE NOT granted AND database =
				(SELECT oid FROM pg_database WHERE datname = current_database())
				OR NOT granted AND locktype = 'transactionid'`).Scan(&n) == nil && n > 0 {
				close(waiting)
				return
			}
		}
	}()
	select {
	case err := <-wrote:
		require.NoError(t, err)
	case <-waiting:
		t.Fatal("the sweep waits for the rows another session holds")
	}
	s.Close() // waits for the sweep
	var claims, records int
	require.NoError(t, pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM scepkit_claims WHERE id LIKE 'old-%'),
		(SELECT count(*) FROM scepkit_transactions WHERE id LIKE 'old-%')`).Scan(&claims, &records))
	require.Equal(t, 1, claims, "the expired claims no one holds are deleted")
	require.Equal(t, 1, records, "the expired records no one holds are deleted")
}

// sweepDoesNotDelayWrites: a session holds scepkit_transactions (ACCESS EXCLUSIVE),
// so that a sweep of expired records cannot run. Claims, which do not touch that
// table, still return, sweeps due among them included: the write that starts a
// sweep does not wait for it. Before, the claim that swept waited with it, as a
// sweep taking 0.6 to 1.4 s (expired rows deleted but not yet vacuumed) delayed an
// enrollment by as much, several at once.
func sweepDoesNotDelayWrites(t *testing.T, srv *pgtest.Server) {
	ctx := context.Background()
	dsn := srv.NewDatabase(t)
	s, err := pgstore.Open(ctx, dsn, &pgstore.Options{Timeout: time.Minute})
	require.NoError(t, err)
	defer s.Close()
	htx := holderTransaction(t, ctx, dsn)
	_, err = htx.Exec(ctx, "LOCK TABLE scepkit_transactions IN ACCESS EXCLUSIVE MODE")
	require.NoError(t, err)

	wrote := make(chan error, 1)
	go func() {
		for i := range 2 * pgstore.SweepEvery {
			if err := s.Claim(ctx, fmt.Sprint("c-", i), time.Now().Add(time.Hour)); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- nil
	}()
	select {
	case err := <-wrote:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("claims wait for a sweep that cannot run")
	}
	require.NoError(t, htx.Rollback(ctx))
}

// holderTransaction is a transaction open on a connection of its own to dsn, for a
// test to hold locks with; it is rolled back, and its connection closed, when the test
// ends.
func holderTransaction(t *testing.T, ctx context.Context, dsn string) pgx.Tx {
	t.Helper()
	holder, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { holder.Close(ctx) })
	htx, err := holder.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { htx.Rollback(ctx) })
	return htx
}
