package boltstore

import (
	"bytes"
	"context"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/storetest"
	"github.com/scepkit/scepkit/scep"
)

var errInjected = errors.New("injected: fdatasync: input/output error")

// inLoop runs fn in s's commit loop, which owns the transaction and the journal.
func inLoop(t *testing.T, s *Store, fn func() error) error {
	t.Helper()
	return s.enqueue(context.Background(), &op{read: true, apply: func(*wtx) error { return fn() }})
}

// failCheckpoint makes s's next checkpoint fail: landed, as a commit whose meta page
// was written but whose fdatasync failed (bbolt's mmap then shows the commit, though
// it may not be on the disk), or not (a full disk: nothing of it is in the file).
func failCheckpoint(t *testing.T, s *Store, landed bool) error {
	t.Helper()
	return inLoop(t, s, func() error {
		s.commitTx = func(tx *bolt.Tx) error {
			if landed {
				if err := tx.Commit(); err != nil {
					return err
				}
			} else {
				tx.Rollback()
			}
			return errInjected
		}
		defer func() { s.commitTx = nil }()
		return s.commit()
	})
}

// openTemp opens a store in a new directory, and returns it and its path.
func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, path
}

// claimed reports whether id's claim is held by a store reopened from path.
func claimed(t *testing.T, path, id string) bool {
	t.Helper()
	s, err := Open(path, nil)
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	defer s.Close()
	err = s.Claim(context.Background(), id, time.Now().Add(time.Hour))
	if err != nil && !errors.Is(err, challenge.ErrReplayed) {
		t.Fatal(err)
	}
	if cerr := Check(s); cerr != nil {
		t.Fatalf("the file after reopening: %v", cerr)
	}
	return err != nil
}

// TestCheckpointFailedAfterMeta: a checkpoint whose commit reports an error after its
// meta page was written (the meta's fdatasync failed) is in the file as bbolt reads it
// from then on, with the next epoch. A claim acknowledged after it must survive a
// crash; if the store cannot promise that, the claim fails (before: the store went on
// writing entries of the old epoch, which the next Open skipped, and the acknowledged
// claim was lost: the challenge could be used again).
func TestCheckpointFailedAfterMeta(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	until := time.Now().Add(time.Hour)
	if err := s.Claim(ctx, "before", until); err != nil {
		t.Fatal(err)
	}
	if err := failCheckpoint(t, s, true); !errors.Is(err, errInjected) {
		t.Fatalf("checkpoint: %v, want the injected error", err)
	}
	errAfter := s.Claim(ctx, "after", until)
	Abandon(s) // a crash
	if !claimed(t, path, "before") {
		t.Fatal("claim acknowledged before the failed checkpoint lost")
	}
	if errAfter == nil && !claimed(t, path, "after") {
		t.Fatal("claim acknowledged after the failed checkpoint lost after a crash")
	}
}

