package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"math"
	"os"
)

// ErrNeedsOperator matches every error of [Open] that no retry mends, because the
// file or its journal is not what the store left there: [ErrStateMissing],
// [ErrJournalDamaged], [ErrJournalAhead], [ErrCorrupt], [ErrJournalMissing] and
// [ErrNewerSchema] (errors.Is(err, ErrNeedsOperator) is true for each). An operator
// must look at the files; a program should not restart in a loop on it. ErrLocked and
// I/O errors do not match: they may pass. A running Store's operations fail with
// ErrStateMissing or ErrCorrupt too when its file is lost or damaged under it, and
// then match it as well: reopen the Store once the files are mended.
var ErrNeedsOperator = errors.New("boltstore: the state needs an operator")

// damageError is a sentinel that also matches ErrNeedsOperator.
type damageError string

func (e damageError) Error() string { return string(e) }

// Is reports whether target is ErrNeedsOperator.
func (e damageError) Is(target error) bool { return target == ErrNeedsOperator }

// ErrStateMissing is returned by [Open] when the file is missing or empty while its
// journal holds writes of an earlier run: bbolt would create an empty file, and the
// store would start without everything its earlier runs acknowledged (claims made
// again, revocations forgotten). Restore the file (with its journal) from a backup; to
// start deliberately with an empty store, empty the journal (truncate it to zero
// bytes) or remove it too.
//
// A Store's operations fail with it, and the Store must be reopened, when its file was
// deleted or replaced while it ran (its checkpoints would go to a file no one opens):
// the path is checked before each checkpoint.
var ErrStateMissing error = damageError("boltstore: the file is missing but its journal holds writes")

// ErrJournalDamaged is returned by [Open] when the journal (path+"-journal") holds
// writes it cannot give back: an entry is damaged and an intact entry of the same
// checkpoint follows it (a crash tears the last entry at most), or the file is
// shorter than it is preallocated to and holds entries (truncated). The error names
// the journal, and the entry and offset. Restore the file with its journal from a
// backup; to open the file without the writes since its last checkpoint, empty the
// journal (truncate it to zero bytes).
var ErrJournalDamaged error = damageError("boltstore: the journal is damaged")

// ErrJournalAhead is returned by [Open] when the journal holds an entry of a later
// checkpoint than the file's: the file is older than its journal, restored from a
// backup without it or damaged (a damaged newest meta page has bbolt read the previous
// checkpoint), and lacks the writes of the checkpoints since. Restore the file with its
// journal; to start deliberately from the file as it is, without those writes, empty
// the journal (truncate it to zero bytes).
var ErrJournalAhead error = damageError("boltstore: the file is older than its journal")

// checkStatePresent returns ErrStateMissing when the file at path is missing or empty
// while the journal at jpath holds an entry header at its start: the journal was
// written by an earlier run, whose file held what it acknowledged. A first start has
// neither file; a journal of zero bytes is the operator's choice to start without
// one, and one of zeros alone (its preallocation, on a disk that filled before the
// file had anything) never held a write.
func checkStatePresent(path, jpath string) error {
	st, err := os.Lstat(path)
	var what string
	switch {
	case errors.Is(err, fs.ErrNotExist):
		what = "missing"
	case err == nil && st.Mode().IsRegular() && st.Size() == 0:
		what = "empty"
	default:
		return nil // there, or bolt.Open says why not
	}
	f, err := os.Open(jpath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("boltstore: %s is %s; reading its journal: %w", path, what, err)
	}
	defer f.Close()
	var hdr [journalHeader]byte
	n, err := io.ReadFull(f, hdr[:])
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("boltstore: %s is %s; reading its journal: %w", path, what, err)
	}
	if isZero(hdr[:n]) {
		return nil
	}
	return fmt.Errorf("%w: %s is %s, but its journal %s holds writes of an earlier run "+
		"(an entry of epoch %d at offset 0): opening would start from an empty store without them. "+
		"Restore the file with its journal from a backup; to start deliberately with an empty store, "+
		"empty the journal (truncate it to zero bytes)",
		ErrStateMissing, path, what, jpath, binary.LittleEndian.Uint64(hdr[8:]))
}

