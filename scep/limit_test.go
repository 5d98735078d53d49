package scep

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/internal/testserver"
)

// gatedPKI is the test PKI whose Responder waits at a gate, counting who reached it.
type gatedPKI struct {
	*testPKI
	gate    chan struct{}
	entered atomic.Int64
}

func (g *gatedPKI) respond(ctx context.Context, req *Request) (*Response, error) {
	g.entered.Add(1)
	<-g.gate
	return g.testPKI.respond(ctx, req)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// A flood of PKIOperations: MaxInFlight are worked on, MaxQueued wait for a turn, the
// rest are answered 503 with Retry-After at once, never reach the Responder, and get
// no certificate; a waiting request whose client leaves gives its place up. Once the
// Responder answers, every admitted request is served.
func TestMaxInFlight(t *testing.T) {
	g := &gatedPKI{testPKI: newTestPKI(t), gate: make(chan struct{})}
	ts, s := g.httpServer(t, false)
	s.Responder = ResponderFunc(g.respond)
	s.MaxInFlight, s.MaxQueued = 2, 3
	fp := sha256.Sum256(g.ca.Raw)
	c := &Client{URL: ts.URL, CAFingerprint: fp[:]}
	ctx := context.Background()

	errs := make([]error, 5)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := newDevice(t)
			_, errs[i] = c.Enroll(ctx, newCSR(t, d.key, "device", "secret"), d.key)
		}()
	}
	waitFor(t, "two requests at the Responder, three waiting", func() bool {
		return g.entered.Load() == 2 && s.limiter().queued.Load() == 3
	})

	// Beyond the queue: 503 at once, body unread.
	resp, err := http.Post(ts.URL+"?operation=PKIOperation", "application/x-pki-message", bytes.NewReader(make([]byte, 1024)))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "1", resp.Header.Get("Retry-After"))
	d := newDevice(t)
	_, err = c.Enroll(ctx, newCSR(t, d.key, "device", "secret"), d.key)
	require.ErrorContains(t, err, "503")

	// GetCACaps and GetCACert are not held up.
	_, err = c.GetCACaps(ctx)
	require.NoError(t, err)

	close(g.gate)
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "request %d", i)
	}
	require.EqualValues(t, 5, g.entered.Load(), "a refused request reached the Responder")
	require.Equal(t, 5, g.issuedCount())
	require.Zero(t, s.limiter().queued.Load())
	require.Zero(t, len(s.limiter().slots))
}

