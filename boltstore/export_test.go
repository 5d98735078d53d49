package boltstore

import (
	"context"
	"errors"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/scepkit/scepkit/internal/atomicfile"
)

// Count returns the number of keys in the named bucket.
func Count(t testing.TB, s *Store, bucket string) int {
	t.Helper()
	n := 0
	if err := s.view(context.Background(), func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bucket)).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			n++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// Check commits what the journal holds to the file, then runs bbolt's consistency check
// of the file (every page reachable once, the freelist right).
func Check(s *Store) error {
	if err := s.enqueue(context.Background(), &op{read: true, apply: func(*wtx) error { return s.commit() }}); err != nil {
		return err
	}
	return s.db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
}

var errAbandoned = errors.New("boltstore: abandoned by a test")

// Abandon ends s as a crash would: the writes since the last checkpoint are in the
// journal alone, not in the file.
func Abandon(s *Store) error {
	err := s.enqueue(context.Background(), &op{read: true, apply: func(*wtx) error {
		s.tx.Rollback()
		s.broken = errAbandoned
		return nil
	}})
	if cerr := s.Close(); !errors.Is(cerr, errAbandoned) {
		err = errors.Join(err, cerr)
	}
	return err
}

// NoTimedCheckpoints has the stores opened with o checkpoint only when their journal
// is full or they are closed, not every checkpointEvery: what a test writes before
// Abandon stays in the journal alone however slow the machine.
func NoTimedCheckpoints(o *Options) { o.checkpointEvery = time.Hour }

// Checkpoints returns the number of checkpoints s made.
func Checkpoints(s *Store) int64 { return s.checkpoint.Load() }

// RecordDirSyncs has the stores opened with o append each directory they sync to
// *synced, then sync it as they would.
func RecordDirSyncs(o *Options, synced *[]string) {
	o.syncDir = func(dir string) error {
		*synced = append(*synced, dir)
		return atomicfile.SyncDir(dir)
	}
}

// Syncs returns the fdatasyncs s made: one per journal entry, two per checkpoint.
func Syncs(s *Store) int64 { return s.syncs.Load() }
