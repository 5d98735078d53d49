// Package filelock takes an exclusive advisory lock on a file, so that processes
// sharing a directory take turns at something only one of them may do (making the CA
// of a state directory on its first start). The lock is released by Unlock, or by the
// end of the process that held it, however it ends.
package filelock

import (
	"context"
	"os"
	"time"
)

// pollEvery is how often Lock tries again while another holds the lock.
const pollEvery = 20 * time.Millisecond

// A Lock is a held lock.
type Lock struct{ f *os.File }

// Acquire opens (creating it, mode 0600) the file at path and locks it, waiting while
// another process, or another Lock of this one, holds it, until ctx ends.
func Acquire(ctx context.Context, path string) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		ok, err := tryLock(f)
		if err != nil {
			f.Close()
			return nil, err
		}
		if ok {
			return &Lock{f: f}, nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, context.Cause(ctx)
		case <-time.After(pollEvery):
		}
	}
}

// Unlock releases the lock.
func (l *Lock) Unlock() error { return l.f.Close() }
