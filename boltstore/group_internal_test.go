package boltstore

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestGroupCommitOneCore: with one P, writers that are runnable when a group forms share
// its fdatasync. Before the commit loop yielded, 16 writers at once made 0.93 to 1.00
// fdatasyncs per write on one core (every group but a few held one write); the bound
// below is far from both that and the 0.07 measured since (on a virtio disk).
func TestGroupCommitOneCore(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	s, err := Open(filepath.Join(t.TempDir(), "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const writers, each = 16, 40
	ctx := context.Background()
	syncs0 := s.syncs.Load()
	var wg sync.WaitGroup
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := s.Claim(ctx, fmt.Sprint("w", g, "-", i), time.Now().Add(time.Hour)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	per := float64(s.syncs.Load()-syncs0) / (writers * each)
	t.Logf("%.3f fdatasyncs per write", per)
	if per > 0.4 {
		t.Errorf("%.3f fdatasyncs per write from %d writers at once on one core: groups of about one", per, writers)
	}
}
