// Package poolwait sends a call again that a server refused a connection for (a
// database or Redis past its connection limit), as soon as one of the client pool's
// own connections is idle, rather than failing it while they are merely busy.
package poolwait

import (
	"context"
	"time"
)

// poll is how often Retry looks for an idle connection in the pool.
const poll = 2 * time.Millisecond

// Retry is for a call whose first attempt failed with err, refused (refused(err) is
// true). It runs attempt again when idle reports an idle connection in the pool
// (looked at every 2 ms), and at the latest every every (each attempt that opens a
// connection costs the server), while the answer is refused, until ctx ends or, when
// until is not zero, until passes. It returns the first answer that is not a
// refusal, or the last refusal: also when an attempt failed otherwise because ctx
// ended meanwhile.
func Retry(ctx context.Context, err error, refused func(error) bool, idle func() bool, every time.Duration,
	until time.Time, attempt func() error) error {
	t := time.NewTicker(poll)
	defer t.Stop()
	next := time.Now().Add(every)
	for until.IsZero() || time.Now().Before(until) {
		select {
		case <-ctx.Done():
			return err
		case <-t.C:
		}
		if !idle() && time.Now().Before(next) {
			continue
		}
		next = time.Now().Add(every)
		switch again := attempt(); {
		case again == nil:
			return nil
		case refused(again):
			err = again
		case ctx.Err() == nil:
			return again
		}
	}
	return err
}
