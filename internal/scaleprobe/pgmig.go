package main

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/scepkit/scepkit/pgstore"
)

// pgMigration: the database at dsn (a copy of the 1M inventory) is taken back to
// schema version 1 (its later columns dropped), then migrated by pgstore.Open while
// another "gateway" (plain SQL on its own pool) claims and reads by serial. With
// hold, a third session holds ACCESS SHARE on scepkit_certificates (as pg_dump does)
// for hold while the migration starts.
func pgMigration(dsn string, hold time.Duration) error {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	for _, q := range []string{
		"ALTER TABLE scepkit_transactions DROP COLUMN IF EXISTS tx_id",
		"ALTER TABLE scepkit_revocations DROP COLUMN IF EXISTS issuer",
		"ALTER TABLE scepkit_transactions DROP COLUMN IF EXISTS ca",
		"ALTER TABLE scepkit_certificates DROP COLUMN IF EXISTS withheld",
		"DELETE FROM scepkit_schema WHERE version > 1",
	} {
		if _, err := c.Exec(ctx, q); err != nil {
			return err
		}
	}
	rel := func() string {
		var out []string
		rows, _ := c.Query(ctx, "SELECT relname::text, pg_relation_filenode(oid)::bigint FROM pg_class WHERE relname IN ('scepkit_certificates','scepkit_transactions','scepkit_revocations') ORDER BY relname")
		for rows.Next() {
			var n string
			var f int64
			rows.Scan(&n, &f)
			out = append(out, fmt.Sprintf("%s=%d", n, f))
		}
		return strings.Join(out, " ")
	}
	fmt.Println("before:", rel())
	other, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer other.Close()
	var stop atomic.Bool
	var wg sync.WaitGroup
	var mu sync.Mutex
	worst := map[string]time.Duration{}
	loop := func(name, sql string, arg func(i int) []any) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				t := time.Now()
				other.Exec(ctx, sql, arg(i)...)
				d := time.Since(t)
				mu.Lock()
				if d > worst[name] {
					worst[name] = d
				}
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	loop("claim", "INSERT INTO scepkit_claims (id, until) VALUES ($1, now() + interval '1 hour') ON CONFLICT DO NOTHING",
		func(i int) []any { return []any{fmt.Sprint("mig-", time.Now().UnixNano())} })
	loop("record read", "SELECT 1 FROM scepkit_transactions WHERE id = $1", func(i int) []any { return []any{"nope"} })
	loop("lookup", "SELECT der FROM scepkit_certificates WHERE serial = 12345", func(i int) []any { return nil })
	time.Sleep(500 * time.Millisecond)
	if hold > 0 {
		r, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer r.Close(ctx)
		tx, err := r.Begin(ctx)
		if err != nil {
			return err
		}
		tx.Exec(ctx, "SELECT 1 FROM scepkit_certificates LIMIT 1")
		go func() { time.Sleep(hold); tx.Rollback(ctx) }()
		fmt.Println("a reader holds ACCESS SHARE on scepkit_certificates for", hold)
	}
	t0 := time.Now()
	s, err := pgstore.Open(ctx, dsn, nil)
	fmt.Println("pgstore.Open (migrating 1 -> 5):", time.Since(t0).Round(time.Millisecond), "err:", err)
	if s != nil {
		v, _ := s.SchemaVersion(ctx)
		fmt.Println("version", v)
		s.Close()
	}
	time.Sleep(hold + 500*time.Millisecond)
	stop.Store(true)
	wg.Wait()
	fmt.Println("after:", rel())
	fmt.Println("worst latency of the other gateway's statements during the migration:", worst)
	return nil
}
