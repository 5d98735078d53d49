package boltstore_test

// Stores of a gateway killed under load (their last writes in the journal alone), then
// damaged: Open refuses them with an error that names the file, or opens them with
// every acknowledged write; it never starts silently without writes it acknowledged,
// and never panics or dies of a fault.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/boltstore"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/scep"
)

// killedStore makes a store whose last run was killed: the claim "checkpointed", the
// revocation of serial 7 and 300 pending records are in state.db (a checkpoint), the
// claims "journaled-0" to "journaled-3" in the journal alone (entries 0 to 3 of the
// epoch after that checkpoint). It returns state.db's path.
func killedStore(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := boltstore.Open(path, journalOnly())
	require.NoError(t, err)
	require.NoError(t, s.Claim(ctx, "checkpointed", exp))
	_, err = s.Revoke(ctx, &crp.Revocation{Serial: big.NewInt(7), Reason: 1, RevokedAt: time.Now()})
	require.NoError(t, err)
	for i := range 300 { // enough pages that a truncated file lacks some
		require.NoError(t, s.Put(ctx, &crp.Record{TransactionID: fmt.Sprint("tx-", i), Status: scep.Pending,
			CSR: bytes.Repeat([]byte{byte(i)}, 1000), Expires: exp}))
	}
	require.NoError(t, boltstore.Check(s)) // a checkpoint
	ckpts := boltstore.Checkpoints(s)
	for i := range 4 {
		require.NoError(t, s.Claim(ctx, fmt.Sprint("journaled-", i), exp))
	}
	require.Equal(t, ckpts, boltstore.Checkpoints(s), "a checkpoint moved the journaled claims into state.db")
	require.NoError(t, boltstore.Abandon(s))
	return path
}

// entryOffsets returns the offsets of the journal's first n entries, read from their
// length fields.
func entryOffsets(t *testing.T, jpath string, n int) []int64 {
	t.Helper()
	b, err := os.ReadFile(jpath)
	require.NoError(t, err)
	var offs []int64
	off := int64(0)
	for range n {
		offs = append(offs, off)
		off += 24 + int64(binary.LittleEndian.Uint32(b[off:]))
	}
	return offs
}

// flipByte inverts the byte at off in the file at path.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	var b [1]byte
	_, err = f.ReadAt(b[:], off)
	require.NoError(t, err)
	b[0] ^= 0x10
	_, err = f.WriteAt(b[:], off)
	require.NoError(t, err)
}

// newestMeta returns the offset of bbolt's meta page with the highest transaction id,
// the page size, and the size of the pages in use that meta page gives (its high
// water mark).
func newestMeta(t *testing.T, path string) (off, pageSize, used int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	// A page header (16 bytes), then magic, version, page size, flags (uint32s), the
	// root bucket (16 bytes), the freelist's page id, the high water mark and the
	// transaction id (uint64s).
	pageSize = int64(binary.NativeEndian.Uint32(b[16+8:]))
	txid := func(off int64) uint64 { return binary.NativeEndian.Uint64(b[off+16+48:]) }
	if txid(pageSize) > txid(0) {
		off = pageSize
	}
	return off, pageSize, int64(binary.NativeEndian.Uint64(b[off+16+40:])) * pageSize
}

// truncateTo truncates the file at path to size(its size).
func truncateTo(t *testing.T, path string, size func(int64) int64) {
	t.Helper()
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.NoError(t, os.Truncate(path, size(st.Size())))
}

