package scep

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestOverloadKeepsHTTP2Connection: over HTTP/2, an overload 503 leaves the connection
// open. Before, its "Connection: close" made net/http's HTTP/2 server send GOAWAY: every
// other client multiplexed on it (a reverse proxy's shared connection) had to reconnect.
func TestOverloadKeepsHTTP2Connection(t *testing.T) {
	g := &gatedPKI{testPKI: newTestPKI(t), gate: make(chan struct{})}
	s := g.server(false)
	s.Responder = ResponderFunc(g.respond)
	s.MaxInFlight, s.MaxQueued = 1, -1
	ts := httptest.NewUnstartedServer(s)
	ts.EnableHTTP2 = true
	var conns atomic.Int32
	ts.Config.ConnState = func(c net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	ts.StartTLS()
	defer ts.Close()
	c := ts.Client()

	resp, err := c.Get(ts.URL + "?operation=GetCACaps")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, "HTTP/2.0", resp.Proto)
	require.EqualValues(t, 1, conns.Load())

	d := newDevice(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := c.Post(ts.URL+"?operation=PKIOperation", "application/x-pki-message", bytes.NewReader(g.pkcsReq(t, d, "secret")))
		if err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, "the one turn taken", func() bool { return g.entered.Load() == 1 })
	resp, err = c.Post(ts.URL+"?operation=PKIOperation", "application/x-pki-message", bytes.NewReader([]byte("x")))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	resp, err = c.Get(ts.URL + "?operation=GetCACaps")
	require.NoError(t, err)
	resp.Body.Close()
	close(g.gate)
	<-done
	t.Logf("connections: %d", conns.Load())
	require.EqualValues(t, 1, conns.Load(), "one overloaded request closed the shared HTTP/2 connection")
}
