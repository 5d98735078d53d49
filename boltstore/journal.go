package boltstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"

	bolt "go.etcd.io/bbolt"
)

// The journal makes a group of writes durable with one sequential write and one
// fdatasync, where a bbolt commit costs two fdatasyncs and a write for every page the
// group dirtied (a dozen for an enrollment: each bucket's leaf, branch pages, the
// freelist, the meta page). The writes are applied to a bbolt write transaction that
// stays open, and that transaction is committed (a checkpoint) every checkpointEvery,
// or when the journal holds checkpointBytes, so that its pages are written once for
// many groups.
//
// The file is preallocated with zeros, so that an fdatasync writes data blocks only
// (no file-system metadata: no change of size, no unwritten extents to convert). It
// holds one run of entries, each
//
//	length uint32 | crc32c uint32 | epoch uint64 | seq uint64 | payload (length bytes)
//
// where the CRC covers epoch, seq and payload, epoch is the checkpoint the entry
// follows (kept in the meta bucket, raised by each checkpoint) and seq counts the
// entries of the epoch from 0. A checkpoint commits the epoch's writes and the next
// epoch in one bbolt transaction; the journal is then written again from its start.
// On open, the entries of the file's epoch are applied in order, up to the first that
// is torn, of another epoch or out of sequence, and committed (an intact entry of the
// epoch after that one means the journal was damaged, not torn by a crash: Open
// refuses it); the next epoch is the file's plus one. An entry of a later epoch than
// the file's (at the journal's start: the latest any entry has) means the file is
// older than its journal, and Open refuses it, so that no epoch is used twice, and no
// checkpoint's writes are lost silently. Entries hold physical
// writes (put or delete of a key in a bucket), so applying one twice is harmless.
//
// The payload is a run of mutations: kind byte (mutPut, mutDelete) | bucket byte (its
// index in allBuckets) | uvarint key length | key | for a put, uvarint value
// length | value.

const (
	// journalSize is the journal file's size.
	journalSize = 8 << 20
	// journalHeader is the size of an entry's header.
	journalHeader = 24
	mutPut        = 1
	mutDelete     = 2
)

var (
	// keyEpoch (in the meta bucket) is the journal epoch the file's content follows.
	keyEpoch = []byte("journal-epoch")
	// keyClosed (in the meta bucket) is the epoch a Close committed: the journal holds
	// no entry the file lacks. Open deletes it.
	keyClosed = []byte("closed-epoch")
	castagno  = crc32.MakeTable(crc32.Castagnoli)
	// errAsyncRefused marks an asynchronous fdatasync whose submission the kernel
	// refused (nothing of it ran): the journal syncs with fdatasync(2) instead.
	errAsyncRefused = errors.New("boltstore: asynchronous fdatasync refused")
	// errAsyncBroken marks an asynchronous fdatasync whose outcome could not be
	// learned after submission: the sync counts as failed (its error, if the flush had
	// one, may have gone with the request), and the journal closes the AIO context
	// (which waits for the request) and uses fdatasync(2) from then on.
	errAsyncBroken = errors.New("boltstore: asynchronous fdatasync lost")
	// errJournal marks a journal entry that is well framed but cannot be applied.
	errJournal = errors.New("boltstore: journal entry cannot be applied")
)

// journal is the store's journal file. It is used by the commit loop alone.
type journal struct {
	f     *os.File
	epoch uint64 // of the entries being written
	seq   uint64 // of the next entry
	off   int64  // where the next entry goes
	buf   []byte
	sync  func(*os.File) error // nil means fdatasync; tests make it fail
	// async makes the fdatasyncs without holding a processor (see asyncSync); nil
	// where that is not available, or once the file system refused it.
	async *asyncSync
}

