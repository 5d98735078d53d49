package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// ErrStateMissing is returned by [Open] when the file is missing or empty while its
// journal holds writes of an earlier run: bbolt would create an empty file, and the
// store would start without everything its earlier runs acknowledged (claims made
// again, revocations forgotten). Restore the file (with its journal) from a backup; to
// start deliberately with an empty store, empty the journal (truncate it to zero
// bytes) or remove it too.
//
// A Store's writes fail with it, and the Store must be reopened, when its file was
// deleted or replaced while it ran (its checkpoints would go to a file no one opens):
// the path is checked before each checkpoint.
var ErrStateMissing = errors.New("boltstore: the file is missing but its journal holds writes")

// ErrJournalDamaged is returned by [Open] when the journal (path+"-journal") holds
// writes it cannot give back: an entry is damaged and an intact entry of the same
// checkpoint follows it (a crash tears the last entry at most), or the file is
// shorter than it is preallocated to and holds entries (truncated). The error names
// the journal, and the entry and offset. Restore the file with its journal from a
// backup; to open the file without the writes since its last checkpoint, empty the
// journal (truncate it to zero bytes).
var ErrJournalDamaged = errors.New("boltstore: the journal is damaged")

// ErrJournalAhead is returned by [Open] when the journal holds an entry of a later
// checkpoint than the file's: the file is older than its journal, restored from a
// backup without it or damaged (a damaged newest meta page has bbolt read the previous
// checkpoint), and lacks the writes of the checkpoints since. Restore the file with its
// journal; to start deliberately from the file as it is, without those writes, empty
// the journal (truncate it to zero bytes).
var ErrJournalAhead = errors.New("boltstore: the file is older than its journal")

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
		"Restore state.db with its journal from a backup; to start deliberately with an empty store, "+
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