// TestCheckpointFailedJournalShort: after a checkpoint that failed (nothing of it in
// the file), the transaction is rebuilt from the file and the journal; if the journal
// no longer yields every entry acknowledged since the last checkpoint (here one is
// damaged, as by a read error), the store must not go on without it (before: it went
// on silently, and the acknowledged claim was forgotten: the challenge was accepted a
// second time).
func TestCheckpointFailedJournalShort(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	defer s.Close()
	until := time.Now().Add(time.Hour)
	if err := s.Claim(ctx, "first", until); err != nil {
		t.Fatal(err)
	}
	var off int64
	inLoop(t, s, func() error { off = s.j.off; return nil })
	if err := s.Claim(ctx, "second", until); err != nil {
		t.Fatal(err)
	}
	if err := inLoop(t, s, func() error {
		_, err := s.j.f.WriteAt([]byte{0xFF}, off+journalHeader+2)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := failCheckpoint(t, s, false); !errors.Is(err, errInjected) {
		t.Fatalf("checkpoint: %v, want the injected error", err)
	}
	if err := s.Claim(ctx, "second", until); err == nil {
		t.Fatal("an acknowledged claim was accepted again after the transaction was rebuilt without it")
	}
	// Close does not wait forever on a broken store (bbolt's Close waits for an open
	// write transaction).
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close of a broken store still waiting after 10 s")
	}
}

// TestHugeWrite: a group too large for the journal is committed to the file at once;
// it leaves nothing to checkpoint (before: the store counted itself dirty and made an
// empty checkpoint, two fdatasyncs, a second later) and does not keep a buffer of its
// size (before: 12 MiB held for the store's life after one 9 MiB record).
func TestHugeWrite(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	huge := bytes.Repeat([]byte{7}, journalSize+1<<20)
	if err := s.Put(ctx, &crp.Record{TransactionID: "huge", Status: scep.Pending, CSR: huge, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if n := Checkpoints(s); n != 1 {
		t.Fatalf("%d checkpoints after a write larger than the journal, want 1", n)
	}
	var dirty bool
	var held int
	inLoop(t, s, func() error { dirty, held = s.j.off > 0, cap(s.w.payload)+cap(s.j.buf); return nil })
	if dirty {
		t.Error("the store has writes to checkpoint after committing the only one it had")
	}
	if held > checkpointBytes {
		t.Errorf("%d bytes of buffers held after the write, want at most %d", held, checkpointBytes)
	}
	Abandon(s)
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := s.Get(ctx, "huge")
	if err != nil || !bytes.Equal(r.CSR, huge) {
		t.Fatalf("the huge record after a crash: %v", err)
	}
}

// TestCloseTwice: a second Close returns nil, as the first did (before: the journal's
// "file already closed").
func TestCloseTwice(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestJournalWriteFails: a group whose journal entry cannot be written fails as a
// whole and is undone: its claim is not made (the same claim succeeds later), the
// writes before it are intact, and after a crash the file holds exactly the writes
// that returned nil.
func TestJournalWriteFails(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	until := time.Now().Add(time.Hour)
	if err := s.Claim(ctx, "before", until); err != nil {
		t.Fatal(err)
	}
	var saved *os.File
	must(t, inLoop(t, s, func() error {
		ro, err := os.Open(path + "-journal") // read-only: the entry's write fails
		saved, s.j.f = s.j.f, ro
		return err
	}))
	if err := s.Claim(ctx, "failed", until); err == nil {
		t.Fatal("a claim whose journal entry could not be written succeeded")
	}
	must(t, inLoop(t, s, func() error {
		ro := s.j.f
		s.j.f = saved
		return ro.Close()
	}))
	if err := s.Claim(ctx, "failed", until); err != nil {
		t.Fatalf("the failed claim was kept: %v", err)
	}
	if err := s.Claim(ctx, "before", until); !errors.Is(err, challenge.ErrReplayed) {
		t.Fatalf("the claim before the failure: %v", err)
	}
	Abandon(s)
	if !claimed(t, path, "before") || !claimed(t, path, "failed") {
		t.Fatal("an acknowledged claim lost after a crash")
	}
}

// TestFailedWriteUndone: a write that fails after some of its mutations (the index key
// of a 40 KB user id is over bbolt's limit) is undone alone, in the open transaction and
// in the journal: the certificate it would have replaced keeps its record and indexes,
// after a crash too.
func TestFailedWriteUndone(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	cert := storetest.Certificate(t, 1, time.Now().Add(time.Hour).Truncate(time.Second))
	must(t, s.Add(ctx, &crp.IssuedCertificate{Certificate: cert, UserID: "u"}))
	if err := s.Add(ctx, &crp.IssuedCertificate{Certificate: cert, UserID: strings.Repeat("x", 40000)}); err == nil {
		t.Fatal("a certificate with a 40 KB user id recorded")
	}
	check := func(s *Store) {
		t.Helper()
		got, err := s.Lookup(ctx, big.NewInt(1))
		if err != nil || got.UserID != "u" {
			t.Fatalf("the certificate after the failed write: %v", err)
		}
		for _, q := range []crp.CertificateQuery{{UserID: "u"}, {}} {
			if l, err := s.Certificates(ctx, q); err != nil || len(l) != 1 {
				t.Fatalf("%+v lists %d certificates (%v), want 1", q, len(l), err)
			}
		}
		for _, b := range indexBuckets {
			if n := Count(t, s, string(b)); n != 1 {
				t.Fatalf("%d keys in %s, want 1", n, b)
			}
		}
	}
	check(s)
	Abandon(s)
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check(s)
	must(t, Check(s))
}

// TestCloseBroken: Close of a store that an earlier failure left broken returns that
// failure (before: nil, as if its writes were committed to the file), without waiting
// for the write transaction it no longer has.
func TestCloseBroken(t *testing.T) {
	s, _ := openTemp(t)
	must(t, s.Claim(context.Background(), "a", time.Now().Add(time.Hour)))
	if err := failCheckpoint(t, s, true); !errors.Is(err, errInjected) {
		t.Fatalf("checkpoint: %v, want the injected error", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Close of a broken store returned nil")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close of a broken store still waiting after 10 s")
	}
}

// TestJournalSyncFails: a claim whose journal entry was written but not synced (the
// fdatasync failed) is reported failed, so it must not be held after a crash either:
// the device retries with the same challenge (before: the entry, intact in the page
// cache, was applied by the next Open, and the retry was refused as a replay).
func TestJournalSyncFails(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	until := time.Now().Add(time.Hour)
	must(t, s.Claim(ctx, "before", until))
	must(t, inLoop(t, s, func() error {
		s.j.sync = func(*os.File) error { s.j.sync = nil; return errInjected }
		return nil
	}))
	if err := s.Claim(ctx, "failed", until); !errors.Is(err, errInjected) {
		t.Fatalf("claim whose entry was not synced: %v, want the injected error", err)
	}
	Abandon(s)
	if claimed(t, path, "failed") {
		t.Fatal("a claim reported failed is held after a crash")
	}
}

// TestOperationPanicFailsAlone: an operation that panics (a value it cannot decode in a
// damaged file, say) fails with an error instead of ending the process from the commit
// loop (before: the panic killed it); the writes of its group are not acknowledged,
// what was acknowledged before stays, and the store goes on.
func TestOperationPanicFailsAlone(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	must(t, s.Claim(ctx, "before", time.Now().Add(time.Hour)))
	boom := func(*wtx) error { panic("decoding a damaged value") }
	if err := s.view(ctx, func(*bolt.Tx) error { panic("decoding a damaged value") }); !errors.Is(err, errPanic) {
		t.Fatalf("a read that panicked: %v, want errPanic", err)
	}
	if err := s.write(ctx, boom); !errors.Is(err, errPanic) {
		t.Fatalf("a write that panicked: %v, want errPanic", err)
	}
	must(t, s.Claim(ctx, "after", time.Now().Add(time.Hour)))
	must(t, Check(s))
	Abandon(s)
	for _, id := range []string{"before", "after"} {
		if !claimed(t, path, id) {
			t.Fatalf("claim %q lost", id)
		}
	}
}

// TestSweepPanicFailsGroup: the expiry sweep that follows a group's writes reads
// stored index keys too; a damaged one (shorter than its time) fails the group with
// errPanic instead of ending the process.
func TestSweepPanicFailsGroup(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	defer s.Close()
	damage := func(w *wtx) error { return w.put(bClaimExp, []byte{0}, nil) }
	// The group that writes the damaged key sweeps it at once.
	if err := s.write(ctx, damage); !errors.Is(err, errPanic) {
		t.Fatalf("a group whose sweep met a damaged key: %v, want errPanic", err)
	}
	if err := s.Claim(ctx, "after", time.Now().Add(time.Hour)); err != nil && !errors.Is(err, errPanic) {
		t.Fatalf("the next write: %v", err)
	}
}

// TestPingFollowsCheckpoints: while checkpoints fail, writes still succeed into the
// journal, so a probe write says nothing; Ping fails with the checkpoint's error until
// a checkpoint succeeds again (before, a full disk left /readyz ready until the
// journal was full).
func TestPingFollowsCheckpoints(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	defer s.Close()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping of a new store: %v", err)
	}
	until := time.Now().Add(time.Hour)
	if err := s.Claim(ctx, "a", until); err != nil {
		t.Fatal(err)
	}
	if err := failCheckpoint(t, s, false); !errors.Is(err, errInjected) {
		t.Fatalf("checkpoint: %v, want the injected error", err)
	}
	if err := s.Claim(ctx, "b", until); err != nil {
		t.Fatalf("a write into the journal while checkpoints fail: %v", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, errInjected) {
		t.Fatalf("ping while checkpoints fail: %v, want the checkpoint's error", err)
	}
	if err := inLoop(t, s, s.commit); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping after a checkpoint succeeded: %v", err)
	}
}
