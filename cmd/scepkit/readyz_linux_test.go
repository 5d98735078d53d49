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
	"github.com/scepkit/scepkit/internal/scepclienttest"
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
	testserver.SmallDisk(t, dir, 24<<20) // the journal (8 MiB) and the file
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

	testserver.FillDisk(t, filepath.Join(dir, "filler"))
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

// TestStopReportsUncleanStore: a gateway stopped while its disk is full cannot make its
// last checkpoint; the next start replays the journal, but the operator must know.
// It logged "stopped" and exited 0, with the store's error logged after it; now the
// store closes before, "stopped" is not said, and the exit status is not 0.
func TestStopReportsUncleanStore(t *testing.T) {
	f := newFixture(t)
	state := f.path("state")
	require.NoError(t, os.MkdirAll(state, 0o700))
	testserver.SmallDisk(t, state, 24<<20)
	r := start(t, f.config(t, "", ""))

	testserver.FillDisk(t, filepath.Join(state, "filler"))
	// Enrollments go on, into the journal, while the checkpoints fail.
	for range 2 {
		out, err := scepclienttest.NewDevice(t).Enroll(r.base+"/scep", "alice@example.com",
			f.challenge(t, "alice@example.com", "alice-laptop"))
		require.NoError(t, err, out)
	}
	require.NoError(t, r.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Fatal("scepkit did not stop on SIGTERM")
	}
	logs := r.Logs()
	require.Contains(t, logs, "closing the store failed")
	require.Error(t, r.waitErr, "the exit status says the store did not close cleanly")
	require.NotContains(t, logs, `"msg":"stopped"`)
	require.Contains(t, logs, "did not close cleanly")
}
