package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/boltstore"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/internal/testserver"
	"github.com/scepkit/scepkit/scep"
)

// TestReadyzFullDisk: on a full disk boltstore's checkpoints fail while its writes
// still succeed into the journal (until it is full, 8 MiB later), so /readyz's probe
// write succeeded and it said ready: it must say unready as soon as a checkpoint
// failed, and ready again once one succeeds.
func TestReadyzFullDisk(t *testing.T) {
	p := startInProcess(t, newFixture(t), "", "")
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", 24<<20)); err != nil {
		testserver.Missing(t, "mounting a tmpfs: %v (needs root)", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	bs, err := boltstore.Open(filepath.Join(dir, "state.db"), nil)
	require.NoError(t, err)
	t.Cleanup(func() { bs.Close() })
	p.g.store = bs
	ready := func() int {
		resp, err := p.public.Client().Get(p.public.URL + "/readyz")
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, ready())

	filler, err := os.Create(filepath.Join(dir, "filler"))
	require.NoError(t, err)
	chunk := bytes.Repeat([]byte{0xAA}, 4096)
	for {
		if _, err := filler.Write(chunk); err != nil {
			require.ErrorIs(t, err, syscall.ENOSPC)
			break
		}
	}
	filler.Close()
	// Records large enough that a checkpoint needs the file to grow.
	ctx := context.Background()
	big64k := bytes.Repeat([]byte{1}, 64<<10)
	exp := time.Now().Add(time.Hour)
	journaled := 0
	for i := range 32 {
		if bs.Put(ctx, &crp.Record{TransactionID: fmt.Sprintf("tx-%d", i), Status: scep.Pending, CSR: big64k, Expires: exp}) == nil {
			journaled++
		}
	}
	require.NotZero(t, journaled, "writes go on into the journal")
	require.Eventually(t, func() bool { return bs.Ping(ctx) != nil }, 10*time.Second, 50*time.Millisecond,
		"a checkpoint fails on the full disk")
	require.Eventually(t, func() bool { return ready() == http.StatusServiceUnavailable }, 5*time.Second, 100*time.Millisecond,
		"/readyz says unready while checkpoints fail")
	require.Contains(t, p.logs.String(), "checkpoints failed in a row")

	require.NoError(t, os.Remove(filepath.Join(dir, "filler")))
	require.Eventually(t, func() bool { return ready() == http.StatusOK }, 10*time.Second, 100*time.Millisecond,
		"/readyz ready again once a checkpoint succeeds")
}
