package headerbudget

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// serve starts an http.Server on loopback whose connections draw on b.
func serve(t *testing.T, b *Budget) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "ok")
		}),
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    128 << 10,
	}
	go srv.Serve(b.Install(srv, ln))
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// dial opens a connection to addr, closed when the test ends, and its reader.
func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// get sends one GET with a header of extra bytes on c and reads the answer's status.
func get(t *testing.T, c net.Conn, r *bufio.Reader, extra int) int {
	t.Helper()
	_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: "+strings.Repeat("a", extra)+"\r\n\r\n")
	require.NoError(t, err)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(r, nil)
	require.NoError(t, err)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestStalledHeadersBounded: connections that send most of MaxHeaderBytes of header
// and wait draw on the budget until it is spent; the next such connection is answered
// 503 and closed, while requests with ordinary headers still pass; what the stalled
// connections drew comes back when they close. Without the budget, 2,000 of them held
// over 600 MB.
func TestStalledHeadersBounded(t *testing.T) {
	b := &Budget{Free: 4 << 10, Max: 256 << 10}
	addr := serve(t, b)

	var stalled []net.Conn
	refused := 0
	for i := 0; i < 6; i++ {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer c.Close()
		_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: "+strings.Repeat("a", 100<<10))
		// The server may close before all is sent, once it refused.
		if err == nil {
			stalled = append(stalled, c)
		}
		require.Eventually(t, func() bool { return b.Used() > int64(i)*60<<10 || b.Used() > 150<<10 }, 5*time.Second, 5*time.Millisecond)
		require.LessOrEqual(t, b.Used(), b.Max, "the budget is never overdrawn")
	}
	// Two fit in 256 KiB (about 96 KiB each beyond Free); the others were answered 503.
	for _, c := range stalled {
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err == nil {
			require.Equal(t, "HTTP/1.1 503 Service Unavailable\r\n", line)
			refused++
		}
	}
	require.GreaterOrEqual(t, refused, 3, "stalled connections beyond the budget are refused")

	// A request with ordinary headers is not refused while the budget is spent.
	c, r := dial(t, addr)
	require.Equal(t, http.StatusOK, get(t, c, r, 1000))

	for _, s := range stalled {
		s.Close()
	}
	require.Eventually(t, func() bool { return b.Used() == 0 }, 5*time.Second, 10*time.Millisecond,
		"closed connections give back what they drew")
}

// TestHandlerGivesBack: a request whose headers drew on the budget gives it back when
// its handler starts, so that a keep-alive connection sends request after request.
func TestHandlerGivesBack(t *testing.T) {
	b := &Budget{Free: 4 << 10, Max: 64 << 10}
	addr := serve(t, b)
	c, r := dial(t, addr)
	for i := 0; i < 20; i++ {
		require.Equal(t, http.StatusOK, get(t, c, r, 40<<10), "request %d", i)
		require.Zero(t, b.Used(), "request %d: given back", i)
	}
}

// TestTLS: served with ServeTLS on the plain listener, handlers see r.TLS (client
// certificates stay usable), the budget counts below TLS and gives back at each
// handler, and a refused TLS connection gets no plain-HTTP bytes.
func TestTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)

	b := &Budget{Free: 4 << 10, Max: 64 << 10}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	sawTLS := make(chan bool, 10)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sawTLS <- r.TLS != nil
			io.WriteString(w, "ok")
		}),
		TLSConfig:      &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		MaxHeaderBytes: 128 << 10,
	}
	go srv.ServeTLS(b.Install(srv, ln), "", "")
	t.Cleanup(func() { srv.Close() })

	pool := x509.NewCertPool()
	pool.AddCert(cert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for i := 0; i < 3; i++ {
		req, err := http.NewRequest(http.MethodGet, "https://"+ln.Addr().String()+"/", nil)
		require.NoError(t, err)
		req.Header.Set("X-Pad", strings.Repeat("a", 20<<10))
		resp, err := client.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.True(t, <-sawTLS, "r.TLS is set")
		require.Zero(t, b.Used(), "given back at the handler")
	}

	// Over budget: the connection is closed (TestRefusal checks that no plain-HTTP
	// bytes go below TLS) and what it drew comes back.
	req, err := http.NewRequest(http.MethodGet, "https://"+ln.Addr().String()+"/", nil)
	require.NoError(t, err)
	req.Header.Set("X-Pad", strings.Repeat("a", 100<<10))
	_, err = (&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}).Do(req)
	require.Error(t, err)
	require.Eventually(t, func() bool { return b.Used() == 0 }, 5*time.Second, 10*time.Millisecond)
}