// checkPath returns ErrStateMissing when s's path no longer names the file the store
// opened (it was deleted, or another put in its place).
func (s *Store) checkPath() error {
	if s.opened == nil {
		return nil
	}
	st, err := os.Stat(s.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil // cannot tell: the checkpoint goes on, and fails if the disk does
	}
	if err == nil && os.SameFile(st, s.opened) {
		return nil
	}
	return fmt.Errorf("%w: %s no longer names the file this Store opened (deleted or replaced while it ran): "+
		"its checkpoints would go to a file no one opens, so writes fail; the journal %s keeps the writes "+
		"since the last checkpoint. Put the file back and reopen the store",
		ErrStateMissing, s.path, s.path+"-journal")
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// ErrCorrupt is returned by [Open] when the file is damaged: shorter than its meta page
// says it is (truncated), without a valid meta page, or so damaged that bbolt failed
// on it (a fault reading a page that is not there, one of its assertions). A Store's
// operations fail with it, and the Store must be reopened, when that happens to its
// file while it runs. The error names the file. Restore the file with its journal from
// a backup.
var ErrCorrupt error = damageError("boltstore: the file is damaged")

// boltMeta is what checkStateFile reads of one of bbolt's two meta pages: a page header
// (16 bytes), then magic, version, page size, flags (uint32s), the root bucket (its
// page and sequence), the freelist's page, the high-water mark (pages in use), the
// transaction id and the FNV-64a checksum of what precedes it (uint64s), in the
// machine's byte order.
type boltMeta struct {
	pageSize        uint32
	root, freelist  uint64
	highWater, txid uint64
	valid           bool
}

const (
	boltMagic     = 0xED0CDAED
	boltVersion   = 2
	boltMetaStart = 16 // the page header
	boltMetaLen   = 56 // up to the checksum
	noFreelist    = math.MaxUint64
)

func parseMeta(b []byte) boltMeta {
	if len(b) < boltMetaStart+boltMetaLen+8 {
		return boltMeta{}
	}
	m := b[boltMetaStart:]
	e := binary.NativeEndian
	h := fnv.New64a()
	h.Write(m[:boltMetaLen])
	return boltMeta{
		pageSize:  e.Uint32(m[8:]),
		root:      e.Uint64(m[16:]),
		freelist:  e.Uint64(m[32:]),
		highWater: e.Uint64(m[40:]),
		txid:      e.Uint64(m[48:]),
		valid: e.Uint32(m[0:]) == boltMagic && e.Uint32(m[4:]) == boltVersion &&
			e.Uint64(m[boltMetaLen:]) == h.Sum64(),
	}
}

// checkStateFile returns ErrCorrupt when the file at path, a bbolt file, is shorter
// than the pages its meta page says are in use, or has no valid meta page: bbolt would
// read pages past its end through its memory map (a fault), or read garbage. The meta
// page is the one bbolt reads: the valid one with the highest transaction id. A missing
// or empty file is left to bbolt, which creates it.
func checkStateFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return nil // bolt.Open says why
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 || !st.Mode().IsRegular() {
		return nil
	}
	read := func(off int64) boltMeta {
		buf := make([]byte, boltMetaStart+boltMetaLen+8)
		if _, err := f.ReadAt(buf, off); err != nil {
			return boltMeta{}
		}
		return parseMeta(buf)
	}
	// The first meta page is at 0 and gives the page size; the second is one page
	// further. Without the first, the second is looked for where bbolt looks (1 KiB
	// to 16 MiB).
	metas := []boltMeta{read(0)}
	if metas[0].valid {
		metas = append(metas, read(int64(metas[0].pageSize)))
	} else {
		for i := 0; i <= 14; i++ {
			if m := read(1024 << i); m.valid && int64(m.pageSize) == 1024<<i {
				metas = append(metas, m)
				break
			}
		}
	}
	var m boltMeta // the one bbolt reads
	for _, c := range metas {
		if c.valid && (!m.valid || c.txid > m.txid) {
			m = c
		}
	}
	if !m.valid {
		return fmt.Errorf("%w: %s has no valid meta page (it is not a bbolt file, or both are damaged). "+
			"Restore it with its journal from a backup", ErrCorrupt, path)
	}
	need := int64(m.highWater) * int64(m.pageSize)
	switch {
	case m.pageSize < 1024 || m.highWater < 2 || m.highWater > math.MaxInt64/uint64(m.pageSize):
		return fmt.Errorf("%w: %s: its meta page (transaction %d) says %d pages of %d bytes are in use", ErrCorrupt,
			path, m.txid, m.highWater, m.pageSize)
	case st.Size() < need:
		return fmt.Errorf("%w: %s is %d bytes, but its meta page (transaction %d) says %d pages of %d bytes (%d bytes) "+
			"are in use: it was truncated. Restore it with its journal from a backup", ErrCorrupt, path, st.Size(),
			m.txid, m.highWater, m.pageSize, need)
	case m.root >= m.highWater || m.freelist >= m.highWater && m.freelist != noFreelist:
		return fmt.Errorf("%w: %s: its meta page (transaction %d) names pages past the %d in use (root %d, freelist %d)",
			ErrCorrupt, path, m.txid, m.highWater, m.root, m.freelist)
	}
	return nil
}

// corrupt breaks s after bbolt panicked in what (a fault on a page its file lost, an
// assertion on a damaged one): every operation fails with ErrCorrupt from then on. The
// open transaction is rolled back if bbolt can; if that panics too, bbolt may hold its
// lock for good, and Close closes the file instead of waiting for it.
func (s *Store) corrupt(what string, err error) {
	s.broken = fmt.Errorf("%w: %s: %s: %v", ErrCorrupt, s.path, what, err)
	if s.tx != nil {
		if rerr := safely(s.tx.Rollback); errors.Is(rerr, errPanic) {
			s.wedged = true
		}
		s.tx = nil
	}
	if s.log != nil {
		s.log.Error("boltstore: the store's file is damaged; every operation fails until it is reopened",
			"path", s.path, "err", s.broken)
	}
}

// guard runs fn, a step of bbolt's on the open transaction; a panic breaks s (see
// corrupt), and guard returns the error s fails with.
func (s *Store) guard(what string, fn func() error) error {
	err := safely(fn)
	if errors.Is(err, errPanic) {
		s.corrupt(what, err)
		return s.broken
	}
	return err
}
