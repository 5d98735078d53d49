package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/boltstore"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/internal/headerbudget"
	"github.com/scepkit/scepkit/internal/pgtest"
	"github.com/scepkit/scepkit/internal/scepclienttest"
)

// TestAdminBackup: "scepkit admin backup FILE" saves the store while the gateway
// serves; restored as the docs say (the copy as state.db beside an empty journal),
// it holds the certificate issued and revoked before it, and refuses the challenge
// used before it, while a challenge first used after the backup is not in it. With
// PostgreSQL the call is refused 501. Before, the only backup was a copy of both
// files with the gateway stopped.
func TestAdminBackup(t *testing.T) {
	f := newFixture(t)
	cfg := f.config(t, "", "")
	r := start(t, cfg)
	token := []string{"-token-file", f.path("token")}
	alice := f.challenge(t, "alice@example.com", "alice-laptop")
	dev := scepclienttest.NewDevice(t)
	out, err := dev.Enroll(r.base+"/scep", "alice@example.com", alice)
	require.NoError(t, err, out)
	cert, err := dev.Certificate()
	require.NoError(t, err)
	serial := cert.SerialNumber.Text(16)
	out, err = r.admin(t, f, token, "revoke", serial, "1")
	require.NoError(t, err, out)
	require.Regexp(t, `"msg":"admin: revoked".*"serial":"`+serial+`","reason":1`, r.Logs(), "the reason is logged, to revoke again after a restore")

	backup := filepath.Join(t.TempDir(), "state-backup.db")
	out, err = r.admin(t, f, token, "backup", backup)
	require.NoError(t, err, out)
	fi, err := os.Stat(backup)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	entries, err := os.ReadDir(f.path("state"))
	require.NoError(t, err)
	for _, e := range entries {
		require.NotContains(t, e.Name(), "backup", "the gateway's copy is removed once sent")
	}

	bob := f.challenge(t, "bob@example.com", "bob-phone")
	out, err = scepclienttest.NewDevice(t).Enroll(r.base+"/scep", "bob@example.com", bob)
	require.NoError(t, err, out)
	r.stop(t)

	// Restore: the copy in place of state.db, an empty journal.
	state := f.path("state")
	data, err := os.ReadFile(backup)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(state, boltstore.FileName), data, 0o600))
	require.NoError(t, os.Truncate(filepath.Join(state, boltstore.FileName+"-journal"), 0))
	// A copy a backup was making when the process ended is removed at start.
	stale := filepath.Join(state, boltstore.FileName+".backup-123")
	require.NoError(t, os.WriteFile(stale, data, 0o600))
	r = start(t, cfg)
	_, err = os.Stat(stale)
	require.ErrorIs(t, err, os.ErrNotExist)
	out, err = r.admin(t, f, token, "cert", serial)
	require.NoError(t, err, out)
	require.Contains(t, out, `"revoked":true`)
	require.True(t, crlLists(readCRL(t, r.base), cert.SerialNumber))
	out, err = scepclienttest.NewDevice(t).Enroll(r.base+"/scep", "alice@example.com", alice)
	require.Error(t, err, "a challenge used before the backup: %s", out)
	out, err = scepclienttest.NewDevice(t).Enroll(r.base+"/scep", "bob@example.com", bob)
	require.NoError(t, err, "what the docs warn of: a challenge first used after the backup passes again: %s", out)
	r.stop(t)
}

// TestAdminBackupPostgres: with PostgreSQL, the backup call is refused, naming the
// tool to use.
func TestAdminBackupPostgres(t *testing.T) {
	pg := pgtest.Start(t)
	f := newFixture(t)
	r := start(t, f.config(t, "", fmt.Sprintf("[postgres]\ndsn = %q\n", pg.NewDatabase(t))))
	code, body := r.adminCall(t, f, http.MethodGet, "/v1/backup", nil)
	require.Equal(t, http.StatusNotImplemented, code, body)
	require.Contains(t, body, "pg_dump")
	r.stop(t)
}

// TestAdminBackupOneAtATime: a second backup while one is being taken is refused
// (each copy is the size of the store, on its disk).
func TestAdminBackupOneAtATime(t *testing.T) {
	p := startInProcess(t, newFixture(t), "", "")
	p.a.backupMu.Lock()
	code, body := p.call(t, http.MethodGet, "/v1/backup", nil)
	require.Equal(t, http.StatusConflict, code, body)
	p.a.backupMu.Unlock()
	code, body = p.call(t, http.MethodGet, "/v1/backup", nil)
	require.Equal(t, http.StatusOK, code)
	require.NotEmpty(t, body)
}

// TestBackupOutlastsCallTimeout: the CLI's backup is not cut by the timeout of the
// other admin calls (30 s, here 100 ms): a large store takes longer to send. Before,
// a backup that took longer failed "context deadline exceeded ... while reading body".
func TestBackupOutlastsCallTimeout(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := range 5 {
			fmt.Fprintf(w, "part %d\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(60 * time.Millisecond)
		}
	}))
	defer srv.Close()
	client := srv.Client()
	client.Timeout = 100 * time.Millisecond
	path := filepath.Join(t.TempDir(), "copy.db")
	require.NoError(t, backupTo(context.Background(), client, srv.URL+"/v1/backup", "", path))
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "part 0\npart 1\npart 2\npart 3\npart 4\n", string(got))
}

