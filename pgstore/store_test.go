package pgstore_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
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
		require.Equal(t, len(pgstore.Migrations), v)
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
		s.Close() // waits for the sweep the writes started
		pool, err := pgxpool.New(ctx, dsn)
		require.NoError(t, err)
		defer pool.Close()
		var n int
		require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM scepkit_claims WHERE id = 'old'").Scan(&n))
		require.Zero(t, n)
		require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM scepkit_transactions").Scan(&n))
		require.Zero(t, n)
	})

	// A database a newer release migrated is refused, matching ErrNewerSchema, and
	// left as it was: an older binary must not write what it does not know.
	t.Run("newer-schema-refused", func(t *testing.T) {
		dsn := srv.NewDatabase(t)
		open(t, dsn).Close()
		pool, err := pgxpool.New(ctx, dsn)
		require.NoError(t, err)
		defer pool.Close()
		_, err = pool.Exec(ctx, "INSERT INTO scepkit_schema (version) VALUES ($1)", len(pgstore.Migrations)+1)
		require.NoError(t, err)
		_, err = pgstore.Open(ctx, dsn, nil)
		require.ErrorIs(t, err, pgstore.ErrNewerSchema)
		require.NotErrorIs(t, err, pgstore.ErrConnString)
		var n int
		require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM scepkit_schema").Scan(&n))
		require.Equal(t, len(pgstore.Migrations)+1, n)
	})

	t.Run("long-ids-have-their-own-keys", func(t *testing.T) { longIDsHaveTheirOwnKeys(t, srv) })
	t.Run("gateways-minutes-apart", func(t *testing.T) { gatewaysMinutesApart(t, srv) })
	t.Run("migration-from-version-1", func(t *testing.T) { migrationFromVersion1(t, srv) })
	t.Run("sweep-skips-locked-rows", func(t *testing.T) { sweepSkipsLockedRows(t, srv) })
	t.Run("sweep-does-not-delay-writes", func(t *testing.T) { sweepDoesNotDelayWrites(t, srv) })

	// Ids, users and devices are data, never SQL: every statement is parameterised.
	t.Run("hostile-strings-are-data", func(t *testing.T) {
		s := open(t, srv.NewDatabase(t))
		exp := time.Now().Add(time.Hour)
		for _, v := range []string{"'); DROP TABLE scepkit_claims; --", `\'; DELETE FROM scepkit_transactions; --`,
			"$1", "x' OR '1'='1", "nul\x00byte", "not utf-8 \xff"} {
			require.NoError(t, s.Claim(ctx, v, exp))
			require.ErrorIs(t, s.Claim(ctx, v, exp), challenge.ErrReplayed)
			require.NoError(t, s.Put(ctx, &crp.Record{TransactionID: v, Status: scep.Pending, Expires: exp}))
			r, err := s.Get(ctx, v)
			require.NoError(t, err)
			require.Equal(t, v, r.TransactionID)
			if utf8.ValidString(v) && !strings.Contains(v, "\x00") {
				list, err := s.Certificates(ctx, crp.CertificateQuery{UserID: v, DeviceID: v})
				require.NoError(t, err)
				require.Empty(t, list)
			}
		}
		pending, err := s.Pending(ctx, "", 0)
		require.NoError(t, err)
		require.Len(t, pending, 6, "every record is still there")
	})

	// A pool of one connection serves many concurrent callers (none keeps a
	// connection while waiting for another): one claim wins, the others are
	// replays, and nothing deadlocks.
	t.Run("one-connection-many-callers", func(t *testing.T) {
		s := open(t, srv.NewDatabase(t)+"&pool_max_conns=1")
		var wg sync.WaitGroup
		results := make(chan error, 64)
		for i := range 64 {
			wg.Go(func() {
				if i%2 == 0 {
					results <- s.Claim(ctx, "contended", time.Now().Add(time.Hour))
					return
				}
				_, err := s.Pending(ctx, "", 0)
				results <- err
			})
		}
		wg.Wait()
		close(results)
		won := 0
		for err := range results {
			if err == nil {
				won++
				continue
			}
			require.ErrorIs(t, err, challenge.ErrReplayed)
		}
		require.Equal(t, 1+32, won, "one claim and every listing")
	})

	// With the server down every method fails (no claim is ever granted), and the
	// store works again when it is back.
	t.Run("outage", func(t *testing.T) {
		s := open(t, srv.NewDatabase(t))
		require.NoError(t, s.Claim(ctx, "before", time.Now().Add(time.Hour)))
		require.NoError(t, s.Ping(ctx))
		srv.Stop()
		require.Error(t, s.Ping(ctx), "crp.Pinger: the outage is seen before the CA signs")
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

// Ids longer than 128 bytes are kept under their SHA-256; a literal id that reads
// like such a key must not name the hashed one (a client chooses its transactionID:
// it could otherwise reach another device's record, or find a challenge "replayed"
// that was never used), and a long id is listed as itself.
func longIDsHaveTheirOwnKeys(t *testing.T, srv *pgtest.Server) {
	ctx := context.Background()
	s, err := pgstore.Open(ctx, srv.NewDatabase(t), nil)
	require.NoError(t, err)
	defer s.Close()
	long := strings.Repeat("x", 200)
	sum := sha256.Sum256([]byte(long))
	lookalike := "sha256:" + hex.EncodeToString(sum[:])
	exp := time.Now().Add(time.Hour)

	require.NoError(t, s.Put(ctx, &crp.Record{TransactionID: long, Status: scep.Pending, SignerKey: []byte("device"),
		CSR: []byte{1}, Expires: exp}))
	_, err = s.Get(ctx, lookalike)
	require.ErrorIs(t, err, crp.ErrNotFound, "a literal id reached the record of a hashed one")
	got, err := s.Get(ctx, long)
	require.NoError(t, err)
	require.Equal(t, long, got.TransactionID)
	pending, err := s.Pending(ctx, "", 0)
	require.NoError(t, err)
	require.Len(t, pending, 1)
	require.Equal(t, long, pending[0].TransactionID, "a pending request is listed under its own transactionID")

	require.NoError(t, s.Claim(ctx, long, exp))
	require.NoError(t, s.Claim(ctx, lookalike, exp), "a fresh id was refused as replayed")
	require.ErrorIs(t, s.Claim(ctx, long, exp), challenge.ErrReplayed)
	require.ErrorIs(t, s.Claim(ctx, lookalike, exp), challenge.ErrReplayed)
	require.NoError(t, s.Release(ctx, lookalike))
	require.ErrorIs(t, s.Claim(ctx, long, exp), challenge.ErrReplayed, "releasing the look-alike released the long id")
}

// A server that stops answering (frozen, or a network that drops packets) costs a
// caller at most Options.Timeout: the call fails (it is not a replay, nor "not
// found"), the connection is not left holding the pool, and the store works when the
// server answers again.
func TestHungServerTimesOut(t *testing.T) {
	srv := pgtest.Start(t)
	ctx := context.Background()
	const timeout = 500 * time.Millisecond
	s, err := pgstore.Open(ctx, srv.NewDatabase(t), &pgstore.Options{Timeout: timeout})
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.Claim(ctx, "before", time.Now().Add(time.Hour)))

	srv.Freeze()
	thawed := false
	defer func() {
		if !thawed {
			srv.Thaw()
		}
	}()
	calls := map[string]func() error{
		"claim": func() error { return s.Claim(ctx, "during", time.Now().Add(time.Hour)) },
		"get":   func() error { _, err := s.Get(ctx, "x"); return err },
		"put":   func() error { return s.Put(ctx, &crp.Record{TransactionID: "y", Status: scep.Pending}) },
	}
	for name, call := range calls {
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- call() }()
		select {
		case err := <-done:
			require.Error(t, err, name)
			require.NotErrorIs(t, err, challenge.ErrReplayed, name)
			require.NotErrorIs(t, err, crp.ErrNotFound, name)
			require.Less(t, time.Since(start), 5*timeout, name)
		case <-time.After(10 * timeout):
			srv.Thaw()
			thawed = true
			t.Fatalf("%s: still waiting for a frozen server after %v", name, 10*timeout)
		}
	}
	srv.Thaw()
	thawed = true
	// (The claim of "during" that timed out may still have been applied when the
	// server woke up: the challenge is then burnt, never granted twice.)
	require.Eventually(t, func() bool { return s.Claim(ctx, "after", time.Now().Add(time.Hour)) == nil },
		10*time.Second, 100*time.Millisecond)
	require.ErrorIs(t, s.Claim(ctx, "before", time.Now().Add(time.Hour)), challenge.ErrReplayed)
}