// openJournal opens (creating and preallocating as needed) the journal at path. The
// caller syncs the directory of a journal it created (created true).
func openJournal(path string) (j *journal, created bool, err error) {
	_, statErr := os.Lstat(path)
	created = errors.Is(statErr, os.ErrNotExist)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, false, err
	}
	if st.Size() < journalSize {
		// Write zeros rather than fallocate: an extent fallocate leaves unwritten would
		// make each first write to it a metadata change, journaled by the file system.
		zeros := make([]byte, 1<<20)
		for off := st.Size(); off < journalSize; off += int64(len(zeros)) {
			n := min(int64(len(zeros)), journalSize-off)
			if _, err := f.WriteAt(zeros[:n], off); err != nil {
				f.Close()
				return nil, false, err
			}
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, false, err
		}
	}
	j = &journal{f: f}
	if a, err := newAsyncSync(); err == nil {
		j.async = a
	}
	return j, created, nil
}

// fits reports whether an entry with a payload of n bytes fits after the last.
func (j *journal) fits(n int) bool {
	return j.off+journalHeader+int64(n) <= journalSize
}

// append writes an entry and syncs it. On an error the entry counts as not written:
// the next one goes in its place, and its header is overwritten with zeros (best
// effort: on a disk that fails every write, it may stay), so that a crash before the
// next entry does not bring back a write reported failed.
func (j *journal) append(payload []byte) (err error) {
	defer func() {
		if err != nil {
			var zeros [journalHeader]byte
			if _, werr := j.f.WriteAt(zeros[:], j.off); werr == nil {
				j.fdatasync()
			}
		}
	}()
	j.buf = append(j.buf[:0], make([]byte, journalHeader)...)
	binary.LittleEndian.PutUint32(j.buf[0:], uint32(len(payload)))
	binary.LittleEndian.PutUint64(j.buf[8:], j.epoch)
	binary.LittleEndian.PutUint64(j.buf[16:], j.seq)
	j.buf = append(j.buf, payload...)
	binary.LittleEndian.PutUint32(j.buf[4:], crc32.Checksum(j.buf[8:], castagno))
	if _, err := j.f.WriteAt(j.buf, j.off); err != nil {
		return fmt.Errorf("boltstore: writing the journal: %w", err)
	}
	if err := j.fdatasync(); err != nil {
		return fmt.Errorf("boltstore: syncing the journal: %w", err)
	}
	j.off += int64(len(j.buf))
	j.seq++
	if cap(j.buf) > checkpointBytes {
		j.buf = nil
	}
	return nil
}

func (j *journal) fdatasync() error {
	if j.sync != nil {
		return j.sync(j.f)
	}
	if j.async != nil {
		err := j.async.fdatasync(j.f)
		switch {
		case errors.Is(err, errAsyncRefused):
			// Nothing was submitted: fdatasync(2) does it, now and from now on.
			j.async.close()
			j.async = nil
		case errors.Is(err, errAsyncBroken):
			// Submitted, outcome lost: this sync failed, the next ones use
			// fdatasync(2).
			j.async.close()
			j.async = nil
			return err
		default:
			return err
		}
	}
	return fdatasync(j.f)
}

// restart begins the entries of epoch, from the start of the file.
func (j *journal) restart(epoch uint64) {
	j.epoch, j.seq, j.off = epoch, 0, 0
}

// replay applies to tx, in order, the entries of epoch j.epoch with a seq below upTo,
// stopping at the first torn, foreign or out-of-sequence entry. It returns how many
// it applied.
func (j *journal) replay(tx *bolt.Tx, upTo uint64) (int, error) {
	data, err := j.load()
	if err != nil {
		return 0, err
	}
	n, _, err := j.replayData(tx, data, upTo)
	return n, err
}

// load reads the whole journal.
func (j *journal) load() ([]byte, error) {
	data := make([]byte, journalSize)
	n, err := j.f.ReadAt(data, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("boltstore: reading the journal: %w", err)
	}
	return data[:n], nil
}

// replayData is replay of the journal's content, data. It returns too where the
// entries it applied end.
func (j *journal) replayData(tx *bolt.Tx, data []byte, upTo uint64) (n int, end int, err error) {
	for seq := uint64(0); seq < upTo; seq++ {
		epoch, eseq, payload, size, ok := parseEntry(data[end:])
		if !ok || epoch != j.epoch || eseq != seq {
			break
		}
		if err := applyMutations(tx, payload); err != nil {
			return n, end, fmt.Errorf("%w: entry %d of epoch %d: %v", errJournal, seq, j.epoch, err)
		}
		n++
		end += size
	}
	return n, end, nil
}

