package boltstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/boltstore"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/storetest"
)

// restore puts backup in place of a new directory's store, with the empty journal
// that opens the file as it is, and opens it.
func restore(t *testing.T, backup []byte) *boltstore.Store {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, boltstore.FileName)
	require.NoError(t, os.WriteFile(path, backup, 0o600))
	require.NoError(t, os.WriteFile(path+"-journal", nil, 0o600))
	return open(t, path)
}

// TestBackup: a backup taken while the store serves holds every write that returned
// before it, certificates and revocations included, and opens on its own; what was
// written after it is not in it. Before, the only backup was a copy of the files
// with the gateway stopped.
func TestBackup(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), boltstore.FileName)
	// A copy a Backup was making when its process ended is removed at Open.
	stale := path + ".backup-123"
	require.NoError(t, os.WriteFile(stale, []byte("half a copy"), 0o600))
	s := open(t, path)
	_, err := os.Stat(stale)
	require.ErrorIs(t, err, os.ErrNotExist)
	until := time.Now().Add(time.Hour)
	cert := storetest.Certificate(t, 4242, until.Truncate(time.Second))
	require.NoError(t, s.Claim(ctx, "before", until))
	require.NoError(t, s.Add(ctx, &crp.IssuedCertificate{Certificate: cert, UserID: "u", DeviceID: "d"}))
	_, err = s.Revoke(ctx, &crp.Revocation{Serial: big.NewInt(4242), Reason: 1, RevokedAt: time.Now()})
	require.NoError(t, err)

	var buf safeBuffer
	n, err := s.Backup(ctx, &buf)
	require.NoError(t, err)
	require.Equal(t, int64(len(buf.Bytes())), n)
	staged, err := filepath.Glob(filepath.Join(filepath.Dir(path), "*.backup-*"))
	require.NoError(t, err)
	require.Empty(t, staged, "the copy made beside the store is removed")
	require.NoError(t, s.Claim(ctx, "after", until))

	r := restore(t, buf.Bytes())
	require.ErrorIs(t, r.Claim(ctx, "before", until), challenge.ErrReplayed)
	require.NoError(t, r.Claim(ctx, "after", until), "written after the backup")
	got, err := r.Lookup(ctx, big.NewInt(4242))
	require.NoError(t, err)
	require.Equal(t, "u", got.UserID)
	revoked, err := r.IsRevoked(ctx, cert)
	require.NoError(t, err)
	require.True(t, revoked)

	// A second backup of the same store, with nothing written since: no checkpoint
	// needed, the same content.
	var again safeBuffer
	_, err = s.Backup(ctx, &again)
	require.NoError(t, err)
	r2 := restore(t, again.Bytes())
	require.ErrorIs(t, r2.Claim(ctx, "after", until), challenge.ErrReplayed)

	require.NoError(t, s.Close())
	_, err = s.Backup(ctx, &again)
	require.ErrorIs(t, err, boltstore.ErrClosed)
}

// TestBackupDuringWrites: writers go on while backups are taken (run with -race);
// each backup holds every claim acknowledged before it began.
func TestBackupDuringWrites(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := open(t, filepath.Join(t.TempDir(), boltstore.FileName))
	until := time.Now().Add(time.Hour)
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				if err := s.Claim(ctx, id, until); err != nil {
					if !errors.Is(err, context.Canceled) {
						t.Errorf("%s: %v", id, err)
					}
					return
				}
				mu.Lock()
				acked = append(acked, id)
				mu.Unlock()
			}
		}()
	}
	seen := 0
	for range 3 {
		// Each backup begins once more claims were acknowledged than the last one saw
		// (waited for, not slept on: on a loaded machine 30 ms may see none).
		var before []string
		require.Eventually(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			if len(acked) <= seen {
				return false
			}
			before = append([]string(nil), acked...)
			return true
		}, 30*time.Second, 5*time.Millisecond)
		seen = len(before)
		var buf safeBuffer
		_, err := s.Backup(ctx, &buf)
		require.NoError(t, err)
		r := restore(t, buf.Bytes())
		require.NotEmpty(t, before)
		for _, id := range before {
			require.ErrorIs(t, r.Claim(ctx, id, until), challenge.ErrReplayed, "claim %s acknowledged before the backup", id)
		}
	}
	cancel()
	wg.Wait()
}

// safeBuffer is a bytes buffer written by one goroutine and read after.
type safeBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (b *safeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b = append(b.b, p...)
	return len(p), nil
}

func (b *safeBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b
}

// heldWriter takes its first write, then holds every later one until released.
type heldWriter struct {
	safeBuffer
	first   chan struct{}
	release chan struct{}
	once    sync.Once
}

func (w *heldWriter) Write(p []byte) (int, error) {
	if len(w.Bytes()) > 0 {
		<-w.release
	}
	n, err := w.safeBuffer.Write(p)
	w.once.Do(func() { close(w.first) })
	return n, err
}

// TestBackupToSlowWriterHoldsNothing: writes go on while a Backup's writer holds,
// also when their checkpoints must grow the file: the read transaction lasts the copy
// beside the store, not the writer. Before, a checkpoint that had to grow the file's
// memory map waited for the writer, and with it every write.
func TestBackupToSlowWriterHoldsNothing(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), boltstore.FileName))
	until := time.Now().Add(time.Hour)
	big := make([]byte, 64<<10)
	for i := range 4 {
		require.NoError(t, s.Put(ctx, &crp.Record{TransactionID: fmt.Sprintf("fill-%d", i), CSR: big, Expires: until}))
	}
	w := &heldWriter{first: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() { _, err := s.Backup(ctx, w); done <- err }()
	<-w.first
	// The writer holds: 200 writes of 64 KiB, enough for checkpoints to grow the
	// file several times over, must all return meanwhile.
	wrote := make(chan error, 1)
	go func() {
		for i := range 200 {
			if err := s.Put(ctx, &crp.Record{TransactionID: fmt.Sprintf("grow-%d", i), CSR: big, Expires: until}); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- nil
	}()
	select {
	case err := <-wrote:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		close(w.release)
		t.Fatal("the writes waited for the backup's writer")
	}
	close(w.release)
	require.NoError(t, <-done)
}