// Opening a store is bounded by Options.Timeout too, waiting for the schema lock
// included: a gateway started while PostgreSQL hangs, or while another session holds
// the schema lock (a gateway stopped or hung in the middle of a migration), fails
// with an error that says what it waited for, rather than waiting without a word for
// as long as that lasts (scepkit serve passes a context without a deadline: it hung
// at start until killed). The DSN has no connect_timeout, as an operator's need not.
func TestOpenBounded(t *testing.T) {
	srv := pgtest.Start(t)
	ctx := context.Background()
	const timeout = 500 * time.Millisecond
	for _, c := range []struct {
		name string
		hold func(t *testing.T, dsn string) (release func())
		says string
	}{
		{"server frozen", func(t *testing.T, dsn string) func() {
			srv.Freeze()
			return srv.Thaw
		}, "connecting"},
		{"schema lock held", func(t *testing.T, dsn string) func() {
			conn, err := pgx.Connect(ctx, dsn)
			require.NoError(t, err)
			tx, err := conn.Begin(ctx)
			require.NoError(t, err)
			_, err = tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(pgstore.MigrationLock))
			require.NoError(t, err)
			return func() { tx.Rollback(ctx); conn.Close(ctx) }
		}, "schema lock"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dsn := withoutConnectTimeout(t, srv.NewDatabase(t))
			release := c.hold(t, dsn)
			released := false
			defer func() {
				if !released {
					release()
				}
			}()
			done := make(chan error, 1)
			start := time.Now()
			go func() {
				s, err := pgstore.Open(ctx, dsn, &pgstore.Options{Timeout: timeout})
				if err == nil {
					s.Close()
				}
				done <- err
			}()
			select {
			case err := <-done:
				require.Error(t, err)
				require.Contains(t, err.Error(), c.says)
				require.Less(t, time.Since(start), 5*timeout)
			case <-time.After(10 * timeout):
				release()
				released = true
				<-done
				t.Fatalf("Open still waiting after %v", 10*timeout)
			}
			release()
			released = true
			s, err := pgstore.Open(ctx, dsn, &pgstore.Options{Timeout: 10 * time.Second})
			require.NoError(t, err, "once the server answers and the lock is free")
			s.Close()
		})
	}
}