// The zero MaxInFlight bounds by GOMAXPROCS; a negative one does not bound.
func TestMaxInFlightDefaults(t *testing.T) {
	require.Equal(t, inFlightPerCore*runtimeProcs(), cap((&Server{}).limiter().slots))
	require.Equal(t, int64(queuedPerSlot*inFlightPerCore*runtimeProcs()), (&Server{}).limiter().maxQueued)
	require.Nil(t, (&Server{MaxInFlight: -1}).limiter())
	// A negative MaxQueued lets none wait (before: it meant the default queue).
	require.Zero(t, (&Server{MaxQueued: -1}).limiter().maxQueued)
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

// stalled opens a connection to addr that sends a PKIOperation's headers announcing
// a body of 3000 bytes, and then only part of it.
func stalled(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_, err = io.WriteString(c, "POST /?operation=PKIOperation HTTP/1.1\r\nHost: scep\r\nContent-Length: 3000\r\n\r\n0\x82")
	require.NoError(t, err)
	return c
}

// whole opens a connection to addr that sends a PKIOperation of size bytes whole
// (garbage: waiting for a turn comes before parsing).
func whole(t *testing.T, addr string, size int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_, err = fmt.Fprintf(c, "POST /?operation=PKIOperation HTTP/1.1\r\nHost: scep\r\nContent-Length: %d\r\n\r\n%s", size, make([]byte, size))
	require.NoError(t, err)
	return c
}

// TestSlowBodyHoldsNoTurn: clients that send their headers and then trickle or stall
// their body take no turn. Before, a request took its turn before reading its body,
// so that MaxInFlight stalled connections (128 on two cores, renewed every
// ReadTimeout) kept every enrollment out; here one turn and one place in the queue,
// 20 stalled connections, and an enrollment still gets its certificate.
func TestSlowBodyHoldsNoTurn(t *testing.T) {
	p := newTestPKI(t)
	ts, s := p.httpServer(t, false)
	s.MaxInFlight, s.MaxQueued = 1, 1
	for range 20 {
		stalled(t, ts.Listener.Addr().String())
	}
	fp := sha256.Sum256(p.ca.Raw)
	c := &Client{URL: ts.URL, CAFingerprint: fp[:]}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d := newDevice(t)
	_, err := c.Enroll(ctx, newCSR(t, d.key, "device", "secret"), d.key)
	require.NoError(t, err)
	require.Equal(t, 1, p.issuedCount())
	require.Zero(t, len(s.limiter().slots))
	require.Zero(t, s.limiter().queued.Load())
}

// TestBodyTimeout: a body that does not arrive within BodyTimeout is answered 408,
// reaches no Responder and issues nothing; one that arrives in pieces within it is
// served.
func TestBodyTimeout(t *testing.T) {
	g := &gatedPKI{testPKI: newTestPKI(t), gate: make(chan struct{})}
	close(g.gate)
	ts, s := g.httpServer(t, false)
	s.Responder = ResponderFunc(g.respond)
	s.BodyTimeout = 300 * time.Millisecond
	conn := stalled(t, ts.Listener.Addr().String())
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err, "no answer to a stalled body")
	resp.Body.Close()
	require.Equal(t, http.StatusRequestTimeout, resp.StatusCode)
	require.Zero(t, g.entered.Load())
	require.Zero(t, g.issuedCount())
	// Answered, the connection is closed at once: net/http no longer waits, until its
	// ReadTimeout (none here), to discard the body the client withholds.
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(3*time.Second)))
	_, err = conn.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "the connection is closed after the 408")

	// In two pieces, well within the time: served (a CertRep, not a timeout).
	s.BodyTimeout = 5 * time.Second
	d := newDevice(t)
	msg := g.pkcsReq(t, d, "secret")
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	_, err = fmt.Fprintf(c, "POST /?operation=PKIOperation HTTP/1.1\r\nHost: scep\r\nContent-Length: %d\r\n\r\n%s", len(msg), msg[:len(msg)/2])
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond)
	_, err = c.Write(msg[len(msg)/2:])
	require.NoError(t, err)
	resp, err = http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, 1, g.issuedCount())
}

// TestMemoryPerQueued: what a request waiting for a turn holds (it has sent its body,
// 4 KiB here), and what a connection whose body never comes holds (no turn, no place
// in the queue); these bound what a flood can hold. Measured behind a request that
// holds the only turn.
func TestMemoryPerQueued(t *testing.T) {
	g := &gatedPKI{testPKI: newTestPKI(t), gate: make(chan struct{})}
	ts, s := g.httpServer(t, false)
	s.Responder = ResponderFunc(g.respond)
	s.MaxInFlight, s.MaxQueued = 1, 1<<20
	addr := ts.Listener.Addr().String()
	d := newDevice(t)
	msg := g.pkcsReq(t, d, "secret")
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = fmt.Fprintf(c, "POST /?operation=PKIOperation HTTP/1.1\r\nHost: scep\r\nContent-Length: %d\r\n\r\n%s", len(msg), msg)
	require.NoError(t, err)
	waitFor(t, "the turn taken", func() bool { return g.entered.Load() == 1 })

	heap := func() int64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return int64(m.HeapInuse + m.StackInuse)
	}
	const n = 400
	before := heap()
	for range n {
		whole(t, addr, 4096)
	}
	waitFor(t, "every request waiting", func() bool { return s.limiter().queued.Load() == n })
	per := (heap() - before) / n
	t.Logf("%d requests waiting with 4 KiB bodies: %d bytes each (heap and stacks, client side included)", n, per)
	// 29 KB measured (Go 1.26, linux/amd64); the bound leaves room for other versions.
	require.Less(t, per, int64(52<<10))

	before = heap()
	for range n {
		stalled(t, addr)
	}
	waitFor(t, "every stalled body being read", func() bool { return readingBodies() >= n })
	per = (heap() - before) / n
	t.Logf("%d connections stalled in their body: %d bytes each", n, per)
	// 26 KB measured: the connection, its goroutine, and the 3000 bytes announced.
	require.Less(t, per, int64(48<<10))
	require.EqualValues(t, n, s.limiter().queued.Load(), "a stalled body took a place in the queue")
	require.EqualValues(t, 1, g.entered.Load(), "a waiting request reached the Responder")
	close(g.gate)
}

