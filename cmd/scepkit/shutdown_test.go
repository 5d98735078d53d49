package main

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestStopWaitsForHandlers: a request that outlasts the graceful stop has its
// connection closed, and the stores are closed only once its handler has wound down
// (it sees its context end, then releases a challenge or writes a record), within
// drainAfterClose; a handler that does not end by then is counted, for the log.
// Before, the stores were closed as soon as the connections were, under the handlers
// still running, and the gateway logged "stopped".
func TestStopWaitsForHandlers(t *testing.T) {
	defer func(g, d time.Duration) { shutdownGrace, drainAfterClose = g, d }(shutdownGrace, drainAfterClose)
	shutdownGrace = 200 * time.Millisecond

	cases := []struct {
		name      string
		drain     time.Duration
		windDown  time.Duration // how long the handler works once its context ends
		stillThen int64
	}{
		{"handler winds down within the drain", 5 * time.Second, 300 * time.Millisecond, 0},
		{"handler past the drain is counted", 300 * time.Millisecond, 3 * time.Second, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			drainAfterClose = tc.drain
			var running inflight
			var ended atomic.Bool
			started := make(chan struct{})
			srv := &http.Server{Handler: running.track(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				close(started)
				<-r.Context().Done() // the connection closed by the stop
				time.Sleep(tc.windDown)
				ended.Store(true)
			}))}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			go srv.Serve(ln)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ln.Addr().String()+"/scep", nil)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					resp.Body.Close()
				}
			}()
			<-started
			start := time.Now()
			n := stopServers([]*http.Server{srv}, &running)
			took := time.Since(start)
			require.Equal(t, tc.stillThen, n)
			if tc.stillThen == 0 {
				require.True(t, ended.Load(), "the stores would have closed under a running handler")
			} else {
				require.False(t, ended.Load())
				require.Less(t, took, shutdownGrace+tc.drain+2*time.Second, "the drain is bounded")
			}
		})
	}
}
