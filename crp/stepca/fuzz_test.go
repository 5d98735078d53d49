package stepca_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/crp/stepca"
)

// FuzzHandler: any body, correctly signed (what a holder of the secret could send),
// to either webhook: no panic, a 2xx or 4xx answer, never allow for a challenge (the
// fuzzer cannot mint one), never a decision that issues.
func FuzzHandler(f *testing.F) {
	deviceKey(f)
	env, err := crptest.New(crptest.Options{Transactions: &crp.MemoryTransactions{}})
	if err != nil {
		f.Fatal(err)
	}
	h := &stepca.Handler{RP: env.RP, ChallengeSecret: challengeSecret, NotifySecret: notifySecret}
	csr := newCSR(f, "alice@example.com", "x")
	f.Add([]byte(challengeBody(f, csr, "hunter2", "tx", time.Now())), false)
	f.Add([]byte(notifyBody(f, csr, nil, "tx", time.Now())), true)
	f.Add([]byte(`{"timestamp":"`+time.Now().Format(time.RFC3339Nano)+`","scepTransactionID":"t","x509CertificateRequest":{"raw":"AAAA"}}`), false)
	f.Add([]byte(`{"timestamp":"`+time.Now().Format(time.RFC3339Nano)+`","scepTransactionID":"t","x509Certificate":{"raw":"MAA="}}`), true)
	f.Add([]byte(`[]`), false)
	f.Fuzz(func(t *testing.T, body []byte, notify bool) {
		// Fresh timestamps where the body has one, so that the fuzzer gets past the
		// skew check.
		var m map[string]any
		if json.Unmarshal(body, &m) == nil && m != nil {
			if _, ok := m["timestamp"]; ok {
				m["timestamp"] = time.Now()
				if b, err := json.Marshal(m); err == nil {
					body = b
				}
			}
		}
		path, secret := "/challenge", challengeSecret
		if notify {
			path, secret = "/notify", notifySecret
		}
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body)).WithContext(context.Background())
		req.Header.Set(stepca.HeaderSignature, stepca.Sign(secret, body))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("HTTP %d", w.Code)
		}
		if w.Code == http.StatusOK && !notify {
			var resp stepca.Response
			if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
				t.Fatal(err)
			}
			if resp.Allow {
				t.Fatalf("allowed %q", body)
			}
		}
		if env.Issuer.Count() != 0 || env.Certificates.Len() != 0 {
			t.Fatal(errors.New("a certificate was recorded"))
		}
	})
}
