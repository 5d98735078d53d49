package main

import (
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/scepkit/scepkit/pgstore"
)

// pgRetention: n expired claims and n expired records written by SQL (a fixture), then
// enrollments through the store while its sweeps delete them.
func pgRetention(dsn, fix string, n int) error {
	clk := &clock{t: time.Now()}
	cert := testCert(fix)
	s, err := pgstore.Open(ctx, dsn, &pgstore.Options{Now: clk.Now})
	if err != nil {
		return err
	}
	defer s.Close()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	count := func() string {
		var cl, tx int64
		var size string
		c.QueryRow(ctx, "SELECT (SELECT count(*) FROM scepkit_claims), (SELECT count(*) FROM scepkit_transactions), pg_size_pretty(pg_database_size(current_database()))").Scan(&cl, &tx, &size)
		return fmt.Sprintf("claims=%d records=%d db=%s", cl, tx, size)
	}
	fmt.Println("baseline, nothing expired:")
	enroll(s, clk, cert, "base", 5*time.Second, 8)
	t0 := time.Now()
	if _, err := c.Exec(ctx, `INSERT INTO scepkit_claims (id, until) SELECT 'old-'||i, $1::timestamptz + (i % 3600) * interval '1 second' FROM generate_series(1, $2) i`, clk.Now().Add(25*time.Hour), n); err != nil {
		return err
	}
	if _, err := c.Exec(ctx, `INSERT INTO scepkit_transactions (id, request, csr, status, user_id, device_id, expires, tx_id)
		SELECT 'old-'||i, $3::bytea, $4::bytea, 2, 'u', 'd', $1::timestamptz + (i % 3600) * interval '1 second', convert_to('old-'||i, 'UTF8') FROM generate_series(1, $2) i`,
		clk.Now().Add(24*time.Hour), n, request, csr); err != nil {
		return err
	}
	c.Exec(ctx, "VACUUM ANALYZE")
	fmt.Println("loaded by SQL in", time.Since(t0).Round(time.Millisecond), count())
	if _, err := s.Get(ctx, "old-1"); err != nil {
		return fmt.Errorf("public read of a loaded record: %w", err)
	}
	clk.Add(49 * time.Hour)
	fmt.Println("clock +49h: enrollments while the backlog is swept:")
	for w := range 9 {
		enroll(s, clk, cert, fmt.Sprint("sweep", w), 10*time.Second, 8)
		fmt.Println("  ", count())
	}
	return nil
}