// recover is Open's replay: it applies to tx every entry of epoch j.epoch, and fails
// with ErrJournalDamaged when the journal holds an intact entry of that epoch after
// the entries it applied. A crash leaves the last entry torn at most (its write was
// under way), and nothing of the epoch after it: an intact entry there means that one
// before it was damaged, and the writes from there on would be lost. name is the
// journal's path, for the error.
func (j *journal) recover(tx *bolt.Tx, name string) (int, error) {
	data, err := j.load()
	if err != nil {
		return 0, fmt.Errorf("%w: %s", err, name)
	}
	n, end, err := j.replayData(tx, data, math.MaxUint64)
	if err != nil {
		// At Open, an entry that cannot be applied is a damaged journal; at run
		// time (rebuild) it stays errJournal: the store must be reopened.
		return n, fmt.Errorf("%w (%w): %s", ErrJournalDamaged, err, name)
	}
	if err := j.checkAhead(data, name); err != nil {
		return n, err
	}
	if j.epoch == 0 {
		return n, nil // a file without an epoch: no entry is ever written in epoch 0
	}
	if at, seq, ok := findEntry(data, end, j.epoch); ok {
		return n, fmt.Errorf("%w: %s: entry %d of epoch %d, at offset %d, is damaged, but entry %d of that epoch "+
			"follows intact at offset %d: the writes of the entries from %d on would be lost. "+
			"Restore the file with its journal from a backup; to open the file without the writes since its "+
			"last checkpoint, empty the journal (truncate it to zero bytes)",
			ErrJournalDamaged, name, n, j.epoch, end, seq, at, n)
	}
	return n, nil
}

// checkAhead returns ErrJournalAhead when the journal holds an entry of an epoch
// later than the file's, j.epoch. Such an entry was written after a checkpoint the
// file no longer has: the file is older than its journal (restored from a backup
// without it, or its newest meta page is damaged and bbolt read the previous one), and
// the checkpoint's writes are not in it. The latest epoch's entries start at offset 0:
// the entry there, intact, or, damaged, a later entry of the epoch its header names or
// of the epoch after the file's (the one a damaged meta page falls back from).
func (j *journal) checkAhead(data []byte, name string) error {
	at, epoch, seq := 0, uint64(0), uint64(0)
	e, s, _, _, ok := parseEntry(data)
	switch {
	case ok && e > j.epoch:
		epoch, seq = e, s
	case ok || len(data) < journalHeader:
		return nil
	default:
		candidates := []uint64{j.epoch + 1}
		if e := binary.LittleEndian.Uint64(data[8:]); e > j.epoch+1 {
			candidates = append(candidates, e)
		}
		for _, e := range candidates {
			if at, seq, ok = findEntry(data, 1, e); ok {
				epoch = e
				break
			}
		}
		if !ok {
			return nil
		}
	}
	return fmt.Errorf("%w: %s holds entry %d of epoch %d at offset %d, and the file beside it is at epoch %d: "+
		"the file is older than its journal (restored from a backup without it, or damaged: a damaged newest meta "+
		"page has bbolt read the previous checkpoint), and opening it would lose the writes since. "+
		"Restore the file with its journal; to start deliberately from the file as it is, without those writes, "+
		"empty the journal (truncate it to zero bytes)",
		ErrJournalAhead, name, seq, epoch, at, j.epoch)
}

// findEntry returns the offset and seq of the first intact entry of epoch at or after
// from. Every offset is tried (a damaged entry's length does not say where the next
// one starts): those where the epoch's 8 bytes are, found by bytes.Index.
func findEntry(data []byte, from int, epoch uint64) (at int, seq uint64, ok bool) {
	key := binary.LittleEndian.AppendUint64(nil, epoch)
	for off := from; off+journalHeader <= len(data); off++ {
		i := bytes.Index(data[off+8:], key)
		if i < 0 {
			break
		}
		off += i // the entry's header would start here
		if e, seq, _, _, ok := parseEntry(data[off:]); ok && e == epoch {
			return off, seq, true
		}
	}
	return 0, 0, false
}