// pkcsReq builds a PKCSReq from d carrying challenge, encrypted to p's RA.
func (p *testPKI) pkcsReq(t testing.TB, d device, challenge string) []byte {
	t.Helper()
	der, _, err := NewRequest(RequestOptions{Type: PKCSReq, TransactionID: fmt.Sprintf("tx-%x", d.self.SerialNumber),
		Payload: newCSR(t, d.key, "device", challenge), Recipient: p.raEnc, SignerCert: d.self, Signer: d.key})
	require.NoError(t, err)
	return der
}

// readingBodies counts the goroutines reading a PKIOperation's body.
func readingBodies() int {
	buf := make([]byte, 16<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "scep.readAllBody(")
}

// stalledN opens a connection to addr that sends a PKIOperation's headers announcing a
// body of size bytes (chunked when size is negative), and then only its first bytes.
func stalledN(t *testing.T, addr string, size int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	head := fmt.Sprintf("Content-Length: %d\r\n\r\n0\x82", size)
	if size < 0 {
		head = "Transfer-Encoding: chunked\r\n\r\n800\r\n" + string(make([]byte, 0x800)) + "\r\n"
	}
	_, err = io.WriteString(c, "POST /?operation=PKIOperation HTTP/1.1\r\nHost: scep\r\n"+head)
	require.NoError(t, err)
	return c
}

