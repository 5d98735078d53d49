package scep

import (
	"context"
	"log/slog"
	"net/http"
	"runtime"
	"sync/atomic"
	"time"
)

// limiter bounds the PKIOperation requests a Server works on at once, and those
// waiting for a turn, with the bytes of their bodies.
type limiter struct {
	slots          chan struct{}
	maxQueued      int64
	maxQueuedBytes int64
	queued         atomic.Int64
	queuedBytes    atomic.Int64
	bodies         byteBound // the bodies read or being read, until their request ends
	answers        byteBound // the answers built and not yet sent, after their turn
	refusals       logBudget // the log lines of refusals for want of a turn
}

// inFlightPerCore is the zero MaxInFlight's bound per GOMAXPROCS: enough for
// Responders that wait on a remote CA or directory, few enough that a flood cannot
// hold more than a bounded amount of memory (each request up to MaxBodyBytes).
const inFlightPerCore = 64

// queuedPerSlot is the zero MaxQueued's bound per MaxInFlight. A request waiting for
// a turn holds about 19 KB (its goroutine, the connection's buffers, the parsed
// request) and its body (a few KiB; queuedBytesPerPlace on average at most), so the
// default queue of 1024 per GOMAXPROCS holds about 36 MB per core at most, and drains
// in a few seconds at a core's 200-300 enrollments per second: a load of a thousand
// devices at once is served, not refused.
const queuedPerSlot = 16

// queuedBytesPerPlace bounds the bodies waiting together, per place in the queue (and
// at least one MaxBodyBytes body may wait, however short the queue).
const queuedBytesPerPlace = 16 << 10

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
		s.lim = &limiter{slots: make(chan struct{}, n), maxQueued: int64(q),
			maxQueuedBytes: max(int64(q)*queuedBytesPerPlace, s.maxBodyBytes())}
		s.lim.bodies.max = max(int64(n+q)*queuedBytesPerPlace, 2*(s.maxBodyBytes()+1))
		s.lim.answers.max = max(s.lim.bodies.max, minAnswerBytes)
	})
	return s.lim
}

// minAnswerBytes is the least bound on the answers waiting to be sent after their
// turn (a CRL of about 1.7 million entries): an answer larger than the bound is sent
// within its turn instead.
const minAnswerBytes = 64 << 20

// maxQueueWait bounds how long a request waits for a turn.
const maxQueueWait = 30 * time.Second

// full reports whether every turn is taken and MaxQueued requests already wait: a
// request that comes now would be refused, so it is refused before its body is read.
func (l *limiter) full() bool {
	return len(l.slots) == cap(l.slots) && l.queued.Load() >= l.maxQueued
}

// admit waits for a turn to work on a PKIOperation whose body is size bytes. It
// returns false when MaxQueued requests already wait or their bodies and this one
// would exceed the queue's bytes, or when ctx ends (the client went away) or
// maxQueueWait passes first; otherwise the caller calls release.
func (l *limiter) admit(ctx context.Context, size int) bool {
	select {
	case l.slots <- struct{}{}:
		return true
	default:
	}
	n := int64(size)
	if l.queued.Add(1) > l.maxQueued {
		l.queued.Add(-1)
		return false
	}
	defer l.queued.Add(-1)
	if l.queuedBytes.Add(n) > l.maxQueuedBytes {
		l.queuedBytes.Add(-n)
		return false
	}
	defer l.queuedBytes.Add(-n)
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

// byteBound counts bytes held in memory against a bound.
type byteBound struct {
	max  int64
	held atomic.Int64
}

// take counts n more bytes, and reports false, counting nothing, when that would
// exceed the bound.
func (b *byteBound) take(n int64) bool {
	if b.held.Add(n) > b.max {
		b.held.Add(-n)
		return false
	}
	return true
}

// give gives back n bytes counted by take.
func (b *byteBound) give(n int64) {
	if n != 0 {
		b.held.Add(-n)
	}
}

// hold counts n more bytes of PKIOperation bodies held in memory, and reports false,
// counting nothing, when that would exceed the bound. A nil limiter bounds nothing.
func (l *limiter) hold(n int64) bool {
	return l == nil || l.bodies.take(n)
}

// unhold gives back n bytes counted by hold.
func (l *limiter) unhold(n int64) {
	if l != nil {
		l.bodies.give(n)
	}
}

// overloaded answers a PKIOperation the server has no turn for: 503 with Retry-After;
// SCEP clients retry later. The refusals are logged at most once a second, with their
// count (see noteRefused).
func (s *Server) overloaded(w http.ResponseWriter, r *http.Request, l *limiter) {
	s.telemetry().pkiOperation(r.Context(), nil, "overloaded", "")
	l.noteRefused(r.Context(), s.log(), r.RemoteAddr)
	w.Header().Set("Retry-After", "1")
	// The body may be unread, or read in part: closing the connection lets the answer
	// go at once, where net/http would otherwise first read what is left of the body
	// (a client trickling it would wait for its own timeout). HTTP/1 only: over HTTP/2
	// it would end every other stream of the connection (GOAWAY), and a stream's
	// unread body does not hold the answer back.
	answerUnread(w, r, http.StatusServiceUnavailable, "too many requests at once, retry later")
}

// answerUnread answers code and reason to a request whose body may be unread, or read
// in part, and on HTTP/1 closes the connection at once: net/http would otherwise, once
// the answer is sent, wait to discard up to 256 KiB of the body a client withholds,
// holding the connection until its ReadTimeout.
func answerUnread(w http.ResponseWriter, r *http.Request, code int, reason string) {
	if r.ProtoMajor != 1 {
		httpError(w, code, reason)
		return
	}
	w.Header().Set("Connection", "close")
	httpError(w, code, reason)
	http.NewResponseController(w).SetReadDeadline(time.Now())
}

// noteRefused logs a refusal for want of a turn, at most one line a logWindow: the
// first of a window with remote, the refusals after it counted into one line when
// the window ends, so that the count of the last burst is logged even if no refusal
// follows.
func (l *limiter) noteRefused(ctx context.Context, log *slog.Logger, remote string) {
	const msg = "scep: PKIOperation refused: too many requests at once"
	if l.refusals.allow(time.Now(), 1, func(n int64) { log.Warn(msg, "refused", n) }) {
		log.WarnContext(ctx, msg, "refused", 1, "remote", remote)
	}
}