// TestDamagedStoreRefused: each damage would have Open start without writes it
// acknowledged (a claim made again, a certificate un-revoked) or die; Open refuses it
// with the error that says which, naming the file.
func TestDamagedStoreRefused(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, path string)
		want   error
		names  string // in the error: the file, and where in it
	}{
		{"state.db deleted", func(t *testing.T, path string) {
			require.NoError(t, os.Remove(path))
		}, boltstore.ErrStateMissing, "state.db"},
		{"state.db emptied", func(t *testing.T, path string) {
			require.NoError(t, os.Truncate(path, 0))
		}, boltstore.ErrStateMissing, "state.db"},
		{"bit flipped in entry 0", func(t *testing.T, path string) {
			flipByte(t, path+"-journal", entryOffsets(t, path+"-journal", 1)[0]+30)
		}, boltstore.ErrJournalDamaged, "state.db-journal: entry 0"},
		{"length of entry 0 damaged", func(t *testing.T, path string) {
			flipByte(t, path+"-journal", 1)
		}, boltstore.ErrJournalDamaged, "state.db-journal: entry 0"},
		{"bit flipped in entry 2 of 4", func(t *testing.T, path string) {
			flipByte(t, path+"-journal", entryOffsets(t, path+"-journal", 3)[2]+30)
		}, boltstore.ErrJournalDamaged, "state.db-journal: entry 2"},
		{"journal truncated", func(t *testing.T, path string) {
			truncateTo(t, path+"-journal", func(int64) int64 { return 1 << 20 })
		}, boltstore.ErrJournalDamaged, "state.db-journal"},
		{"journal truncated in entry 1", func(t *testing.T, path string) {
			truncateTo(t, path+"-journal", func(int64) int64 { return entryOffsets(t, path+"-journal", 2)[1] + 10 })
		}, boltstore.ErrJournalDamaged, "state.db-journal"},
		{"newest meta page damaged", func(t *testing.T, path string) {
			off, _, _ := newestMeta(t, path)
			flipByte(t, path, off+16+20) // in the root bucket's page id: the checksum fails
		}, boltstore.ErrJournalAhead, "state.db-journal holds entry 0 of epoch"},
		{"newest meta page and entry 0 damaged", func(t *testing.T, path string) {
			off, _, _ := newestMeta(t, path)
			flipByte(t, path, off+16+20)
			flipByte(t, path+"-journal", entryOffsets(t, path+"-journal", 1)[0]+30)
		}, boltstore.ErrJournalAhead, "state.db-journal holds entry 1 of epoch"},
		{"state.db truncated to half", func(t *testing.T, path string) {
			truncateTo(t, path, func(n int64) int64 { return n / 2 })
		}, boltstore.ErrCorrupt, "state.db"},
		{"state.db lost its last page", func(t *testing.T, path string) {
			_, ps, used := newestMeta(t, path)
			truncateTo(t, path, func(int64) int64 { return used - ps })
		}, boltstore.ErrCorrupt, "state.db"},
		{"state.db lost a few bytes", func(t *testing.T, path string) {
			_, _, used := newestMeta(t, path)
			truncateTo(t, path, func(int64) int64 { return used - 100 })
		}, boltstore.ErrCorrupt, "state.db"},
		{"page ids damaged", func(t *testing.T, path string) {
			st, err := os.Stat(path)
			require.NoError(t, err)
			_, ps, _ := newestMeta(t, path)
			for off := 2 * ps; off < st.Size(); off += ps {
				flipByte(t, path, off) // the page's id
			}
		}, boltstore.ErrCorrupt, "state.db"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := killedStore(t)
			c.damage(t, path)
			before, _ := os.ReadFile(path)
			s, err := boltstore.Open(path, nil)
			if err == nil {
				s.Close()
			}
			require.ErrorIs(t, err, c.want)
			require.ErrorIs(t, err, boltstore.ErrNeedsOperator, "one error says: an operator must look")
			require.Contains(t, err.Error(), c.names)
			after, _ := os.ReadFile(path)
			require.Equal(t, before, after, "a refused Open changed state.db")
		})
	}
}

// TestStateDeletedWhileRunning: a store whose file is deleted while it runs would
// checkpoint into the unlinked file, and its next Open would start without what it
// acknowledged. The checkpoint notices that the path no longer names the file: it
// fails with ErrStateMissing, so do the writes after it and Close, and the operator is
// told (before: the checkpoint and the writes succeeded, into a file no one would open
// again).
func TestStateDeletedWhileRunning(t *testing.T) {
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	path := filepath.Join(t.TempDir(), "state.db")
	var logged syncBuffer
	o := journalOnly()
	o.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	s, err := boltstore.Open(path, o)
	require.NoError(t, err)
	require.NoError(t, s.Claim(ctx, "before", exp))
	require.NoError(t, os.Remove(path))
	require.ErrorIs(t, boltstore.Check(s), boltstore.ErrStateMissing, "a checkpoint into the deleted file")
	require.ErrorIs(t, s.Claim(ctx, "after", exp), boltstore.ErrStateMissing)
	require.ErrorIs(t, s.Close(), boltstore.ErrStateMissing)
	require.Contains(t, logged.String(), "level=ERROR")
	require.Contains(t, logged.String(), path)
	_, err = boltstore.Open(path, nil)
	require.ErrorIs(t, err, boltstore.ErrStateMissing, "the journal holds the claim the deleted file lacks")
}

