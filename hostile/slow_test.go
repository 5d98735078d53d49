package hostile

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/stretchr/testify/require"
)

// trickle opens a connection to addr, writes head, then one byte every 100ms, and
// returns how long the server kept the connection open and what it wrote back.
func trickle(t *testing.T, addr, head string, limit time.Duration) (time.Duration, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	start := time.Now()
	_, err = io.WriteString(conn, head)
	require.NoError(t, err)
	type result struct {
		d   time.Duration
		got string
	}
	closed := make(chan result, 1)
	go func() {
		var got strings.Builder
		b := make([]byte, 4096)
		for {
			n, err := conn.Read(b)
			got.Write(b[:n])
			if err != nil {
				closed <- result{time.Since(start), got.String()}
				return
			}
		}
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		select {
		case r := <-closed:
			return r.d, r.got
		case <-tick.C:
			conn.Write([]byte("a")) // errors once the server has closed: the reader reports it
		case <-deadline.C:
			t.Fatalf("the server still holds the connection after %v", limit)
		}
	}
}

// slowLoris trickles a request header at the gateway running with the quickstart's real
// settings: the server must close the connection once ReadHeaderTimeout (5 s) is over,
// without the request ever reaching the SCEP handler.
func slowLoris(t *testing.T, h *harness) {
	d, got := trickle(t, h.addr, "POST /scep?operation=PKIOperation HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
		quickstartReadHeaderTimeout+3*time.Second)
	require.GreaterOrEqual(t, d, quickstartReadHeaderTimeout-200*time.Millisecond, "closed before the header timeout?")
	require.Less(t, d, quickstartReadHeaderTimeout+2*time.Second)
	require.NotContains(t, got, "200 OK", "no answer from the handler")
}

// TestSlowBody trickles a body after complete headers. The quickstart's ReadTimeout is
// 30 s; this server is the quickstart's with ReadTimeout lowered to 1 s (and nothing
// else changed) so the test stays short. The handler's read fails at the deadline, the
// server answers 408 or closes, and no certificate is issued.
func TestSlowBody(t *testing.T) {
	keys()
	env, err := crptest.New(crptest.Options{})
	require.NoError(t, err)
	errLog := &syncBuffer{}
	srv := quickstartServer(env.Server, errLog)
	srv.ReadTimeout = time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go srv.Serve(ln)
	defer srv.Close()
	head := fmt.Sprintf("POST /scep?operation=PKIOperation HTTP/1.1\r\nHost: 127.0.0.1\r\n"+
		"Content-Type: application/x-pki-message\r\nContent-Length: %d\r\n\r\n0", 100000)
	d, got := trickle(t, ln.Addr().String(), head, srv.ReadTimeout+3*time.Second)
	require.GreaterOrEqual(t, d, srv.ReadTimeout-200*time.Millisecond)
	require.Less(t, d, srv.ReadTimeout+2*time.Second)
	if got != "" {
		// The read deadline passed: 408 Request Timeout.
		require.True(t, strings.HasPrefix(got, "HTTP/1.1 408 "), "got %q", got)
	}
	require.Equal(t, 0, env.Issuer.Count())
	require.NotContains(t, errLog.String(), "panic")

	// The server still serves.
	resp, err := http.Get("http://" + ln.Addr().String() + "/scep?operation=GetCACaps")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}
