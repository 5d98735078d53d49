package main

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/scepkit/scepkit/internal/testserver"
	"github.com/stretchr/testify/require"
)

// syncBuffer is a log destination the test server's goroutines may share.
type syncBuffer struct{ testserver.Output }

// lines returns the JSON log records written so far.
func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s.String()))
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), sc.Text())
		out = append(out, m)
	}
	return out
}

// TestAdminAuditedMiddleware: the admin API's middleware accepts the bearer token and
// refuses wrong tokens of the same length, shorter and longer ones (compared through
// their digests, so the timing does not tell the token's length); every call leaves
// one audit line written from a defer, so a handler that panics is audited too, and
// answered 500 without the panic's text (or cut short once its answer is under way).
func TestAdminAuditedMiddleware(t *testing.T) {
	const token = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t"
	var logs syncBuffer
	a := &admin{token: []byte(token), log: slog.New(slog.NewJSONHandler(&logs, nil)).With("audit", "admin")}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			writeJSON(w, http.StatusOK, map[string]string{"ok": "yes"})
		case "/panic":
			w.Header().Set("X-Half-Done", "1")
			panic("store row 42 holds secret detail")
		case "/panic-late":
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, `{"partial": `)
			_ = http.NewResponseController(w).Flush() // a failure fails the call below
			panic("store row 43 holds secret detail")
		}
	})
	srv := httptest.NewServer(a.audited(next))
	t.Cleanup(srv.Close)

	call := func(path, auth string) (int, string, error) {
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		require.NoError(t, err)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	cases := []struct {
		name, path, auth string
		status           int
		who              string
	}{
		{"the token", "/ok", "Bearer " + token, http.StatusOK, "token"},
		{"no token", "/ok", "", http.StatusUnauthorized, ""},
		{"same length, last byte differs", "/ok", "Bearer " + token[:len(token)-1] + "X", http.StatusUnauthorized, ""},
		{"same length, first byte differs", "/ok", "Bearer X" + token[1:], http.StatusUnauthorized, ""},
		{"a prefix", "/ok", "Bearer " + token[:len(token)-1], http.StatusUnauthorized, ""},
		{"empty", "/ok", "Bearer ", http.StatusUnauthorized, ""},
		{"longer", "/ok", "Bearer " + token + "x", http.StatusUnauthorized, ""},
		{"not a bearer", "/ok", "Basic " + token, http.StatusUnauthorized, ""},
		// The scheme is case-insensitive (RFC 9110 §11.1); refused before.
		{"the scheme in lower case", "/ok", "bearer " + token, http.StatusOK, "token"},
		{"two spaces", "/ok", "Bearer  " + token, http.StatusUnauthorized, ""},
		{"a panicking handler", "/panic", "Bearer " + token, http.StatusInternalServerError, "token"},
		{"a panicking handler, refused first", "/panic", "Bearer x" + token, http.StatusUnauthorized, ""},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body, err := call(tc.path, tc.auth)
			require.NoError(t, err)
			require.Equal(t, tc.status, status, body)
			require.NotContains(t, body, "secret detail")
			require.NotContains(t, body, "row 42")
			audit := auditLines(logs.lines(t))
			require.Len(t, audit, i+1, "one audit line per call")
			line := audit[i]
			require.Equal(t, tc.who, line["who"])
			require.Equal(t, tc.path, line["path"])
			require.EqualValues(t, tc.status, line["status"])
			require.Equal(t, tc.path == "/panic" && tc.who != "", line["panicked"] == true)
			require.NotContains(t, logs.String(), token, "the token is never logged")
		})
	}

	// A panic once the answer has begun: the status is sent, so the answer is cut
	// short (the client cannot take the partial body for a whole one), and audited.
	status, body, err := call("/panic-late", "Bearer "+token)
	require.Error(t, err, "a truncated answer reads as complete: %q", body)
	require.Equal(t, http.StatusOK, status)
	audit := auditLines(logs.lines(t))
	require.Len(t, audit, len(cases)+1)
	require.Equal(t, "/panic-late", audit[len(cases)]["path"])
	require.Equal(t, true, audit[len(cases)]["panicked"])
	require.Equal(t, true, audit[len(cases)]["aborted"])
	require.Equal(t, "the handler panicked", audit[len(cases)]["abort_reason"])

	// The panics' detail is in the error log, for the operator.
	var panics int
	for _, l := range logs.lines(t) {
		if l["msg"] == "admin call panicked" {
			panics++
			require.True(t, strings.Contains(l["panic"].(string), "secret detail"))
		}
	}
	require.Equal(t, 2, panics)
}

func auditLines(lines []map[string]any) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if l["msg"] == "admin call" {
			out = append(out, l)
		}
	}
	return out
}
