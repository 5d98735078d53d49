package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/internal/pgtest"
)

// TestPostgresExitStatus: a start refused for postgres.dsn exits 2 when a restart
// would fail the same way (the string does not parse; the database's schema is newer
// than this version knows, which it must not write), 1 when the database may come
// up later (not reachable, not answering), within a bound and without the DSN's
// password in what it prints. Before, every one exited 1, so systemd restarted the
// gateway every few seconds for good; and one started while PostgreSQL hung waited
// without a word until killed.
func TestPostgresExitStatus(t *testing.T) {
	pg := pgtest.Start(t)
	f := newFixture(t)
	cfg := f.config(t, "", "")
	const secret = "S3cr3tPW"
	newer := pg.NewDatabase(t)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, newer)
	require.NoError(t, err)
	for _, sql := range []string{
		`CREATE TABLE scepkit_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
		`INSERT INTO scepkit_schema (version) SELECT generate_series(1, 99)`,
	} {
		_, err := c.Exec(ctx, sql)
		require.NoError(t, err)
	}
	c.Close(ctx)
	frozen := strings.Replace(pg.NewDatabase(t), "&connect_timeout=2", "", 1)

	cases := []struct {
		name   string
		dsn    string
		freeze bool
		want   int
		says   string
	}{
		{"does not parse", "host=127.0.0.1 password = " + secret + " sslmode=bogus", false, exitConfig, "sslmode is invalid"},
		{"schema newer", newer, false, exitConfig, "newer"},
		{"not reachable", "postgres://scepkit:" + secret + "@127.0.0.1:1/scepkit?connect_timeout=2", false, exitFailure, "connecting"},
		{"not answering", frozen, true, exitFailure, "connecting"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.freeze {
				pg.Freeze()
				defer pg.Thaw()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "serve", "-config", cfg)
			cmd.Env = append(os.Environ(), "SCEPKIT_POSTGRES_DSN="+tc.dsn)
			out, err := cmd.CombinedOutput()
			require.NoError(t, ctx.Err(), "still starting after 30 s: %s", out)
			ee := (*exec.ExitError)(nil)
			require.True(t, errors.As(err, &ee), "%v: %s", err, out)
			require.Equal(t, tc.want, ee.ExitCode(), string(out))
			require.Contains(t, string(out), "setting postgres.dsn (SCEPKIT_POSTGRES_DSN)")
			require.Contains(t, string(out), tc.says)
			require.NotContains(t, string(out), secret)
		})
	}
}
