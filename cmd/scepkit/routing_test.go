package main

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAdminRouting: a call the admin API has no route for is answered as every other
// refusal of the API is, a JSON error with the status (404, or 405 with Allow), so a
// client reading the API's errors reads these too (before, Go's router answered them in
// plain text). HEAD, which Go's router hands to GET routes with the body dropped, is
// refused: a HEAD of /v1/backup read the whole store into a discarded answer.
func TestAdminRouting(t *testing.T) {
	p := startInProcess(t, newFixture(t), "", "")
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{http.MethodGet, "/v1/nothing", http.StatusNotFound, ""},
		{http.MethodGet, "/", http.StatusNotFound, ""},
		{http.MethodPost, "/v1/certificates/", http.StatusNotFound, ""},
		{http.MethodDelete, "/v1/pending", http.StatusMethodNotAllowed, "GET"},
		{http.MethodPost, "/v1/backup", http.StatusMethodNotAllowed, "GET"},
		{http.MethodGet, "/v1/pending/tx-1/approve", http.StatusMethodNotAllowed, "POST"},
		{http.MethodPut, "/v1/certificates/01/revoke", http.StatusMethodNotAllowed, "POST"},
		{http.MethodHead, "/v1/backup", http.StatusMethodNotAllowed, "GET"},
		{http.MethodHead, "/v1/certificates", http.StatusMethodNotAllowed, "GET"},
		{http.MethodHead, "/v1/pending/tx-1/approve", http.StatusMethodNotAllowed, "POST"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, p.admin.URL+tc.path, nil)
			require.NoError(t, err)
			req.Header.Set("Authorization", "Bearer "+p.f.token)
			resp, err := p.admin.Client().Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Equal(t, tc.status, resp.StatusCode, string(body))
			require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			if tc.allow != "" {
				require.Equal(t, tc.allow, resp.Header.Get("Allow"), "HEAD is refused everywhere, so never allowed")
			}
			if tc.method == http.MethodHead {
				require.Empty(t, body)
				return
			}
			var e apiError
			require.NoError(t, json.Unmarshal(body, &e), string(body))
			require.Equal(t, http.StatusText(tc.status), e.Error)
		})
	}
	// No backup was taken: the audit lines name every call, none of them answered 200.
	for _, l := range auditLines(p.logs.lines(t)) {
		require.NotEqual(t, float64(http.StatusOK), l["status"], "%v", l)
	}
}
