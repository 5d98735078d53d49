package pgstore_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/storetest"
	"github.com/scepkit/scepkit/internal/pgtest"
	"github.com/scepkit/scepkit/pgstore"
	"github.com/scepkit/scepkit/scep"
)

// One server for the package's tests (starting one takes seconds).
func TestPostgres(t *testing.T) {
	srv := pgtest.Start(t)
	ctx := context.Background()
	open := func(t *testing.T, dsn string) *pgstore.Store {
		s, err := pgstore.Open(ctx, dsn, nil)
		require.NoError(t, err)
		t.Cleanup(s.Close)
		return s
	}

	t.Run("conformance", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) storetest.Backend {
			return storetest.Of(open(t, srv.NewDatabase(t)))
		})
	})

	// The schema is created once, whoever starts first: gateways opening one new
	// database at the same moment all succeed, and it is at the latest version.
	t.Run("migration-concurrent-idempotent", func(t *testing.T) {
		dsn := srv.NewDatabase(t)
		var wg sync.WaitGroup
		errs := make(chan error, 6)
		for i := 0; i < 6; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := pgstore.Open(ctx, dsn, nil)
				if err == nil {
					s.Close()
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		s := open(t, dsn)
		v, err := s.SchemaVersion(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, v)
	})

	// A store over the caller's pool does not close it.
	t.Run("new-over-pool", func(t *testing.T) {
		pool, err := pgxpool.New(ctx, srv.NewDatabase(t))
		require.NoError(t, err)
		defer pool.Close()
		s, err := pgstore.New(ctx, pool, nil)
		require.NoError(t, err)
		s.Close()
		require.NoError(t, pool.Ping(ctx))
	})

	// Expired claims and records are deleted by later writes.
	t.Run("sweep", func(t *testing.T) {
		now := time.Now()
		dsn := srv.NewDatabase(t)
		s, err := pgstore.Open(ctx, dsn, &pgstore.Options{Now: func() time.Time { return now }})
		require.NoError(t, err)
		defer s.Close()
		require.NoError(t, s.Claim(ctx, "old", now.Add(time.Minute)))
		require.NoError(t, s.Put(ctx, &crp.Record{TransactionID: "old", Status: scep.Pending, Expires: now.Add(time.Minute)}))
		now = now.Add(time.Hour)
		for i := 0; i < pgstore.SweepEvery; i++ {
			require.NoError(t, s.Claim(ctx, "new-"+time.Duration(i).String(), now.Add(time.Hour)))
		}
		pool, err := pgxpool.New(ctx, dsn)
		require.NoError(t, err)
		defer pool.Close()
		var n int
		require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM scepkit_claims WHERE id = 'old'").Scan(&n))
		require.Zero(t, n)
		require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM scepkit_transactions").Scan(&n))
		require.Zero(t, n)
	})

	// With the server down every method fails (no claim is ever granted), and the
	// store works again when it is back.
	t.Run("outage", func(t *testing.T) {
		s := open(t, srv.NewDatabase(t))
		require.NoError(t, s.Claim(ctx, "before", time.Now().Add(time.Hour)))
		srv.Stop()
		err := s.Claim(ctx, "during", time.Now().Add(time.Hour))
		require.Error(t, err)
		require.False(t, errors.Is(err, challenge.ErrReplayed))
		_, err = s.Get(ctx, "x")
		require.Error(t, err)
		require.False(t, errors.Is(err, crp.ErrNotFound), "an outage is not 'not found'")
		srv.Restart()
		require.Eventually(t, func() bool { return s.Claim(ctx, "during", time.Now().Add(time.Hour)) == nil },
			10*time.Second, 100*time.Millisecond)
		require.ErrorIs(t, s.Claim(ctx, "before", time.Now().Add(time.Hour)), challenge.ErrReplayed)
	})
}
