package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/scepkit/scepkit/crp/crptest"
)

// TestSecondRunNotRefused: two runs of scepload against the same gateway both enroll
// every time. Before, each run named its transactions load-DEV-I, the same names with
// new keys, and the gateway, which keeps a transaction's record for 24 hours, refused
// every enrollment of the second run ("transactionID in use by another requester").
// Each run's transactionIDs now begin with a random prefix of its own, printable and
// well under the 256 bytes a SCEP parser accepts.
func TestSecondRunNotRefused(t *testing.T) {
	env, ts := testGateway(t)

	ids := map[string]bool{}
	header := regexp.MustCompile(`transactionIDs (load-([0-9a-f]+)-0-0)\n`)
	for i := range 2 {
		c := &config{url: ts.URL + "/scep", mdm: ts.URL + "/mdm", device: "alice-laptop", conc: 2, n: 4,
			keySize: 2048, dur: time.Minute, verify: true, fingerprint: hex.EncodeToString(env.CAFingerprint())}
		var out bytes.Buffer
		if err := run(c, &out); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		if !strings.Contains(out.String(), "enrollments  4 ok") || !strings.Contains(out.String(), "errors       none") {
			t.Fatalf("run %d:\n%s", i, out.String())
		}
		m := header.FindStringSubmatch(out.String())
		if m == nil || len(m[2]) != 2*runIDBytes {
			t.Fatalf("run %d: no run prefix of %d hex digits in\n%s", i, 2*runIDBytes, out.String())
		}
		if ids[m[2]] {
			t.Fatalf("run %d: prefix %s again", i, m[2])
		}
		ids[m[2]] = true
		if id := transactionID(c.runID, c.conc-1, c.n-1); len(id) > 64 || !regexp.MustCompile(`^[a-z0-9-]+$`).MatchString(id) {
			t.Fatalf("transactionID %q", id)
		}
	}
}

// testGateway is a gateway with its MDM, which gives a fresh challenge for alice's
// device per enrollment, on a test server: /scep and /mdm.
func testGateway(t *testing.T) (*crptest.Env, *httptest.Server) {
	t.Helper()
	env, err := crptest.New(crptest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Close() })
	mux := http.NewServeMux()
	mux.Handle("/scep", env.Server)
	mux.HandleFunc("/mdm", func(w http.ResponseWriter, r *http.Request) {
		ch, _, err := env.Challenge("alice@example.com", r.URL.Query().Get("device"), time.Hour)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"challenge": ch, "subject": "CN=alice@example.com"})
	})
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return env, ts
}