// TestRefusal: a connection refused for want of budget is closed; it is answered 503
// only on plain HTTP before its first request is served (below TLS the bytes would be
// garbage to the client; after a request, net/http may be discarding its body with the
// answer already sent).
func TestRefusal(t *testing.T) {
	for _, tc := range []struct {
		name   string
		first  byte
		served bool
		want   string
	}{
		{"plain HTTP, first request", 'G', false, "HTTP/1.1 503 Service Unavailable\r\n"},
		{"TLS", 0x16, false, ""},
		{"plain HTTP, after a request", 'G', true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			c := &conn{Conn: server, b: &Budget{Free: 1, Max: 1}, served: tc.served}
			done := make(chan error, 1)
			go func() {
				_, err := c.Read(make([]byte, 64))
				done <- err
			}()
			_, err := client.Write(append([]byte{tc.first}, "ET / HTTP/1.1\r\n"...))
			require.NoError(t, err)
			client.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(client)
			require.NoError(t, err, "the connection is closed, not left open")
			if tc.want == "" {
				require.Empty(t, got)
			} else {
				require.True(t, strings.HasPrefix(string(got), tc.want), "%q", got)
			}
			require.ErrorIs(t, <-done, ErrExhausted)
		})
	}
}

// TestIdleGivesBack: requests net/http answers itself (OPTIONS *) run no handler; what
// their headers drew comes back when the connection goes idle, so that one keep-alive
// connection cannot spend the budget for everyone.
func TestIdleGivesBack(t *testing.T) {
	b := &Budget{Free: 4 << 10, Max: 64 << 10}
	addr := serve(t, b)
	c, r := dial(t, addr)
	for i := 0; i < 200; i++ {
		_, err := io.WriteString(c, "OPTIONS * HTTP/1.1\r\nHost: x\r\nX-Pad: "+strings.Repeat("a", 3<<10)+"\r\n\r\n")
		require.NoError(t, err)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(r, nil)
		require.NoError(t, err)
		resp.Body.Close()
	}
	require.Eventually(t, func() bool { return b.Used() == 0 }, 5*time.Second, 10*time.Millisecond)

	// Another client's request with a 12 KiB header (a GET PKIOperation) still passes.
	c2, r2 := dial(t, addr)
	require.Equal(t, http.StatusOK, get(t, c2, r2, 12<<10))
}

// TestIdleBounded: keep-alive connections left idle after a request are kept up to
// MaxIdle (DefaultMaxIdle here); those beyond are closed as they go idle, their
// answer sent, and a new client is still served. Before, every one stayed open until
// IdleTimeout: one client held 15,000 of the quickstart's connections (337 MB, and
// its file descriptors) at no cost.
func TestIdleBounded(t *testing.T) {
	b := new(Budget)
	addr := serve(t, b)
	const n = DefaultMaxIdle + 100
	conns := make([]net.Conn, n)
	for i := range conns {
		c, r := dial(t, addr)
		require.Equal(t, http.StatusOK, get(t, c, r, 0))
		conns[i] = c
	}
	var open atomic.Int64 // connections the server has not closed within 200 ms
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if _, err := c.Read(make([]byte, 1)); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					open.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	require.LessOrEqual(t, open.Load(), int64(DefaultMaxIdle), "idle connections kept beyond the bound")
	require.LessOrEqual(t, b.idle.Load(), int64(DefaultMaxIdle))
	c, r := dial(t, addr)
	require.Equal(t, http.StatusOK, get(t, c, r, 0))
	for _, c := range conns {
		c.Close()
	}
	require.Eventually(t, func() bool { return b.idle.Load() == 0 }, 5*time.Second, 10*time.Millisecond)
}
