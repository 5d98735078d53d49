package boltstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/boltstore"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/storetest"
	"github.com/scepkit/scepkit/scep"
)

func open(t testing.TB, path string) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(path, nil)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		return storetest.Of(open(t, filepath.Join(t.TempDir(), "state.db")))
	})
}

// Everything written before Close is there after reopening: claims (a replay after a
// restart is refused), records, pending requests, certificates and revocations.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := boltstore.Open(path, nil)
	require.NoError(t, err)
	cert := storetest.Certificate(t, 4242, time.Now().Add(time.Hour).Truncate(time.Second))
	require.NoError(t, s.Claim(ctx, "jti-restart", time.Now().Add(time.Hour)))
	require.NoError(t, s.Put(ctx, &crp.Record{TransactionID: "tx-p", Status: scep.Pending, CSR: []byte{1}, Expires: time.Now().Add(time.Hour)}))
	require.NoError(t, s.Add(ctx, &crp.IssuedCertificate{Certificate: cert, UserID: "u", DeviceID: "d"}))
	_, err = s.Revoke(ctx, &crp.Revocation{Serial: big.NewInt(4242), Reason: 1, RevokedAt: time.Now()})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.ErrorIs(t, s.Claim(ctx, "jti-x", time.Now().Add(time.Hour)), boltstore.ErrClosed)

	s = open(t, path)
	require.ErrorIs(t, s.Claim(ctx, "jti-restart", time.Now().Add(time.Hour)), challenge.ErrReplayed)
	pending, err := s.Pending(ctx, "", 0)
	require.NoError(t, err)
	require.Len(t, pending, 1)
	require.Equal(t, "tx-p", pending[0].TransactionID)
	got, err := s.Lookup(ctx, big.NewInt(4242))
	require.NoError(t, err)
	require.Equal(t, "u", got.UserID)
	revoked, err := s.IsRevoked(ctx, cert)
	require.NoError(t, err)
	require.True(t, revoked)
}

// Expired claims and records are deleted by later commits (the file does not keep
// them), and a replaced record's old expiry does not delete it.
func TestSweep(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "state.db"), &boltstore.Options{Now: func() time.Time { return now }})
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.Claim(ctx, "old", now.Add(time.Minute)))
	require.NoError(t, s.Put(ctx, &crp.Record{TransactionID: "old", Status: scep.Pending, Expires: now.Add(time.Minute)}))
	require.NoError(t, s.Put(ctx, &crp.Record{TransactionID: "kept", Status: scep.Pending, Expires: now.Add(time.Minute)}))
	require.NoError(t, s.Put(ctx, &crp.Record{TransactionID: "kept", Status: scep.Pending, Expires: now.Add(time.Hour)}))
	now = now.Add(2 * time.Minute)
	require.NoError(t, s.Claim(ctx, "new", now.Add(time.Hour))) // a commit: sweeps
	require.Equal(t, 1, boltstore.Count(t, s, "claims"))
	require.Equal(t, 1, boltstore.Count(t, s, "tx"))
	require.Equal(t, 1, boltstore.Count(t, s, "pending"))
	_, err = s.Get(ctx, "kept")
	require.NoError(t, err)
	require.NoError(t, s.Claim(ctx, "old", now.Add(time.Hour)), "an expired claim can be made again")
}

func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	open(t, path)
	_, err := boltstore.Open(path, &boltstore.Options{Timeout: 50 * time.Millisecond})
	require.ErrorContains(t, err, "locked by another Store", "a second process must not open the file in use")
	require.ErrorIs(t, err, boltstore.ErrLocked)
	require.False(t, errors.Is(err, crp.ErrNotFound))
	require.False(t, errors.Is(err, boltstore.ErrNeedsOperator), "a lock passes: a retry may succeed")
}

// A state directory of the earlier layout (issued/, one JSON file per certificate) is
// migrated on the first open: its certificates are in the store, renewals and GetCert
// find them, and issued/ is renamed so that the migration runs once.
func TestOpenDirMigrates(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	old, err := crp.OpenCertificateDir(filepath.Join(dir, "issued"))
	require.NoError(t, err)
	for i := int64(1); i <= 3; i++ {
		require.NoError(t, old.Add(ctx, &crp.IssuedCertificate{Certificate: storetest.Certificate(t, 900+i, time.Now().Add(time.Hour)),
			UserID: "alice", DeviceID: "laptop", ProfileID: "p", Template: "t"}))
	}
	s, n, err := boltstore.OpenDir(dir, nil)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	got, err := s.Lookup(ctx, big.NewInt(902))
	require.NoError(t, err)
	require.Equal(t, "laptop", got.DeviceID)
	list, err := s.Certificates(ctx, crp.CertificateQuery{UserID: "alice"})
	require.NoError(t, err)
	require.Len(t, list, 3)
	require.NoError(t, s.Close())
	require.NoDirExists(t, filepath.Join(dir, "issued"))
	require.DirExists(t, filepath.Join(dir, "issued.migrated"))

	s, n, err = boltstore.OpenDir(dir, nil)
	require.NoError(t, err)
	defer s.Close()
	require.Zero(t, n, "the migration runs once")
	_, err = s.Lookup(ctx, big.NewInt(901))
	require.NoError(t, err)
}

