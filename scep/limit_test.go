package scep

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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

// TestMemoryPerQueued: a request waiting for a turn has sent its headers and not its
// body; what it holds bounds what the default MaxQueued lets a flood hold. Measured
// with requests whose body never comes, behind one that holds the only slot.
func TestMemoryPerQueued(t *testing.T) {
	g := &gatedPKI{testPKI: newTestPKI(t), gate: make(chan struct{})}
	ts, s := g.httpServer(t, false)
	s.Responder = ResponderFunc(g.respond)
	s.MaxInFlight, s.MaxQueued = 1, 1<<20
	addr := ts.Listener.Addr().String()
	const head = "POST /?operation=PKIOperation HTTP/1.1\r\nHost: scep\r\nContent-Length: 100\r\n\r\n"
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		_, err = io.WriteString(c, head)
		require.NoError(t, err)
		return c
	}
	dial() // holds the slot: admitted, waiting for its body
	waitFor(t, "the slot taken", func() bool { return len(s.limiter().slots) == 1 })

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const n = 400
	for range n {
		dial()
	}
	waitFor(t, "every request waiting", func() bool { return s.limiter().queued.Load() == n })
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapInuse+after.StackInuse) - int64(before.HeapInuse+before.StackInuse)) / n
	t.Logf("%d requests waiting: %d bytes each (heap and stacks, client side included)", n, per)
	// 19 KB measured (Go 1.26, linux/amd64); the bound leaves room for other versions.
	require.Less(t, per, int64(48<<10))
	require.Zero(t, g.entered.Load(), "a waiting request reached the Responder")
}
