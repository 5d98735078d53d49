package boltstore

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// replayed opens a bbolt file, applies the journal at jpath for epoch, and returns how
// many entries it applied and the claims bucket's keys after.
func replayed(t *testing.T, jpath string, epoch uint64) (int, []string) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	j, _, err := openJournal(jpath)
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	j.epoch = epoch
	var n int
	var got []string
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		var err error
		if n, err = j.replay(tx, math.MaxUint64); err != nil {
			return err
		}
		return tx.Bucket(bClaims).ForEach(func(k, _ []byte) error { got = append(got, string(k)); return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	return n, got
}

func entry(kind byte, key string) []byte {
	return appendMutation(nil, kind, bucketIndex(bClaims), []byte(key), []byte("v"))
}

// The journal applies its epoch's entries in order and stops at the first torn, out of
// sequence or older one: an entry left from before the last checkpoint is never
// applied again (here, it would bring back a deleted claim).
func TestJournalFraming(t *testing.T) {
	cases := []struct {
		name   string
		write  func(t *testing.T, j *journal)
		epoch  uint64
		n      int
		claims []string
	}{
		{"in order", func(t *testing.T, j *journal) {
			j.restart(7)
			must(t, j.append(entry(mutPut, "a")), j.append(entry(mutPut, "b")), j.append(entry(mutDelete, "a")))
		}, 7, 3, []string{"b"}},
		{"other epoch", func(t *testing.T, j *journal) {
			j.restart(7)
			must(t, j.append(entry(mutPut, "a")))
		}, 8, 0, nil},
		{"left from the previous epoch", func(t *testing.T, j *journal) {
			j.restart(7)
			must(t, j.append(entry(mutPut, "a")), j.append(entry(mutPut, "b")))
			j.restart(8) // a checkpoint: "a" and "b" are in the file
			must(t, j.append(entry(mutDelete, "b")))
		}, 8, 1, nil},
		{"torn last entry", func(t *testing.T, j *journal) {
			j.restart(7)
			must(t, j.append(entry(mutPut, "a")))
			off := j.off
			must(t, j.append(entry(mutPut, "b")))
			if _, err := j.f.WriteAt([]byte{0xFF}, off+journalHeader+3); err != nil {
				t.Fatal(err)
			}
		}, 7, 1, []string{"a"}},
		{"torn header", func(t *testing.T, j *journal) {
			j.restart(7)
			must(t, j.append(entry(mutPut, "a")))
			off := j.off
			must(t, j.append(entry(mutPut, "b")))
			if _, err := j.f.WriteAt([]byte{0xFF, 0xFF, 0xFF, 0x7F}, off); err != nil {
				t.Fatal(err)
			}
		}, 7, 1, []string{"a"}},
		{"a failed write's place taken", func(t *testing.T, j *journal) {
			j.restart(7)
			must(t, j.append(entry(mutPut, "a")))
			off, seq := j.off, j.seq
			must(t, j.append(entry(mutPut, "failed")))
			j.off, j.seq = off, seq // as append leaves them when its sync fails
			must(t, j.append(entry(mutPut, "c")))
		}, 7, 2, []string{"a", "c"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "journal")
			j, _, err := openJournal(path)
			if err != nil {
				t.Fatal(err)
			}
			c.write(t, j)
			j.close()
			if st, err := os.Stat(path); err != nil || st.Size() != journalSize {
				t.Fatalf("journal size %v, %v; want %d", st.Size(), err, journalSize)
			}
			n, claims := replayed(t, path, c.epoch)
			if n != c.n || len(claims) != len(c.claims) {
				t.Fatalf("applied %d entries, claims %q; want %d, %q", n, claims, c.n, c.claims)
			}
			for i := range claims {
				if claims[i] != c.claims[i] {
					t.Fatalf("claims %q, want %q", claims, c.claims)
				}
			}
		})
	}
}

func must(t *testing.T, errs ...error) {
	t.Helper()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzJournalPayload: a journal entry whose frame is intact (right epoch, sequence and
// checksum) but whose payload is anything is applied or refused, never a panic, and
// what it applies leaves a consistent file.
func FuzzJournalPayload(f *testing.F) {
	f.Add(entry(mutPut, "a"))
	f.Add(append(entry(mutPut, "a"), entry(mutDelete, "a")...))
	f.Add([]byte{mutPut, 200, 1, 'k', 1, 'v'})
	f.Add([]byte{mutDelete, 1, 0})
	f.Add([]byte{9, 1, 1, 'k'})
	f.Add([]byte{mutPut, 1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	db, err := bolt.Open(filepath.Join(f.TempDir(), "db"), 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		f.Fatal(err)
	}
	errRollback := errors.New("rolled back")
	f.Fuzz(func(t *testing.T, payload []byte) {
		err := db.Update(func(tx *bolt.Tx) error {
			if err := applyMutations(tx, payload); err != nil {
				return errRollback
			}
			for err := range tx.Check() {
				t.Fatalf("after %x: %v", payload, err)
			}
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			t.Fatal(err)
		}
	})
}

// An entry well framed but not applicable fails Open with errJournal (nothing is
// guessed), and the file is left as it was.
func TestJournalBadEntryRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var epoch uint64
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *bolt.Tx) error { epoch = binary.BigEndian.Uint64(tx.Bucket(bMeta).Get(keyEpoch)); return nil })
	db.Close()
	j, _, err := openJournal(path + "-journal")
	if err != nil {
		t.Fatal(err)
	}
	j.restart(epoch)
	must(t, j.append(entry(mutPut, "good")), j.append([]byte{mutPut, 200, 1, 'k', 1, 'v'}))
	j.close()
	if _, err := Open(path, nil); !errors.Is(err, errJournal) || !errors.Is(err, ErrJournalDamaged) {
		t.Fatalf("Open with an entry naming bucket 200: %v, want errJournal and ErrJournalDamaged", err)
	}
	if n := keysIn(t, path, bClaims); n != 0 {
		t.Fatalf("the file has %d claims after a refused journal, want 0", n)
	}
}

func keysIn(t *testing.T, path string, bucket []byte) int {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	db.View(func(tx *bolt.Tx) error { n = tx.Bucket(bucket).Stats().KeyN; return nil })
	return n
}