// TestBodiesHeldBound: the memory PKIOperation bodies hold from their first byte is
// bounded, whatever the number of connections. Before, every connection that sent its
// headers held what it announced (up to 16 KiB at once) or what it had sent (up to
// MaxBodyBytes) for BodyTimeout, without limit: any number of clients could trickle
// bodies until the process ran out of memory. Beyond the bound a request is answered
// 503 with Retry-After, reaches no Responder and issues nothing; once the senders go,
// enrollments are served again and nothing stays counted.
func TestBodiesHeldBound(t *testing.T) {
	g := &gatedPKI{testPKI: newTestPKI(t), gate: make(chan struct{})}
	close(g.gate)
	ts, s := g.httpServer(t, false)
	s.Responder = ResponderFunc(g.respond)
	s.MaxInFlight, s.MaxQueued, s.MaxBodyBytes = 1, 1, 8<<10
	l := s.limiter()
	require.EqualValues(t, 2*queuedBytesPerPlace, l.bodies.max)
	addr := ts.Listener.Addr().String()

	var conns []net.Conn
	for range 4 { // 4 × 8000 bytes announced: within the bound of 32 KiB
		conns = append(conns, stalledN(t, addr, 8000))
	}
	waitFor(t, "four bodies held", func() bool { return l.bodies.held.Load() == 4*8000 })
	// A fifth, and an enrollment: 503 at once, not a wait for BodyTimeout.
	c := stalledN(t, addr, 8000)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "1", resp.Header.Get("Retry-After"))
	// And its connection closed at once, not held by net/http waiting to discard the
	// body the client withholds (until ReadTimeout; none here).
	require.NoError(t, c.SetReadDeadline(time.Now().Add(3*time.Second)))
	_, err = c.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "the connection is closed after the 503")
	d := newDevice(t)
	resp, err = http.Post(ts.URL+"?operation=PKIOperation", "application/x-pki-message", bytes.NewReader(g.pkcsReq(t, d, "secret")))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)

	// A chunked body grows its count as its bytes arrive, and is refused once the
	// bound is reached, mid-body: 3 × 8000 + 4000 held, then 1, 2 and 4 KiB fit, 8 KiB
	// does not.
	conns[0].Close()
	waitFor(t, "a body given back", func() bool { return l.bodies.held.Load() == 3*8000 })
	conns = append(conns, stalledN(t, addr, 4000))
	waitFor(t, "28000 bytes held", func() bool { return l.bodies.held.Load() == 28000 })
	c = stalledN(t, addr, -1)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	answer := make(chan *http.Response, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			resp.Body.Close()
		}
		answer <- resp
	}()
	var resp2 *http.Response
	for i := 0; resp2 == nil; i++ {
		require.Less(t, i, 8, "a chunked body beyond the bound was not refused")
		require.LessOrEqual(t, l.bodies.held.Load(), l.bodies.max)
		io.WriteString(c, "800\r\n"+string(make([]byte, 0x800))+"\r\n")
		select {
		case resp2 = <-answer:
			require.NotNil(t, resp2)
		case <-time.After(100 * time.Millisecond):
		}
	}
	require.Equal(t, http.StatusServiceUnavailable, resp2.StatusCode)
	require.Equal(t, int64(28000), l.bodies.held.Load())
	require.Zero(t, g.entered.Load())
	require.Zero(t, g.issuedCount())

	for _, c := range conns {
		c.Close()
	}
	c.Close()
	waitFor(t, "every body given back", func() bool { return l.bodies.held.Load() == 0 })
	fp := sha256.Sum256(g.ca.Raw)
	_, err = (&Client{URL: ts.URL, CAFingerprint: fp[:]}).Enroll(context.Background(), newCSR(t, d.key, "device", "secret"), d.key)
	require.NoError(t, err)
	require.Equal(t, 1, g.issuedCount())
	waitFor(t, "the enrollment's body given back", func() bool { return l.bodies.held.Load() == 0 })
}

// TestOverloadLogFlushed: the count of refusals for want of a turn is logged within
// about a second even when no refusal follows. Before, a line was logged only when a
// refusal came a second or more after the last line, so the count of the last burst
// was never logged (1,432 refusals, 106 in no line). Here a burst of 20: the first is
// logged at once, the other 19 in one line about a second later; the timer that
// logged them is not armed again while the server is idle.
func TestOverloadLogFlushed(t *testing.T) {
	p := newTestPKI(t)
	logs := &testserver.Output{}
	s := p.server(false)
	s.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	s.MaxInFlight, s.MaxQueued = 1, -1
	require.NoError(t, s.Validate())
	ts := httptestServer(t, s)
	l := s.limiter()
	l.slots <- struct{}{} // the only turn is taken
	defer l.release()

	const burst = 20
	for range burst {
		resp, err := http.Post(ts.URL+"?operation=PKIOperation", "application/x-pki-message", bytes.NewReader(make([]byte, 64)))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	}
	last := time.Now()
	refusedLogged := func() (lines int, sum int64) {
		for _, rec := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var m struct {
				Msg     string `json:"msg"`
				Refused int64  `json:"refused"`
			}
			require.NoError(t, json.Unmarshal([]byte(rec), &m), rec)
			if m.Msg == "scep: PKIOperation refused: too many requests at once" {
				lines++
				sum += m.Refused
			}
		}
		return lines, sum
	}
	waitFor(t, "every refusal counted in a log line", func() bool {
		_, sum := refusedLogged()
		return sum == burst
	})
	require.Less(t, time.Since(last), 2*logWindow, "the count was logged late")
	lines, _ := refusedLogged()
	require.LessOrEqual(t, lines, 3, "more than a line a second")
	n, armed := l.refusals.pending()
	require.False(t, armed, "a timer armed while idle")
	require.Zero(t, n)
}