// TestRecoverableStoreOpens: what a crash or an operator leaves, with nothing lost
// that was acknowledged or with the loss asked for, still opens: the claims and the
// revocation it should hold are there, the ones it should not are not.
func TestRecoverableStoreOpens(t *testing.T) {
	journaled := []string{"journaled-0", "journaled-1", "journaled-2", "journaled-3"}
	for _, c := range []struct {
		name    string
		damage  func(t *testing.T, path string)
		held    []string // claims refused as replays after Open
		revoked bool     // serial 7 is revoked
	}{
		{"killed", func(*testing.T, string) {}, append([]string{"checkpointed"}, journaled...), true},
		{"last entry torn", func(t *testing.T, path string) {
			flipByte(t, path+"-journal", entryOffsets(t, path+"-journal", 4)[3]+30)
		}, append([]string{"checkpointed"}, journaled[:3]...), true},
		{"last entry's header torn", func(t *testing.T, path string) {
			flipByte(t, path+"-journal", entryOffsets(t, path+"-journal", 4)[3]+1)
		}, append([]string{"checkpointed"}, journaled[:3]...), true},
		{"unused tail of state.db cut", func(t *testing.T, path string) {
			_, _, used := newestMeta(t, path)
			truncateTo(t, path, func(int64) int64 { return used })
		}, append([]string{"checkpointed"}, journaled...), true},
		{"journal emptied: the operator opens without it", func(t *testing.T, path string) {
			require.NoError(t, os.Truncate(path+"-journal", 0))
		}, []string{"checkpointed"}, true},
		{"both emptied: the operator starts afresh", func(t *testing.T, path string) {
			require.NoError(t, os.Truncate(path+"-journal", 0))
			require.NoError(t, os.Truncate(path, 0))
		}, nil, false},
		{"both removed: a first start", func(t *testing.T, path string) {
			require.NoError(t, os.Remove(path+"-journal"))
			require.NoError(t, os.Remove(path))
		}, nil, false},
		{"a first start that failed on a full disk", func(t *testing.T, path string) {
			// bbolt made nothing of the file, and the journal's preallocation stopped
			// short: zeros alone.
			require.NoError(t, os.Truncate(path, 0))
			require.NoError(t, os.WriteFile(path+"-journal", make([]byte, 1<<20), 0o600))
		}, nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			exp := time.Now().Add(time.Hour)
			path := killedStore(t)
			c.damage(t, path)
			s, err := boltstore.Open(path, nil)
			require.NoError(t, err)
			defer s.Close()
			held := map[string]bool{}
			for _, id := range c.held {
				held[id] = true
			}
			for _, id := range append([]string{"checkpointed"}, journaled...) {
				err := s.Claim(ctx, id, exp)
				if held[id] {
					require.ErrorIs(t, err, challenge.ErrReplayed, "claim %s lost", id)
				} else {
					require.NoError(t, err, "claim %s", id)
				}
			}
			revoked, err := s.RevokedSince(ctx, time.Time{})
			require.NoError(t, err)
			require.Equal(t, c.revoked, len(revoked) == 1)
			require.NoError(t, boltstore.Check(s))
		})
	}
}

// TestStateTruncatedWhileRunning: a file truncated under a running store (its pages
// mapped by bbolt are gone) makes bbolt fault when the checkpoint reads them; the
// store fails its operations with ErrCorrupt from then on, and Close returns, instead
// of the process dying of SIGBUS (before: "fatal error: fault" in the commit loop).
func TestStateTruncatedWhileRunning(t *testing.T) {
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	path := killedStore(t)
	s, err := boltstore.Open(path, journalOnly())
	require.NoError(t, err)
	require.NoError(t, s.Claim(ctx, "before", exp))
	_, ps, _ := newestMeta(t, path)
	require.NoError(t, os.Truncate(path, 2*ps)) // the meta pages alone
	require.ErrorIs(t, boltstore.Check(s), boltstore.ErrCorrupt, "a checkpoint of a truncated file")
	require.ErrorIs(t, s.Claim(ctx, "after", exp), boltstore.ErrCorrupt)
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		require.ErrorIs(t, err, boltstore.ErrCorrupt)
	case <-time.After(10 * time.Second):
		t.Fatal("Close of a store whose file was truncated still waiting after 10 s")
	}
}

// TestRandomDamageNeverKills: bytes of state.db changed at random (pages, meta pages,
// page headers) make Open fail or open a store whose operations may fail, but never
// end the process with a panic or a fault (before: "assertion failed: Page expected",
// SIGSEGV in bbolt, through Open's replay transaction).
func TestRandomDamageNeverKills(t *testing.T) {
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	orig := killedStore(t)
	file, err := os.ReadFile(orig)
	require.NoError(t, err)
	journal, err := os.ReadFile(orig + "-journal")
	require.NoError(t, err)
	_, ps, used := newestMeta(t, orig)
	failed := 0
	for seed := range 40 {
		rng := rand.New(rand.NewPCG(uint64(seed), 0))
		damaged := bytes.Clone(file)
		for range 8 { // anywhere, and in the headers of pages past the meta pages
			damaged[rng.Int64N(used)] ^= byte(1 << rng.IntN(8))
			damaged[(2+rng.Int64N(used/ps-2))*ps+rng.Int64N(32)] ^= byte(1 << rng.IntN(8))
		}
		path := filepath.Join(t.TempDir(), "state.db")
		require.NoError(t, os.WriteFile(path, damaged, 0o600))
		require.NoError(t, os.WriteFile(path+"-journal", journal, 0o600))
		s, err := boltstore.Open(path, nil)
		if err != nil {
			failed++
			require.ErrorIs(t, err, boltstore.ErrCorrupt, "seed %d", seed)
			continue
		}
		s.Claim(ctx, "checkpointed", exp)
		s.Certificates(ctx, crp.CertificateQuery{})
		s.RevokedSince(ctx, time.Time{})
		s.Pending(ctx, "", 0)
		s.Close() // a checkpoint (not boltstore.Check: bbolt checks in a goroutine of its own)
	}
	t.Logf("%d of 40 damaged files refused", failed)
	require.NotZero(t, failed, "no damage was noticed: the test proves little")
}

// syncBuffer is a bytes.Buffer safe for the commit loop's writes and the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
