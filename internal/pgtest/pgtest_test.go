package pgtest_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/scepkit/scepkit/internal/pgtest"
)

// The server answers, survives a restart with its data, and Kill then Restart
// recovers.
func TestServer(t *testing.T) {
	s := pgtest.Start(t)
	ctx := context.Background()
	dsn := s.NewDatabase(t)
	exec := func(sql string) {
		t.Helper()
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	exec("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
	s.Stop()
	if _, err := pgx.Connect(ctx, dsn); err == nil {
		t.Fatal("connected to a stopped server")
	}
	s.Restart()
	exec("INSERT INTO t VALUES (2)")
	s.Kill()
	s.Restart()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 2 {
		t.Fatalf("after a crash: %d rows, %v", n, err)
	}
}
