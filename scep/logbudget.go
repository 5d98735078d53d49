package scep

import (
	"sync"
	"time"
)

// logWindow is the period over which a logBudget rations log lines.
const logWindow = time.Second

// logBudget rations log lines: allow reports whether one more may be written now, at
// most max in each logWindow. When not, it counts the line and arms a timer, one at
// a time, that hands the count to flush when the window ends, so that the count of
// the last burst is logged even if nothing follows; no timer is left once it has.
// The zero value is ready to use.
type logBudget struct {
	mu         sync.Mutex
	window     time.Time // start of the current window
	used       int       // lines written in it
	suppressed int64     // lines counted instead since the last flush
	armed      bool      // a timer will flush them
}

func (b *logBudget) allow(now time.Time, max int, flush func(n int64)) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Sub(b.window) >= logWindow {
		b.window, b.used = now, 0
	}
	if b.used < max {
		b.used++
		return true
	}
	b.suppressed++
	if !b.armed {
		b.armed = true
		time.AfterFunc(b.window.Add(logWindow).Sub(now), func() {
			b.mu.Lock()
			n := b.suppressed
			b.suppressed, b.armed = 0, false
			b.mu.Unlock()
			flush(n)
		})
	}
	return false
}

// pending reports the lines counted but not flushed yet, and whether a timer will
// flush them.
func (b *logBudget) pending() (n int64, armed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.suppressed, b.armed
}
