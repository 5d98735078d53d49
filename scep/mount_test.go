package scep

import (
	"context"
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMount: every path Mount is given is served as given and with /pkiclient.exe
// appended (Intune-managed devices ask NDES for .../mscep.dll/pkiclient.exe), every
// operation, by GET and POST; other paths stay unserved.
func TestMount(t *testing.T) {
	pki := newTestPKI(t)
	s := pki.server(false)
	mux := http.NewServeMux()
	Mount(mux, "/scep", s)
	Mount(mux, "/certsrv/mscep/mscep.dll", s)
	Mount(mux, "/tree/", s)
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	d := newDevice(t)
	ctx := context.Background()
	fp := sha256.Sum256(pki.ca.Raw)

	for _, path := range []string{"/scep", "/certsrv/mscep/mscep.dll", "/tree/"} {
		for _, u := range []string{ts.URL + path, ts.URL + strings.TrimSuffix(path, "/") + PKIClientSuffix} {
			t.Run(u[len(ts.URL):], func(t *testing.T) {
				for _, q := range []string{"operation=GetCACaps", "operation=GetCACaps&message=default",
					"operation=GetCACert", "operation=GetCACert&message=default", "operation=GetCACert&message=CAIdentifier"} {
					resp, err := http.Get(u + "?" + q)
					require.NoError(t, err)
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					require.Equal(t, http.StatusOK, resp.StatusCode, q)
				}
				// POST PKIOperation (the caps list POSTPKIOperation).
				cert, err := (&Client{URL: u, CAFingerprint: fp[:]}).Enroll(ctx, newCSR(t, d.key, "post", "secret"), d.key)
				require.NoError(t, err)
				require.Equal(t, "post", cert.Subject.CommonName)
				// GET PKIOperation, as certmonger always sends it.
				getOnly := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Query().Get("operation") == "GetCACaps" {
						io.WriteString(w, "AES\nSHA-256\n")
						return
					}
					require.Equal(t, http.MethodGet, r.Method)
					r.URL.Path = u[len(ts.URL):]
					mux.ServeHTTP(w, r)
				}))
				cert, err = (&Client{URL: getOnly.URL, CAFingerprint: fp[:]}).Enroll(ctx, newCSR(t, d.key, "get", "secret"), d.key)
				require.NoError(t, err)
				require.Equal(t, "get", cert.Subject.CommonName)
			})
		}
	}
	// A path ending in "/" is served as given, not as a ServeMux subtree: nothing
	// below it answers SCEP.
	for _, path := range []string{"/pkiclient.exe", "/scep/other.exe", "/scep/pkiclient.exe/pkiclient.exe",
		"/tree/x", "/tree/scep", "/tree/x/pkiclient.exe", "/tree/pkiclient.exe/", "/tree/pkiclient.exe/x"} {
		resp, err := http.Get(ts.URL + path + "?operation=GetCACaps")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNotFound, resp.StatusCode, path)
	}
}

// TestMountRefusesPatterns: Mount takes a literal path; a method, a host or a
// wildcard (which could make a catch-all, "/{rest...}") panics, as ServeMux does on a
// bad pattern, and registers nothing.
func TestMountRefusesPatterns(t *testing.T) {
	for _, path := range []string{"", "scep", "example.com/scep", "GET /scep", "/scep/{rest...}", "/{x}", "/scep/{$}"} {
		t.Run(path, func(t *testing.T) {
			mux := http.NewServeMux()
			require.Panics(t, func() { Mount(mux, path, http.NotFoundHandler()) })
			_, pattern := mux.Handler(httptest.NewRequest(http.MethodGet, "/scep/x", nil))
			require.Empty(t, pattern, "registered despite the panic")
		})
	}
	// "/" serves the root and /pkiclient.exe only.
	mux := http.NewServeMux()
	Mount(mux, "/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for path, served := range map[string]bool{"/": true, "/pkiclient.exe": true, "/x": false, "/x/pkiclient.exe": false} {
		_, pattern := mux.Handler(httptest.NewRequest(http.MethodGet, path, nil))
		require.Equal(t, served, pattern != "", path)
	}
}
