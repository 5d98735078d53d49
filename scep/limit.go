package scep

import (
	"context"
	"net/http"
	"runtime"
	"sync/atomic"
	"time"
)

// limiter bounds the PKIOperation requests a Server works on at once, and those
// waiting for a turn.
type limiter struct {
	slots     chan struct{}
	maxQueued int64
	queued    atomic.Int64
	refused   atomic.Int64 // since the last log line
	lastLog   atomic.Int64 // unix ns of the last log line
}

// inFlightPerCore is the zero MaxInFlight's bound per GOMAXPROCS: enough for
// Responders that wait on a remote CA or directory, few enough that a flood cannot
// hold more than a bounded amount of memory (each request up to MaxBodyBytes).
const inFlightPerCore = 64

// queuedPerSlot is the zero MaxQueued's bound per MaxInFlight. A request waiting for
// a turn has sent its headers, not its body: it holds about 19 KB (its goroutine, the
// connection's buffers, the parsed request), so the default queue of 1024 per
// GOMAXPROCS holds about 19 MB per core at most, and drains in a few seconds at a
// core's 200-300 enrollments per second: a load of a thousand devices at once is
// served, not refused.
const queuedPerSlot = 16

func (s *Server) limiter() *limiter {
	s.limOnce.Do(func() {
		n := s.MaxInFlight
		if n < 0 {
			return
		}
		if n == 0 {
			n = inFlightPerCore * runtime.GOMAXPROCS(0)
		}
		q := s.MaxQueued
		switch {
		case q == 0:
			q = queuedPerSlot * n
		case q < 0:
			q = 0
		}
		s.lim = &limiter{slots: make(chan struct{}, n), maxQueued: int64(q)}
	})
	return s.lim
}

// maxQueueWait bounds how long a request waits for a turn. Its context does not end
// when its client goes away: net/http watches the connection only once the body has
// been read, and this wait comes before.
const maxQueueWait = 30 * time.Second

// admit waits for a turn to work on a PKIOperation. It returns false when MaxQueued
// requests already wait, or when ctx ends or maxQueueWait passes first; otherwise the
// caller calls release.
func (l *limiter) admit(ctx context.Context) bool {
	select {
	case l.slots <- struct{}{}:
		return true
	default:
	}
	if l.queued.Add(1) > l.maxQueued {
		l.queued.Add(-1)
		return false
	}
	defer l.queued.Add(-1)
	t := time.NewTimer(maxQueueWait)
	defer t.Stop()
	select {
	case l.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	case <-t.C:
		return false
	}
}

func (l *limiter) release() { <-l.slots }

// overloaded answers a PKIOperation the server has no turn for: 503 with Retry-After,
// before its body is read; SCEP clients retry later. The refusals are logged at most
// once a second, with their count.
func (s *Server) overloaded(w http.ResponseWriter, r *http.Request, l *limiter) {
	s.telemetry().pkiOperation(r.Context(), nil, "overloaded", "")
	n := l.refused.Add(1)
	now := time.Now().UnixNano()
	if last := l.lastLog.Load(); now-last >= int64(time.Second) && l.lastLog.CompareAndSwap(last, now) {
		l.refused.Add(-n)
		s.log().WarnContext(r.Context(), "scep: PKIOperation refused: too many requests at once", "refused", n,
			"remote", r.RemoteAddr)
	}
	w.Header().Set("Retry-After", "1")
	httpError(w, http.StatusServiceUnavailable, "too many requests at once, retry later")
}