// TestAdminBackupStalledCaller: a caller that stops reading a backup is cut after
// backupStall without progress, and the next backup is taken. Before, its write
// deadline was an hour and every other backup got 409 meanwhile.
func TestAdminBackupStalledCaller(t *testing.T) {
	old := backupStall
	backupStall = 200 * time.Millisecond
	t.Cleanup(func() { backupStall = old })
	p := startInProcess(t, newFixture(t), "", "")
	fillStore(t, p)
	resp, err := p.admin.Client().Do(backupRequest(t, p))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	_, err = io.ReadFull(resp.Body, make([]byte, 1024)) // then stop reading
	require.NoError(t, err)

	require.Eventually(t, func() bool {
		r, err := p.admin.Client().Do(backupRequest(t, p))
		if err != nil {
			return false
		}
		defer r.Body.Close()
		io.Copy(io.Discard, r.Body)
		return r.StatusCode == http.StatusOK
	}, 20*time.Second, 100*time.Millisecond, "the stalled caller still holds the backup")
}

// backupRequest is a backup call to p's admin API, with its token.
func backupRequest(t *testing.T, p *inProcess) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, p.admin.URL+"/v1/backup", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+p.f.token)
	return req
}

// fillStore writes about 13 MB of transaction records into p's store: a backup of it
// is more than the sockets between the test and the gateway buffer.
func fillStore(t *testing.T, p *inProcess) {
	t.Helper()
	bs := p.g.store.(*boltstore.Store)
	big := make([]byte, 64<<10)
	for i := range 200 {
		require.NoError(t, bs.Put(context.Background(), &crp.Record{TransactionID: fmt.Sprintf("fill-%d", i), CSR: big,
			Expires: time.Now().Add(time.Hour)}))
	}
}

// TestAdminBackupAbortAudited: a backup cut short after its first bytes (the caller
// stopped reading, or went away) leaves an audit line that says it was aborted and
// why, in a fixed phrase; a backup sent whole is not marked. Before, both audit lines
// read status 200 and nothing else, as a whole backup's does.
func TestAdminBackupAbortAudited(t *testing.T) {
	old := backupStall
	backupStall = 200 * time.Millisecond
	t.Cleanup(func() { backupStall = old })
	p := startInProcess(t, newFixture(t), "", "")
	fillStore(t, p)
	for _, c := range []struct {
		name   string
		caller func(body io.ReadCloser) // after the first KiB
		why    string                   // empty: not aborted
	}{
		{"sent whole", func(body io.ReadCloser) { io.Copy(io.Discard, body) }, ""},
		{"caller stops reading", func(body io.ReadCloser) { time.Sleep(time.Second) }, "the caller stopped reading for 200ms"},
		{"caller goes away", func(body io.ReadCloser) { body.Close() }, "the caller went away, or its connection failed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := len(auditLines(p.logs.lines(t)))
			resp, err := p.admin.Client().Do(backupRequest(t, p))
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			_, err = io.ReadFull(resp.Body, make([]byte, 1024))
			require.NoError(t, err)
			c.caller(resp.Body)
			var line map[string]any
			require.Eventually(t, func() bool {
				audit := auditLines(p.logs.lines(t))
				if len(audit) == before {
					return false
				}
				line = audit[before]
				return true
			}, 20*time.Second, 50*time.Millisecond, "no audit line for the backup")
			require.Equal(t, "/v1/backup", line["path"])
			require.EqualValues(t, http.StatusOK, line["status"], "the status sent first")
			if c.why == "" {
				require.NotContains(t, line, "aborted")
				require.NotContains(t, line, "abort_reason")
				return
			}
			require.Equal(t, true, line["aborted"])
			require.Equal(t, c.why, line["abort_reason"])
			require.NotContains(t, p.logs.String(), p.f.token)
		})
	}
}

// TestAdminBackupOutlastsWriteTimeout: a backup that takes a slow caller longer than
// the listener's WriteTimeout to read arrives whole: the admin listener as serve
// makes it (newHTTPServer, the header budget, TLS), with a WriteTimeout of 300 ms
// instead of two minutes, and a caller that takes about two seconds to read 13 MB.
// WriteTimeout sets the connection's write deadline once, when the request is read;
// each write of a backup moves it backupStall ahead.
func TestAdminBackupOutlastsWriteTimeout(t *testing.T) {
	p := startInProcess(t, newFixture(t), "", "")
	fillStore(t, p)
	srv := newHTTPServer(p.a.handler(), slog.New(slog.NewJSONHandler(p.logs, nil)))
	srv.WriteTimeout = 300 * time.Millisecond
	srv.TLSConfig = p.admin.TLS.Clone()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var headers headerbudget.Budget
	ln = headers.Install(srv, ln)
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })

	req, err := http.NewRequest(http.MethodGet, "https://"+ln.Addr().String()+"/v1/backup", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+p.f.token)
	start := time.Now()
	resp, err := p.admin.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	// A chunked body that ends without its last chunk is an error here, not EOF.
	n, err := io.Copy(slowWriter{}, resp.Body)
	require.NoError(t, err, "after %d bytes, %s", n, time.Since(start))
	require.Greater(t, time.Since(start), 4*srv.WriteTimeout, "the caller was not slow")
	require.Greater(t, n, int64(13<<20), "the whole store")
	audit := auditLines(p.logs.lines(t))
	require.NotEmpty(t, audit)
	require.Equal(t, "/v1/backup", audit[len(audit)-1]["path"])
	require.NotContains(t, audit[len(audit)-1], "aborted")
}

// slowWriter takes 5 ms for each write: a caller that reads slowly.
type slowWriter struct{}

func (slowWriter) Write(p []byte) (int, error) {
	time.Sleep(5 * time.Millisecond)
	return len(p), nil
}