// parseEntry reads the entry at the start of b, and reports whether its frame is
// intact (its size within b, its checksum right). size is the entry's, header
// included.
func parseEntry(b []byte) (epoch, seq uint64, payload []byte, size int, ok bool) {
	if len(b) < journalHeader {
		return 0, 0, nil, 0, false
	}
	n := binary.LittleEndian.Uint32(b[0:])
	if int64(n) > int64(len(b)-journalHeader) {
		return 0, 0, nil, 0, false
	}
	size = journalHeader + int(n)
	payload = b[journalHeader:size]
	if crc32.Update(crc32.Checksum(b[8:journalHeader], castagno), castagno, payload) != binary.LittleEndian.Uint32(b[4:]) {
		return 0, 0, nil, 0, false
	}
	return binary.LittleEndian.Uint64(b[8:]), binary.LittleEndian.Uint64(b[16:]), payload, size, true
}

// checkJournalSize returns ErrJournalDamaged when the journal at jpath is shorter than
// it is preallocated to and holds anything but zeros: it was truncated, with entries
// the file may lack. Zero bytes is the operator's choice to open without the journal;
// zeros alone are a preallocation that stopped on a full disk, before any entry.
func checkJournalSize(jpath string) error {
	st, err := os.Lstat(jpath)
	if err != nil || !st.Mode().IsRegular() || st.Size() == 0 || st.Size() >= journalSize {
		return nil // absent, or not a file (openJournal says so), or whole
	}
	data, err := os.ReadFile(jpath)
	if err != nil {
		return fmt.Errorf("boltstore: reading the journal %s: %w", jpath, err)
	}
	if isZero(data) {
		return nil
	}
	return fmt.Errorf("%w: %s is %d bytes, shorter than the %d it is preallocated to, and holds entries: "+
		"it was truncated, and the writes of the entries cut off would be lost. "+
		"Restore the file with its journal from a backup; to open the file without the writes since its "+
		"last checkpoint, empty the journal (truncate it to zero bytes)",
		ErrJournalDamaged, jpath, len(data), journalSize)
}

// applyMutations applies a payload's mutations to tx. The keys and values are copied:
// bbolt keeps what Put is given until the transaction ends.
func applyMutations(tx *bolt.Tx, p []byte) error {
	for len(p) > 0 {
		if len(p) < 2 || int(p[1]) >= len(allBuckets) {
			return errors.New("bad mutation header")
		}
		kind, b := p[0], tx.Bucket(allBuckets[p[1]])
		p = p[2:]
		k, rest, ok := cutBytes(p)
		if !ok || len(k) == 0 {
			return errors.New("bad key")
		}
		p = rest
		switch kind {
		case mutPut:
			v, rest, ok := cutBytes(p)
			if !ok {
				return errors.New("bad value")
			}
			p = rest
			if err := b.Put(bytes.Clone(k), bytes.Clone(v)); err != nil {
				return err
			}
		case mutDelete:
			if err := b.Delete(k); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unknown mutation %d", kind)
		}
	}
	return nil
}

// cutBytes splits a uvarint-length-prefixed byte string off p.
func cutBytes(p []byte) (b, rest []byte, ok bool) {
	n, w := binary.Uvarint(p)
	if w <= 0 || n > uint64(len(p)-w) {
		return nil, nil, false
	}
	return p[w : w+int(n)], p[w+int(n):], true
}

func appendMutation(p []byte, kind byte, bucket int, k, v []byte) []byte {
	p = append(p, kind, byte(bucket))
	p = binary.AppendUvarint(p, uint64(len(k)))
	p = append(p, k...)
	if kind == mutPut {
		p = binary.AppendUvarint(p, uint64(len(v)))
		p = append(p, v...)
	}
	return p
}

func (j *journal) close() error {
	if j.async != nil {
		j.async.close()
		j.async = nil
	}
	return j.f.Close()
}
