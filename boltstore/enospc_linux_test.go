package boltstore_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/boltstore"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/storetest"
	"github.com/scepkit/scepkit/internal/testserver"
	"github.com/scepkit/scepkit/scep"
)

// smallDisk is a new directory on a tmpfs of size bytes.
func smallDisk(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	testserver.SmallDisk(t, dir, size)
	return dir
}

// TestDiskFull: on a full disk every write fails (a claim is not reported made, a
// record not reported kept, no certificate reported recorded) and what was written
// before is intact; when space returns the store writes again without reopening, the
// failed writes are absent, and the file reopens consistent.
func TestDiskFull(t *testing.T) {
	ctx := context.Background()
	dir := smallDisk(t, 24<<20) // the journal (8 MiB) and the file
	path := filepath.Join(dir, "state.db")
	var logged syncBuffer
	s, err := boltstore.Open(path, &boltstore.Options{Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	require.NoError(t, err)
	defer func() { s.Close() }()
	exp := time.Now().Add(time.Hour)
	big64k := bytes.Repeat([]byte{1}, 64<<10)
	require.NoError(t, s.Claim(ctx, "before", exp))
	require.NoError(t, s.Put(ctx, &crp.Record{TransactionID: "tx-before", Status: scep.Pending, CSR: big64k, Expires: exp}))

	testserver.FillDisk(t, filepath.Join(dir, "filler"))
	// Writes large enough to need new pages, and the file to grow, more than the
	// journal holds.
	var failed int
	for i := 0; i < 256; i++ {
		id := fmt.Sprintf("tx-full-%d", i)
		err := s.Put(ctx, &crp.Record{TransactionID: id, Status: scep.Pending, CSR: big64k, Expires: exp})
		if err == nil {
			continue // the file had free pages left
		}
		failed++
		require.ErrorIs(t, err, syscall.ENOSPC, "the caller can tell the disk is full")
		_, gerr := s.Get(ctx, id)
		require.ErrorIs(t, gerr, crp.ErrNotFound, "a write that failed is there")
	}
	require.NotZero(t, failed, "no write failed on a full disk")
	// Concurrent writes fail together in one group, then each alone: every caller gets
	// its error, none waits forever.
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Put(ctx, &crp.Record{TransactionID: fmt.Sprintf("tx-group-%d", i), Status: scep.Pending,
				CSR: big64k, Expires: exp})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			require.ErrorIs(t, err, syscall.ENOSPC)
			_, gerr := s.Get(ctx, fmt.Sprintf("tx-group-%d", i))
			require.ErrorIs(t, gerr, crp.ErrNotFound)
		}
	}
	cert := storetest.Certificate(t, 777, exp.Truncate(time.Second))
	if err := s.Add(ctx, &crp.IssuedCertificate{Certificate: cert, UserID: "u"}); err != nil {
		_, lerr := s.Lookup(ctx, big.NewInt(777))
		require.ErrorIs(t, lerr, crp.ErrNotFound)
	}
	got, err := s.Get(ctx, "tx-before")
	require.NoError(t, err, "a record written before the disk filled")
	require.Equal(t, big64k, got.CSR)
	require.ErrorIs(t, s.Claim(ctx, "before", exp), challenge.ErrReplayed)

	require.NoError(t, os.Remove(filepath.Join(dir, "filler")))
	// The journal is full: the first write once space returns waits for the next
	// checkpoint attempt, at most a second after the last failed.
	require.Eventually(t, func() bool {
		return s.Put(ctx, &crp.Record{TransactionID: "tx-after-0", Status: scep.Pending, CSR: big64k, Expires: exp}) == nil
	}, 5*time.Second, 50*time.Millisecond, "writing once space returned")
	for i := 1; i < 8; i++ {
		require.NoError(t, s.Put(ctx, &crp.Record{TransactionID: fmt.Sprintf("tx-after-%d", i), Status: scep.Pending,
			CSR: big64k, Expires: exp}), "writing once space returned")
	}
	require.NoError(t, s.Claim(ctx, "after", exp))
	require.NoError(t, s.Close())
	// The operator heard of it before the writes failed, and when it was over.
	require.Contains(t, logged.String(), "level=ERROR msg=\"boltstore: checkpoint failed")
	require.Contains(t, logged.String(), "no space left on device")
	require.Contains(t, logged.String(), "level=INFO msg=\"boltstore: checkpoint made again\"")

	s, err = boltstore.Open(path, nil)
	require.NoError(t, err, "reopening after a full disk")
	pending, err := s.Pending(ctx, "", 0)
	require.NoError(t, err)
	ids := map[string]bool{}
	for _, r := range pending {
		ids[r.TransactionID] = true
		require.Equal(t, big64k, r.CSR, "%s", r.TransactionID)
	}
	require.True(t, ids["tx-before"] && ids["tx-after-7"], "listed %v", ids)
	require.ErrorIs(t, s.Claim(ctx, "after", exp), challenge.ErrReplayed)
	require.NoError(t, boltstore.Check(s), "the file's pages and freelist after a full disk")
}
