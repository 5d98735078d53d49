// Package headerbudget bounds the memory that requests whose headers are still being
// received hold, all connections of an http.Server together.
//
// net/http reads a request's headers into memory until they end, up to the server's
// MaxHeaderBytes, and a long header line costs it about two and a half times its
// length. A client that sends almost MaxHeaderBytes of header and then waits holds
// that memory until ReadHeaderTimeout, and nothing but the open-file limit bounds how
// many connections do so at once: 2,000 such connections held over 600 MB with a
// 128 KiB MaxHeaderBytes. A bounded request body does not help, the headers come
// first.
//
// A [Budget] counts the bytes each connection reads while no handler of its runs
// (the headers of its next request, and on TLS the handshake). The first Free bytes
// are the connection's own; beyond them the bytes are taken from Max, shared by all
// connections, and given back when a handler starts, when the connection goes idle
// between requests (also after one net/http answered itself, such as OPTIONS *) or
// when it closes. A connection that needs more than is left is closed, answered 503
// first when it is plain HTTP and has not been served a request yet. Requests with
// ordinary headers never touch Max. The servers it is installed on speak HTTP/1 only:
// HTTP/2 receives one stream's headers while another's handler runs.
//
// A Budget also bounds the connections kept idle between requests (MaxIdle), which
// otherwise each hold a file descriptor and about 21 KB until IdleTimeout.
package headerbudget

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxIdle is the zero MaxIdle: keep-alive connections beyond it are closed as
// they go idle. SCEP clients send a request or two per connection; an idle one
// costs the server about 21 KB and a file descriptor until IdleTimeout.
const DefaultMaxIdle = 1024

// Defaults: a SCEP request's headers are well under 4 KiB, a GET PKIOperation with
// its message in the query about 12 KiB at most. 16 MiB holds 128 connections at a
// 128 KiB MaxHeaderBytes, or over a thousand such GETs, received at once.
const (
	DefaultFree = 4 << 10
	DefaultMax  = 16 << 20
)

// Budget is shared by the connections of one or more servers. Its zero value uses
// DefaultFree and DefaultMax. Do not copy a Budget after first use.
type Budget struct {
	// Free is what each connection may read for a request's headers without drawing
	// on Max; 0 means DefaultFree.
	Free int64
	// Max bounds the bytes beyond Free that connections without a running handler
	// hold, all together; 0 means DefaultMax.
	Max int64
	// MaxIdle bounds the connections kept open idle between requests (keep-alive),
	// all together; 0 means DefaultMaxIdle. A connection that goes idle beyond it is
	// closed, its answer sent: its client reconnects for its next request. Without
	// it, one client that sent a request on each of 15,000 connections and left them
	// idle held 337 MB and 15,000 file descriptors of the quickstart for IdleTimeout
	// (120 s), renewed at will, and once the descriptors ran out no one was served.
	MaxIdle int64

	used atomic.Int64
	idle atomic.Int64
}

func (b *Budget) maxIdle() int64 {
	if b.MaxIdle > 0 {
		return b.MaxIdle
	}
	return DefaultMaxIdle
}

// ErrExhausted is the read error of a connection refused because the budget was
// spent. It reports itself a timeout (net.Error), so that net/http closes the
// connection without an answer of its own, also below TLS.
var ErrExhausted error = exhausted{}

type exhausted struct{}

func (exhausted) Error() string   { return "headerbudget: too many request headers being received" }
func (exhausted) Timeout() bool   { return true }
func (exhausted) Temporary() bool { return false }

func (b *Budget) free() int64 {
	if b.Free > 0 {
		return b.Free
	}
	return DefaultFree
}

func (b *Budget) max() int64 {
	if b.Max > 0 {
		return b.Max
	}
	return DefaultMax
}

