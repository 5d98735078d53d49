package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/internal/scepclienttest"
)

// TestLogLevel: log_level sets the least level of the lines about each request (a
// dozen at info per enrollment); the gateway's own lines, the admin API's audit
// among them, are written whatever it says.
func TestLogLevel(t *testing.T) {
	for _, tc := range []struct {
		setting  string
		requests bool // the per-request lines at info are written
	}{
		{"", true},
		{"log_level = \"info\"\n", true},
		{"log_level = \"debug\"\n", true},
		{"log_level = \"warn\"\n", false},
		{"log_level = \"error\"\n", false},
	} {
		t.Run(strings.TrimSpace(tc.setting), func(t *testing.T) {
			f := newFixture(t)
			p := startInProcess(t, f, tc.setting, "")
			dev := scepclienttest.NewDevice(t)
			out, err := dev.Enroll(p.public.URL+"/scep", "alice@example.com", f.challenge(t, "alice@example.com", "alice-laptop"))
			require.NoError(t, err, out)
			code, body := p.call(t, http.MethodGet, "/v1/certificates", nil)
			require.Equal(t, http.StatusOK, code, body)
			logs := p.logs.String()
			for _, line := range []string{`"msg":"crp"`, `"msg":"scep: PKIOperation"`} {
				require.Equal(t, tc.requests, strings.Contains(logs, line), "%s in:\n%s", line, logs)
			}
			require.Contains(t, logs, `"audit":"admin"`, "the audit line is written whatever log_level says")
		})
	}
	f := newFixture(t)
	_, err := loadConfig(f.config(t, "log_level = \"verbose\"\n", ""), func(string) (string, bool) { return "", false })
	require.ErrorContains(t, err, "log_level")
}