// withoutConnectTimeout is dsn without its connect_timeout parameter.
func withoutConnectTimeout(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	q := u.Query()
	q.Del("connect_timeout")
	u.RawQuery = q.Encode()
	return u.String()
}

// A database at schema version 1, with a record and a claim in it, is migrated on
// open (once, by gateways opening it at once) and its rows still read.
func migrationFromVersion1(t *testing.T, srv *pgtest.Server) {
	ctx := context.Background()
	dsn := srv.NewDatabase(t)
	pool, err := pgxpool.New(ctx, dsn)
	require.NoError(t, err)
	defer pool.Close()
	long := strings.Repeat("y", 150)
	sum := sha256.Sum256([]byte(long))
	for _, sql := range []string{
		`CREATE TABLE scepkit_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
		pgstore.Migrations[0],
		`INSERT INTO scepkit_schema (version) VALUES (1)`,
		// As version 1 wrote them: a short id as itself, a long one as its hash.
		`INSERT INTO scepkit_transactions (id, signer_key, status, csr, expires)
			VALUES ('tx-v1', '\x01', 3, '\x02', now() + interval '1 hour')`,
		`INSERT INTO scepkit_transactions (id, signer_key, status, csr, expires)
			VALUES ('sha256:` + hex.EncodeToString(sum[:]) + `', '\x01', 3, '\x02', now() + interval '1 hour')`,
		`INSERT INTO scepkit_claims (id, until) VALUES ('jti-v1', now() + interval '1 hour')`,
	} {
		_, err := pool.Exec(ctx, sql)
		require.NoError(t, err)
	}
	var wg sync.WaitGroup
	stores := make([]*pgstore.Store, 3)
	errs := make([]error, 3)
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = pgstore.Open(ctx, dsn, nil) })
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err)
		defer stores[i].Close()
	}
	s := stores[0]
	v, err := s.SchemaVersion(ctx)
	require.NoError(t, err)
	require.Equal(t, len(pgstore.Migrations), v)
	var applied int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM scepkit_schema").Scan(&applied))
	require.Equal(t, len(pgstore.Migrations), applied, "each version applied once")
	for _, id := range []string{"tx-v1", long} {
		r, err := s.Get(ctx, id)
		require.NoError(t, err, id)
		require.Equal(t, id, r.TransactionID)
		require.Equal(t, scep.Pending, r.Status)
	}
	pending, err := s.Pending(ctx, "", 0)
	require.NoError(t, err)
	require.Len(t, pending, 2)
	require.ErrorIs(t, s.Claim(ctx, "jti-v1", time.Now().Add(time.Hour)), challenge.ErrReplayed)
	// Rewritten by this version, the long id is listed as itself.
	r, err := s.Get(ctx, long)
	require.NoError(t, err)
	require.NoError(t, s.Put(ctx, r))
	pending, err = s.Pending(ctx, "", 0)
	require.NoError(t, err)
	require.Equal(t, long, pending[0].TransactionID)
}
