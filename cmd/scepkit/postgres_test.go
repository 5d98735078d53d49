package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp/intune/intunetest"
	"github.com/scepkit/scepkit/internal/pgtest"
	"github.com/scepkit/scepkit/internal/redistest"
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

// TestReadyzNamesWhatHangs: with PostgreSQL hung (SIGSTOP), /readyz is 503 and names
// the store alone: Redis and Intune, which answer, are checked on their own time.
// Before, the checks shared one 3 s deadline, one after the other: the hung store
// spent it, Redis was reported failed too, and Intune's check, which keeps its outcome
// for a minute, failed and kept /readyz at 503 for a minute after PostgreSQL was back.
func TestReadyzNamesWhatHangs(t *testing.T) {
	pg := pgtest.Start(t)
	rs := redistest.Start(t)
	emu := intunetest.NewServer()
	defer emu.Close()
	f := newFixture(t)
	f.write(t, "intune-secret", []byte(emu.ClientSecret+"\n"))
	r := start(t, f.config(t, "", fmt.Sprintf("[postgres]\ndsn = %q\n[redis]\naddr = %q\n"+
		"[intune]\ntenant = %q\nclient_id = %q\nclient_secret_file = %q\nauthority = %q\ngraph_url = %q\n",
		pg.NewDatabase(t), rs.Addr, emu.Tenant, emu.ClientID, f.path("intune-secret"), emu.URL+"/", emu.URL+"/")))

	pg.Freeze()
	thawed := false
	defer func() {
		if !thawed {
			pg.Thaw()
		}
	}()
	start := time.Now()
	code, body, _ := get(t, r.base+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	require.Less(t, time.Since(start), 5*time.Second, "a hung store costs a probe its check's bound")
	require.Contains(t, body, `"name":"store","ok":false`)
	require.Contains(t, body, `"name":"redis","ok":true`)
	require.Contains(t, body, `"name":"intune","ok":true`)
	pg.Thaw()
	thawed = true
	require.Eventually(t, func() bool { c, _, _ := get(t, r.base+"/readyz"); return c == http.StatusOK },
		10*time.Second, 200*time.Millisecond, "ready once PostgreSQL answers")
	r.stop(t)
}
