package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAdminClientRequests: every call of scepkit admin, the backup among them, goes
// out as one helper builds it: the bearer token from -token-file, and a JSON body
// with its Content-Type only on the calls that send one.
func TestAdminClientRequests(t *testing.T) {
	type seen struct{ method, path, auth, contentType, body string }
	var mu sync.Mutex
	var last seen
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		last = seen{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), string(b)}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "{}\n")
	}))
	t.Cleanup(srv.Close)
	f := newFixture(t)
	f.write(t, "srv-ca.pem", pemCert(srv.Certificate()))
	backup := filepath.Join(t.TempDir(), "copy.db")
	for _, c := range []struct {
		args []string
		want seen
	}{
		{[]string{"cert", "3f"}, seen{http.MethodGet, "/v1/certificates/3f", "Bearer " + f.token, "", ""}},
		{[]string{"approve", "tx-1"}, seen{http.MethodPost, "/v1/pending/tx-1/approve", "Bearer " + f.token, "", ""}},
		{[]string{"reject", "tx-1", "not", "ours"}, seen{http.MethodPost, "/v1/pending/tx-1/reject", "Bearer " + f.token,
			"application/json", `{"reason":"not ours"}`}},
		{[]string{"revoke", "3f", "1"}, seen{http.MethodPost, "/v1/certificates/3f/revoke", "Bearer " + f.token,
			"application/json", `{"reason":1,"unrecorded":false}`}},
		{[]string{"backup", backup}, seen{http.MethodGet, "/v1/backup", "Bearer " + f.token, "", ""}},
	} {
		t.Run(c.args[0], func(t *testing.T) {
			out, err := exec.Command(bin, append([]string{"admin", "-url", srv.URL, "-ca", f.path("srv-ca.pem"),
				"-token-file", f.path("token")}, c.args...)...).CombinedOutput()
			require.NoError(t, err, string(out))
			mu.Lock()
			defer mu.Unlock()
			require.Equal(t, c.want, last)
		})
	}
	got, err := os.ReadFile(backup)
	require.NoError(t, err)
	require.Equal(t, "{}\n", string(got))
}

// TestAdminBackupDestinationFirst: a backup to a file that cannot be written (its
// directory missing) fails before the gateway is asked: it made and sent a whole copy
// of the store first, which the client then could not keep.
func TestAdminBackupDestinationFirst(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.WriteString(w, "a copy of the store")
	}))
	t.Cleanup(srv.Close)
	f := newFixture(t)
	f.write(t, "srv-ca.pem", pemCert(srv.Certificate()))
	dest := filepath.Join(t.TempDir(), "absent", "copy.db")
	out, err := exec.Command(bin, "admin", "-url", srv.URL, "-ca", f.path("srv-ca.pem"), "-token-file", f.path("token"),
		"backup", dest).CombinedOutput()
	require.Error(t, err, string(out))
	require.Contains(t, string(out), "absent")
	require.Zero(t, calls.Load(), "the gateway was asked for a copy the client cannot keep")
}

// TestAdminClientWithheldOnly: certs -withheld prints only the certificates the
// gateway marks withheld, also from a gateway older than the filter, which ignores
// withheld=true and lists every certificate (an operator revokes what it prints).
func TestAdminClientWithheldOnly(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"certificates": [{"serial": "0a", "withheld": true}, {"serial": "0b"}, {"serial": "0c", "withheld": false}]}`+"\n")
	}))
	t.Cleanup(srv.Close)
	f := newFixture(t)
	f.write(t, "srv-ca.pem", pemCert(srv.Certificate()))
	out, err := exec.Command(bin, "admin", "-url", srv.URL, "-ca", f.path("srv-ca.pem"), "-token-file", f.path("token"),
		"certs", "-withheld").Output()
	require.NoError(t, err, string(out))
	require.JSONEq(t, `[{"serial": "0a", "withheld": true}]`, string(out))
}