// TestCloseDuringWrites: Close while writers are queueing: every write either
// succeeds and is on disk after reopening, or fails with ErrClosed; no writer waits
// forever, nothing panics (a send on a closed channel, a commit after the file closed).
func TestCloseDuringWrites(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := boltstore.Open(path, nil)
	require.NoError(t, err)
	const writers = 16
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	until := time.Now().Add(time.Hour)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				err := s.Claim(ctx, id, until)
				if err != nil {
					if !errors.Is(err, boltstore.ErrClosed) {
						t.Errorf("%s: %v, want nil or ErrClosed", id, err)
					}
					return
				}
				mu.Lock()
				acked = append(acked, id)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, s.Close())
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("writers still waiting 10 s after Close")
	}
	require.NotEmpty(t, acked)
	s = open(t, path)
	for _, id := range acked {
		require.ErrorIs(t, s.Claim(ctx, id, until), challenge.ErrReplayed, "acknowledged claim %s lost", id)
	}
}

// TestReadsAfterClose: every method of a closed Store returns ErrClosed, reads as
// well as writes (before: reads returned bbolt's "database not open").
func TestReadsAfterClose(t *testing.T) {
	ctx := context.Background()
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "state.db"), nil)
	require.NoError(t, err)
	cert := storetest.Certificate(t, 5, time.Now().Add(time.Hour))
	require.NoError(t, s.Close())
	for name, call := range map[string]func() error{
		"Get":          func() error { _, err := s.Get(ctx, "tx"); return err },
		"Pending":      func() error { _, err := s.Pending(ctx, "", 0); return err },
		"Lookup":       func() error { _, err := s.Lookup(ctx, big.NewInt(5)); return err },
		"Certificates": func() error { _, err := s.Certificates(ctx, crp.CertificateQuery{}); return err },
		"RevokedSince": func() error { _, err := s.RevokedSince(ctx, time.Time{}); return err },
		"IsRevoked":    func() error { _, err := s.IsRevoked(ctx, cert); return err },
		"Put":          func() error { return s.Put(ctx, &crp.Record{TransactionID: "tx"}) },
	} {
		require.ErrorIs(t, call(), boltstore.ErrClosed, name)
	}
}

// TestOpenDirMigratesAgain: an issued/ directory that shows up again beside an
// issued.migrated/ of an earlier migration (an older scepkit run in between wrote
// there) is migrated too, and kept under another name: the gateway starts (before:
// renaming onto the non-empty issued.migrated failed, and OpenDir with it, at every
// start).
func TestOpenDirMigratesAgain(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for round, serial := range []int64{911, 912} {
		old, err := crp.OpenCertificateDir(filepath.Join(dir, "issued"))
		require.NoError(t, err)
		require.NoError(t, old.Add(ctx, &crp.IssuedCertificate{Certificate: storetest.Certificate(t, serial, time.Now().Add(time.Hour)),
			UserID: "alice"}))
		s, n, err := boltstore.OpenDir(dir, nil)
		require.NoError(t, err, "round %d", round)
		require.Equal(t, 1, n)
		_, err = s.Lookup(ctx, big.NewInt(serial))
		require.NoError(t, err)
		require.NoError(t, s.Close())
		require.NoDirExists(t, filepath.Join(dir, "issued"))
	}
	require.DirExists(t, filepath.Join(dir, "issued.migrated"))
	kept, err := filepath.Glob(filepath.Join(dir, "issued.migrated*"))
	require.NoError(t, err)
	require.Len(t, kept, 2, "both migrated directories kept")
}

// TestNotOpened: a Store that Open did not make (a zero one, a nil one) answers
// ErrNotOpen from every method, instead of blocking forever or panicking.
func TestNotOpened(t *testing.T) {
	ctx := context.Background()
	for _, s := range []*boltstore.Store{{}, nil} {
		require.ErrorIs(t, s.Claim(ctx, "c", time.Now().Add(time.Minute)), boltstore.ErrNotOpen)
		_, err := s.Get(ctx, "t")
		require.ErrorIs(t, err, boltstore.ErrNotOpen)
		_, err = s.Lookup(ctx, big.NewInt(1))
		require.ErrorIs(t, err, boltstore.ErrNotOpen)
		_, err = s.RevokedSince(ctx, time.Time{})
		require.ErrorIs(t, err, boltstore.ErrNotOpen)
		_, err = s.Pending(ctx, "", 10)
		require.ErrorIs(t, err, boltstore.ErrNotOpen)
		require.ErrorIs(t, s.Close(), boltstore.ErrNotOpen)
	}
}
