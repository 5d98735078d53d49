package scep

import (
	"bufio"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/internal/testserver"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// rawExchange sends req as it is over a new connection to ts and returns the status
// of the answer.
func rawExchange(t *testing.T, addr string, req string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(c, req)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// requestCounts collects MetricRequests by its data points' attributes, as
// "key=value" pairs in the SDK's order.
func requestCounts(t *testing.T, reader *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != MetricRequests {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				var kv []string
				for _, a := range dp.Attributes.ToSlice() {
					kv = append(kv, string(a.Key)+"="+a.Value.Emit())
				}
				out[strings.Join(kv, ",")] += dp.Value
			}
		}
	}
	return out
}

// TestRefusalsCountedAndLogged: every request refused before its message reaches the
// Responder (a query too long, a body too large announced or not, a body that cannot
// be read or does not arrive in time, a message parameter that does not decode, a
// wrong method, a body that is no PKIMessage) is counted in MetricRequests as
// "rejected" with its HTTP status, by an operation label from a fixed set, and logged
// in exactly one Warn record with the remote address, operation and status, without
// the query or body the client chose. Before, all but the last were counted nowhere,
// and only the 408 was logged (at Info).
func TestRefusalsCountedAndLogged(t *testing.T) {
	pki := newTestPKI(t)
	const secret = "S3CRETCHALLENGE"
	long := strings.Repeat(secret, 100) // 1,500 bytes, over MaxQueryBytes
	for _, c := range []struct {
		name   string
		send   func(t *testing.T, ts *httptestServerT) int
		code   int
		op     string
		logged []string // attributes the Warn record must carry besides remote and status
	}{
		{"query too long", func(t *testing.T, ts *httptestServerT) int {
			return ts.get(t, "?operation=PKIOperation&message="+long)
		}, http.StatusRequestURITooLong, "PKIOperation", nil},
		{"query too long, operation chosen by the client", func(t *testing.T, ts *httptestServerT) int {
			return ts.get(t, "?operation="+long)
		}, http.StatusRequestURITooLong, "unknown", nil},
		{"body too large, announced", func(t *testing.T, ts *httptestServerT) int {
			return rawExchange(t, ts.addr, fmt.Sprintf("POST /?operation=PKIOperation HTTP/1.1\r\nHost: scep\r\n"+
				"Content-Length: %d\r\n\r\n%s", 2*len(long), long+long))
		}, http.StatusRequestEntityTooLarge, "PKIOperation", nil},
		{"body too large, chunked", func(t *testing.T, ts *httptestServerT) int {
			body := long + long
			return rawExchange(t, ts.addr, fmt.Sprintf("POST /?operation=PKIOperation HTTP/1.1\r\nHost: scep\r\n"+
				"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(body), body))
		}, http.StatusRequestEntityTooLarge, "PKIOperation", nil},
		{"body that cannot be read", func(t *testing.T, ts *httptestServerT) int {
			return rawExchange(t, ts.addr, "POST /?operation=PKIOperation HTTP/1.1\r\nHost: scep\r\n"+
				"Transfer-Encoding: chunked\r\n\r\nzz"+secret+"\r\n")
		}, http.StatusBadRequest, "PKIOperation", nil},
		{"bad message parameter", func(t *testing.T, ts *httptestServerT) int {
			return ts.get(t, "?operation=PKIOperation&message=%25%25"+secret)
		}, http.StatusBadRequest, "PKIOperation", nil},
		{"wrong method", func(t *testing.T, ts *httptestServerT) int {
			return rawExchange(t, ts.addr, "PUT /?operation=PKIOperation HTTP/1.1\r\nHost: scep\r\nContent-Length: 15\r\n\r\n"+secret)
		}, http.StatusMethodNotAllowed, "PKIOperation", []string{`"method":"PUT"`}},
		{"body not in time", func(t *testing.T, ts *httptestServerT) int {
			return rawExchange(t, ts.addr, "POST /?operation=PKIOperation HTTP/1.1\r\nHost: scep\r\nContent-Length: 2000\r\n\r\n"+secret)
		}, http.StatusRequestTimeout, "PKIOperation", []string{`"received":15`}},
		{"no PKIMessage", func(t *testing.T, ts *httptestServerT) int {
			return rawExchange(t, ts.addr, "POST /?operation=PKIOperation HTTP/1.1\r\nHost: scep\r\nContent-Length: 15\r\n\r\n"+secret)
		}, http.StatusBadRequest, "PKIOperation", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			reader := sdkmetric.NewManualReader()
			logs := &testserver.Output{}
			s := pki.server(false)
			s.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
			s.Logger = slog.New(slog.NewJSONHandler(logs, nil))
			s.MaxQueryBytes, s.MaxBodyBytes, s.BodyTimeout = 1024, 2048, 300*time.Millisecond
			require.NoError(t, s.Validate())
			hs := httptestServer(t, s)
			ts := &httptestServerT{url: hs.URL, addr: hs.Listener.Addr().String()}

			require.Equal(t, c.code, c.send(t, ts))
			require.Zero(t, pki.issuedCount())

			want := fmt.Sprintf("http.response.status_code=%d,scep.operation=%s,scep.status=rejected", c.code, c.op)
			require.Equal(t, map[string]int64{want: 1}, requestCounts(t, reader))

			var warns []string
			for _, rec := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
				require.NotContains(t, rec, secret, "the client's text reached the log")
				var m map[string]any
				require.NoError(t, json.Unmarshal([]byte(rec), &m), rec)
				if m["level"] == "WARN" {
					warns = append(warns, rec)
				}
			}
			require.Len(t, warns, 1, logs.String())
			rec := warns[0]
			require.Less(t, len(rec), 1024)
			require.Contains(t, rec, `"remote":"127.0.0.1:`)
			require.Contains(t, rec, `"operation":"`+c.op+`"`)
			require.Contains(t, rec, fmt.Sprintf(`"status":%d`, c.code))
			for _, a := range c.logged {
				require.Contains(t, rec, a)
			}
		})
	}
}

