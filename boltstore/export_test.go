package boltstore

import (
	"errors"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// Count returns the number of keys in the named bucket.
func Count(t testing.TB, s *Store, bucket string) int {
	t.Helper()
	n := 0
	if err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket([]byte(bucket)).Stats().KeyN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// Check runs bbolt's consistency check of the file (every page reachable once, the
// freelist right).
func Check(s *Store) error {
	return s.db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
}