// take draws n bytes from the budget, or nothing and false if fewer are left.
func (b *Budget) take(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.max() {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// Used reports the bytes drawn from Max now.
func (b *Budget) Used() int64 { return b.used.Load() }

// Install makes srv's connections accepted on ln draw on b: it wraps srv.Handler
// (http.DefaultServeMux when nil), srv.ConnContext and srv.ConnState, turns HTTP/2 off
// (an empty srv.TLSNextProto, unless set), and returns the listener to serve, with
// Serve or ServeTLS. Call it once per server, before serving. For TLS,
// give it the plain listener and serve with ServeTLS: connections that ln hands out
// already as *tls.Conn (a tls.NewListener) are served unbounded, since net/http must
// see its *tls.Conn to fill r.TLS.
func (b *Budget) Install(srv *http.Server, ln net.Listener) net.Listener {
	h := srv.Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := r.Context().Value(connKey{}).(*conn); ok {
			c.enter()
			defer c.leave()
		}
		if b.idle.Load() >= b.maxIdle() && r.ProtoMajor == 1 {
			// This connection would go idle beyond MaxIdle and be closed: say so in
			// the answer, so that its client does not send its next request on it
			// and lose it (a POST is not retried).
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
	next := srv.ConnContext
	srv.ConnContext = func(ctx context.Context, nc net.Conn) context.Context {
		if next != nil {
			ctx = next(ctx, nc)
		}
		if c := unwrap(nc); c != nil {
			ctx = context.WithValue(ctx, connKey{}, c)
		}
		return ctx
	}
	state := srv.ConnState
	srv.ConnState = func(nc net.Conn, s http.ConnState) {
		if c := unwrap(nc); c != nil {
			if s == http.StateIdle {
				c.idle()
				if !c.countIdle(true) {
					nc.Close() // beyond MaxIdle: its client reconnects
				}
			} else {
				c.countIdle(false)
			}
		}
		if state != nil {
			state(nc, s)
		}
	}
	if srv.TLSNextProto == nil {
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	return &listener{Listener: ln, b: b}
}

// unwrap returns the counting conn under nc, nil if there is none.
func unwrap(nc net.Conn) *conn {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, _ := nc.(*conn)
	return c
}

type connKey struct{}

type listener struct {
	net.Listener
	b *Budget
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if _, ok := c.(*tls.Conn); ok {
		return c, nil
	}
	return &conn{Conn: c, b: l.b}, nil
}

// conn counts what it reads while none of its handlers runs.
type conn struct {
	net.Conn
	b *Budget

	mu       sync.Mutex
	handlers int   // running (HTTP/2 runs several at once)
	read     int64 // bytes read since a handler last started
	charged  int64 // of read, drawn from the budget
	first    bool  // the first byte was read
	tls      bool  // the first byte opened a TLS handshake: no plain-HTTP answer
	served   bool  // a handler has run: a raw answer could follow or mix with its own
	closed   bool
	idling   bool // counted in b.idle
}

// countIdle counts the connection idle (on) or not in b.idle; it reports false when
// going idle would exceed MaxIdle, counting nothing.
func (c *conn) countIdle(on bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if on == c.idling {
		return true
	}
	if !on {
		c.idling = false
		c.b.idle.Add(-1)
		return true
	}
	if c.b.idle.Add(1) > c.b.maxIdle() {
		c.b.idle.Add(-1)
		return false
	}
	c.idling = true
	return true
}

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.account(p[0], int64(n)) {
		c.refuse()
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: ErrExhausted}
	}
	return n, err
}

// account counts n bytes read, b0 the first of them; false when the budget cannot
// hold them.
func (c *conn) account(b0 byte, n int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.first {
		c.first, c.tls = true, b0 == 0x16 // a TLS handshake record
	}
	if c.handlers > 0 || c.closed {
		return true
	}
	c.read += n
	if over := c.read - c.b.free() - c.charged; over > 0 {
		if !c.b.take(over) {
			return false
		}
		c.charged += over
	}
	return true
}

// refuse closes the connection: the budget is spent for now. A plain-HTTP connection
// that has not been served a request is answered 503 first, since another try may
// pass; after a request, net/http may be discarding what is left of its body with the
// answer sent, and a raw answer would be a second one.
func (c *conn) refuse() {
	c.mu.Lock()
	answer := !c.tls && !c.served
	c.mu.Unlock()
	defer c.Conn.Close() // Close gives back what it drew when net/http closes the conn
	if !answer {
		return
	}
	const body = "busy: too many requests being received; try again\n"
	c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	c.Conn.Write([]byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"Connection: close\r\nRetry-After: 5\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body))
}

// enter marks a handler started: what the headers drew goes back.
func (c *conn) enter() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.handlers++
	c.served = true
	c.giveBack()
	c.read = 0
}

// idle marks the connection idle between requests: what its last request drew goes
// back, also when net/http answered it without a handler.
func (c *conn) idle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.giveBack()
	c.read = 0
}

// leave marks a handler done: what comes next is the next request's headers (or the
// rest of this one's body, which net/http discards).
func (c *conn) leave() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.handlers--
}

func (c *conn) giveBack() {
	if c.charged > 0 {
		c.b.used.Add(-c.charged)
		c.charged = 0
	}
}

func (c *conn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.giveBack()
	if c.idling {
		c.idling = false
		c.b.idle.Add(-1)
	}
	c.mu.Unlock()
	return c.Conn.Close()
}
