package pgstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/internal/pgtest"
	"github.com/scepkit/scepkit/pgstore"
)

// TestMigrationDoesNotHoldTablesBehindAReader: a gateway of the new release migrates a
// version-1 database while a long reader (pg_dump, a report) holds ACCESS SHARE on
// scepkit_certificates. The migration locks scepkit_transactions (version 2) before it
// waits for scepkit_certificates (version 5); while it waits, every statement of the
// gateways still running on the tables it holds queues behind it. Its waits for a
// table are bounded and it gives its locks back between tries, so a gateway's read of
// a transaction record returns while the reader still holds its lock and the migration
// is still trying; once the reader ends the migration completes. Before, the read
// waited until the migration gave up (Options.Timeout, 5 s by default: issuance writes
// timing out, certificates withheld at every gateway) and the gateway did not start.
func TestMigrationDoesNotHoldTablesBehindAReader(t *testing.T) {
	srv := pgtest.Start(t)
	ctx := context.Background()
	dsn := srv.NewDatabase(t)
	pool, err := pgxpool.New(ctx, dsn)
	require.NoError(t, err)
	defer pool.Close()
	for _, sql := range []string{
		`CREATE TABLE scepkit_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
		pgstore.Migrations[0],
		`INSERT INTO scepkit_schema (version) VALUES (1)`,
		`INSERT INTO scepkit_transactions (id, status, expires) VALUES ('tx-v1', 3, now() + interval '1 hour')`,
	} {
		_, err := pool.Exec(ctx, sql)
		require.NoError(t, err)
	}

	reader, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer reader.Close(ctx)
	rtx, err := reader.Begin(ctx)
	require.NoError(t, err)
	_, err = rtx.Exec(ctx, "SELECT count(*) FROM scepkit_certificates")
	require.NoError(t, err)
	held := true
	defer func() {
		if held {
			rtx.Rollback(ctx)
		}
	}()

	opened := make(chan error, 1)
	go func() {
		s, err := pgstore.Open(ctx, dsn, &pgstore.Options{Timeout: 10 * time.Second})
		if err == nil {
			s.Close()
		}
		opened <- err
	}()
	// The migration is waiting for the reader's table.
	require.Eventually(t, func() bool {
		var waiting bool
		err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted
			AND relation = 'scepkit_certificates'::regclass AND mode = 'AccessExclusiveLock')`).Scan(&waiting)
		return err == nil && waiting
	}, 15*time.Second, 5*time.Millisecond, "the migration never waited for scepkit_certificates")

	// A gateway of the old release reads a record meanwhile.
	read := make(chan error, 1)
	go func() {
		var status int
		read <- pool.QueryRow(ctx, "SELECT status FROM scepkit_transactions WHERE id = 'tx-v1'").Scan(&status)
	}()
	select {
	case err := <-read:
		require.NoError(t, err)
	case err := <-opened:
		t.Fatalf("the migration ended (%v) before a gateway could read a transaction record: it held the table while it waited", err)
	}
	select {
	case err := <-opened:
		t.Fatalf("the migration ended (%v) while the reader still held its lock", err)
	default:
	}

	require.NoError(t, rtx.Rollback(ctx))
	held = false
	require.NoError(t, <-opened, "the migration gave up waiting for the reader")
	var v int
	require.NoError(t, pool.QueryRow(ctx, "SELECT max(version) FROM scepkit_schema").Scan(&v))
	require.Equal(t, len(pgstore.Migrations), v)
}