// httptestServerT is where a test server listens.
type httptestServerT struct{ url, addr string }

// get sends a GET of the server's URL with query q, and returns the answer's status.
func (ts *httptestServerT) get(t *testing.T, q string) int {
	t.Helper()
	u, err := url.Parse(ts.url + "/" + q)
	require.NoError(t, err)
	resp, err := http.Get(u.String())
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// brokenSigner holds the RA's key but cannot sign with it, as a token key that was
// removed, or restricted to other mechanisms.
type brokenSigner struct{ crypto.Signer }

func (brokenSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("pkcs11: 0x70: CKR_MECHANISM_INVALID")
}

// TestReplyCannotBeSigned: the Responder issued, but the RA key cannot sign the
// CertRep. The client gets 500 (no CertRep can be signed, not even a FAILURE) and the
// log says plainly that the decision stands and what failed; it said only "building
// CertRep FAILURE".
func TestReplyCannotBeSigned(t *testing.T) {
	pki := newTestPKI(t)
	s := pki.server(false)
	s.Signer = brokenSigner{pki.raKey}
	var logs testserver.Output
	s.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	d := newDevice(t)
	der, _, err := NewRequest(RequestOptions{Type: PKCSReq, TransactionID: "broken-ra", Payload: newCSR(t, d.key, "broken-ra", "secret"),
		Recipient: pki.raEnc, SignerCert: d.self, Signer: d.key})
	require.NoError(t, err)
	before := pki.issuedCount()
	rec := httptestRecorder(s, http.MethodPost, "/scep?operation=PKIOperation", der)
	require.Equal(t, http.StatusInternalServerError, rec.Code)
	require.Equal(t, before+1, pki.issuedCount(), "the Responder issued")
	require.Contains(t, logs.String(), "building the CertRep failed; the Responder's decision stands")
	require.Contains(t, logs.String(), `"status":"SUCCESS"`)
	require.Contains(t, logs.String(), "CKR_MECHANISM_INVALID")
}

// TestRefusalLogRationed: a client sending malformed requests as fast as it can does
// not flood the log: refusals are logged one by one up to refusalLogLines a window,
// the rest counted and their count logged when the window ends; the metric counts
// every one. Each was a Warn line (500 bad GETs, 500 lines).
func TestRefusalLogRationed(t *testing.T) {
	pki := newTestPKI(t)
	reader := sdkmetric.NewManualReader()
	logs := &testserver.Output{}
	s := pki.server(false)
	s.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	s.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	require.NoError(t, s.Validate())
	hs := httptestServer(t, s)
	ts := &httptestServerT{url: hs.URL, addr: hs.Listener.Addr().String()}
	const sent = 300
	for i := range sent {
		if i%2 == 0 {
			require.Equal(t, http.StatusBadRequest, ts.get(t, "?operation=PKIOperation&message=%25%25"))
		} else { // no PKIMessage
			require.Equal(t, http.StatusBadRequest, rawExchange(t, ts.addr, "POST /?operation=PKIOperation HTTP/1.1\r\nHost: scep\r\nContent-Length: 3\r\n\r\nabc"))
		}
	}
	count := func() (lines, counted int) {
		for _, rec := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var m map[string]any
			require.NoError(t, json.Unmarshal([]byte(rec), &m), rec)
			switch m["msg"] {
			case "scep: request refused", "scep: PKIOperation refused":
				lines++
			case "scep: requests refused, not logged one by one":
				counted += int(m["refused"].(float64))
			}
		}
		return lines, counted
	}
	require.Eventually(t, func() bool { l, c := count(); return l+c == sent }, 5*time.Second, 20*time.Millisecond,
		"every refusal is in a line or a count")
	lines, _ := count()
	require.Less(t, lines, sent/2, "refusals logged one by one")
	require.Equal(t, map[string]int64{"http.response.status_code=400,scep.operation=PKIOperation,scep.status=rejected": sent},
		requestCounts(t, reader))
}
