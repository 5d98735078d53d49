package boltstore

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestAsyncSync: the journal a store opens syncs through AIO on Linux, a sync that
// succeeds says so, and a file the kernel refuses the command for (one without an
// fsync operation) is synced with fdatasync(2) from then on, whose own error is
// returned.
func TestAsyncSync(t *testing.T) {
	dir := t.TempDir()
	j, _, err := openJournal(filepath.Join(dir, "journal"))
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	if j.async == nil {
		t.Skip("Linux AIO is not available here (io_setup refused); the journal uses fdatasync(2)")
	}
	for i := 0; i < 3; i++ {
		if err := j.append([]byte("entry")); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	if j.async == nil {
		t.Fatal("a regular file's sync fell back to fdatasync(2)")
	}

	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	a, err := newAsyncSync()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.fdatasync(null); !errors.Is(err, errAsyncRefused) {
		t.Fatalf("AIO fdatasync of %s: %v, want refused", os.DevNull, err)
	}
	a.close()
	nj := &journal{f: null}
	nj.async, _ = newAsyncSync()
	if err := nj.fdatasync(); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("fdatasync of %s after the fallback: %v, want EINVAL", os.DevNull, err)
	}
	if nj.async != nil {
		t.Fatal("the journal kept AIO after a refusal")
	}
}

// TestAsyncSyncLost: when the outcome of a submitted sync cannot be learned (here the
// eventfd is gone before the wait), the context is destroyed, which waits for the
// request, the sync fails (its error may have gone with the request), and the journal
// uses fdatasync(2) from then on. Before, such a request stayed in the ring and the
// next sync took its completion for its own, and said done before its flush was.
func TestAsyncSyncLost(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "big"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a, err := newAsyncSync()
	if err != nil {
		t.Skip("no AIO here:", err)
	}
	// Enough dirty pages that the flush is still running when the wait begins.
	chunk := make([]byte, 1<<20)
	for i := range 64 {
		if _, err := f.WriteAt(chunk, int64(i)<<20); err != nil {
			t.Fatal(err)
		}
	}
	// The eventfd stays open for the kernel; the file the wait reads is closed.
	dup, err := syscall.Dup(a.evfd)
	if err != nil {
		t.Fatal(err)
	}
	kept := a.ev
	defer kept.Close()
	a.ev = os.NewFile(uintptr(dup), "closed")
	a.ev.Close()
	j := &journal{f: f, async: a}
	err = j.fdatasync()
	if err == nil {
		t.Skip("the flush completed before the wait began", err)
	}
	if !errors.Is(err, errAsyncBroken) {
		t.Fatalf("sync with its outcome lost: %v, want errAsyncBroken", err)
	}
	if j.async != nil || !a.closed {
		t.Fatal("the journal kept the AIO context whose request was lost")
	}
	if err := j.fdatasync(); err != nil {
		t.Fatalf("the next sync, with fdatasync(2): %v", err)
	}
}

// BenchmarkSyncFreeCore measures, with one processor (GOMAXPROCS=1), how much of it
// other goroutines get while one goroutine syncs a file again and again: the
// free-core metric is the work a CPU-bound goroutine did while the syncs ran, over
// what it did alone just before (the floor; 1 means the syncs took nothing from it).
// fdatasync(2) holds the processor for as long as the disk takes; the journal's AIO
// sync parks the goroutine instead.
func BenchmarkSyncFreeCore(b *testing.B) {
	for _, mode := range []string{"fdatasync", "aio"} {
		b.Run(mode, func(b *testing.B) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
			f, err := os.Create(filepath.Join(b.TempDir(), "f"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			sync := func() error { return fdatasync(f) }
			if mode == "aio" {
				a, err := newAsyncSync()
				if err != nil {
					b.Skip("no AIO here:", err)
				}
				defer a.close()
				sync = func() error { return a.fdatasync(f) }
			}
			// spin runs a CPU-bound goroutine until work returns, and its rate.
			spin := func(work func()) float64 {
				var stop atomic.Bool
				var n int64
				done := make(chan struct{})
				go func() {
					defer close(done)
					for !stop.Load() {
						n++
						if n%4096 == 0 {
							runtime.Gosched()
						}
					}
				}()
				t0 := time.Now()
				work()
				took := time.Since(t0)
				stop.Store(true)
				<-done
				return float64(n) / took.Seconds()
			}
			b.ResetTimer()
			var took time.Duration
			syncing := spin(func() {
				page := make([]byte, 4096)
				t0 := time.Now()
				for i := 0; i < b.N && err == nil; i++ {
					if _, err = f.WriteAt(page, int64(i%4)*4096); err == nil {
						err = sync()
					}
				}
				took = time.Since(t0)
			})
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			alone := spin(func() { time.Sleep(100 * time.Millisecond) })
			b.ReportMetric(float64(took.Microseconds())/float64(b.N), "µs/sync")
			b.ReportMetric(syncing/alone, "free-core")
		})
	}
}
