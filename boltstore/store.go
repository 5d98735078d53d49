// Package boltstore keeps everything a gateway remembers in one file, with the
// embedded database go.etcd.io/bbolt: challenge claims, transaction records and
// pending requests, the issued-certificate inventory and revocations (it implements
// every interface of crp.Store). It is the default of the examples and of
// crptest.Options.Dir: a gateway on one machine that must survive restarts and
// crashes.
//
// # Durability, the journal and group commit
//
// Every write returns once it is on disk, so that after a crash (SIGKILL, or a power
// loss on a disk that honours flushes) every write a caller saw succeed is there: the
// challenge claim is on disk before the CA signs, the certificate's record before the
// CertRep leaves.
//
// Writes go through one commit queue. While a group is being made durable, the writes
// that arrive wait and form the next group; before a group closes, the commit loop
// yields once so that writers already runnable join it (on one core they would not
// run first otherwise). No timer delays a write. A group is
// applied to a bbolt write transaction that stays open, and made durable by one entry
// appended to the journal, state.db-journal beside the file: one sequential write and
// one fdatasync, where a bbolt commit costs two fdatasyncs and a write for each page
// it dirtied (about a dozen for an enrollment). The open transaction is committed to
// the file (a checkpoint: bbolt's two fdatasyncs) every second, when the journal holds
// 256 KiB, and on Close; a group too large for the journal is committed at once.
// Open applies the journal's writes the file lacks (a process that ended without
// Close), up to the torn entry a crash may leave last, and commits them. Close marks the file as holding
// everything; without that mark, Open refuses a file whose journal is missing
// ([ErrJournalMissing]) rather than open it without the writes the journal held. Reads see every write that
// returned, and return only once the writes they may see are durable.
//
// The journal is preallocated (8 MiB of zeros), so that its fdatasyncs write data
// blocks only, and the file stays consistent as bbolt keeps it: copy-on-write pages
// and two fdatasyncs per checkpoint. If a checkpoint fails (a full disk), the journal
// still holds the writes and the checkpoint is tried again a second later; writes fail
// once the journal is full too, and succeed again at the first checkpoint after space
// returns (TestDiskFull). A checkpoint whose commit failed after bbolt wrote its meta
// page (the meta's fdatasync failed) may be in the file or not: every operation then
// fails until the Store is reopened, which settles it (TestCheckpointFailedAfterMeta).
// See BenchmarkEnrollmentWrites for the fsyncs per enrollment.
//
// On Linux the journal's fdatasync is made through the kernel's native AIO
// (IOCB_CMD_FDSYNC, the same flush) and waited for on an eventfd through the Go
// runtime's poller: an fdatasync(2) system call holds its goroutine's processor for as
// long as the disk takes, which on one core (GOMAXPROCS=1, a container limited to one
// CPU) left the core idle while requests waited to be decrypted and signed
// (BenchmarkSyncFreeCore). On a busy core the completion is noticed at the next
// scheduling point, or within 200 µs (a deadline on the wait), rather than at once.
// Where AIO is refused (a seccomp profile returning an error, a file system without
// it), the journal uses fdatasync(2); a sync whose outcome was lost after submission
// fails, and the journal uses fdatasync(2) from then on. The checkpoints' fdatasyncs
// are bbolt's.
//
// # Damaged state
//
// Open never starts silently without writes it acknowledged: a lost claim lets a
// one-time challenge issue a second certificate, a lost revocation un-revokes one. It
// refuses, with an error naming the file:
//
//   - a file missing or empty beside a journal that holds writes of an earlier run
//     ([ErrStateMissing]; a first start has neither file);
//   - a journal that cannot give back every write it holds ([ErrJournalDamaged]): a
//     damaged entry followed by an intact entry of the same checkpoint (a crash tears
//     the last entry at most, which Open drops: its write never returned), or a
//     journal shorter than its 8 MiB that holds entries (truncated; one of zeros alone
//     is a preallocation that stopped on a full disk, and opens);
//   - a file older than its journal ([ErrJournalAhead]): the journal holds an entry
//     of a later checkpoint than the file's, because the file was restored from a
//     backup without its journal, or its newest meta page is damaged and bbolt read
//     the previous checkpoint. The two cannot be told apart, and the second loses
//     that checkpoint's writes;
//   - a damaged file ([ErrCorrupt]): shorter than its meta page says it is
//     (truncated), or one bbolt fails on (a fault reading a page the file lacks, an
//     assertion on a damaged page). bbolt reads the file through a memory map: Open
//     and the commit loop run it with faults turned into panics
//     (runtime/debug.SetPanicOnFault, on their goroutines alone), which they recover.
//     When that happens while the store runs, every operation fails with ErrCorrupt
//     until it is reopened.
//
// A file deleted or replaced while the store runs is noticed before the next
// checkpoint (about a second later): operations fail with ErrStateMissing from then on,
// and an ERROR line is logged.
//
// A journal of zero bytes is the operator's way to open the file as it is, without the
// journal's writes: truncate state.db-journal to zero bytes (both files, to start
// afresh).
//
// # Retention
//
// Claims are kept until the time the claimant gives (for a challenge, a day past its
// expiry: challenge.ClaimMargin; at least a minute); transaction
// records, and so pending requests, until Record.Expires (a zero Expires is
// [DefaultRecordTTL] from the write). Expired entries are deleted a few at a time by
// later commits (64 at most per commit, through expiry indexes: never a full scan).
// Certificates and revocations are kept: they are the inventory and the CRL. The file
// grows with them (about 2 KB per certificate with its indexes) and reuses the
// pages freed by expired claims and records.
//
// # Memory
//
// bbolt reads the file through a memory map. On Linux each checkpoint takes the
// pages read until then out of the process's resident set (madvise(2)
// MADV_DONTNEED on the shared, read-only map): they stay in the kernel's page cache,
// which keeps or evicts them as it keeps any file's, and a later read maps the page
// again. The resident set then holds the pages read since the last checkpoint, not
// every page read since Open, and does not grow with the inventory. The heap holds
// what the open transaction wrote since the last checkpoint (at most about a
// second's writes, or 256 KiB of journal) and the operations in flight.
//
// One process opens the file at a time (bbolt locks it; [Open] waits up to
// Options.Timeout for the lock). Gateways running side by side share PostgreSQL
// (package pgstore) instead.
package boltstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/internal/atomicfile"
	"github.com/scepkit/scepkit/scep"
)

// DefaultRecordTTL is how long a transaction record whose Expires is zero is kept.
const DefaultRecordTTL = 24 * time.Hour

const (
	// minClaimTTL is how long an id claimed with an until already past is kept, as
	// challenge.MemoryReplayStore does.
	minClaimTTL = time.Minute
	// maxIDLen bounds an id used as a key; longer ids are replaced by their SHA-256.
	maxIDLen = 128
	// maxBatch bounds the writes one commit carries.
	maxBatch = 512
	// sweepBudget bounds the expired entries one commit deletes.
	sweepBudget = 64
	// schemaVersion is the layout of the buckets below. Version 2: a SUCCESS record
	// written with its certificate (RecordIssuance) names the certificate by serial
	// (cert_serial) instead of carrying a second copy; version 1 files are read as they
	// are and marked 2 on open, so that an older scepkit does not misread them.
	// Version 3: the file has a journal (path+"-journal") whose writes may not be in
	// the file yet; an older scepkit, which would not apply them, refuses it.
	// Version 4: a certificate may be marked withheld (crp.IssuedCertificate.Withheld),
	// which a version 3 scepkit would read as an ordinary certificate, handing it to
	// its requester (GetCert) and renewing it; it refuses a version 4 file instead.
	// Files of versions 1 to 3 are read as they are and marked 4 on open. A record's
	// write time (written, crp.Record.Written) needs no version: a release before it
	// ignores the field and judges the record by its Expires, as before.
	schemaVersion = 4
)

var (
	bMeta      = []byte("meta")
	bClaims    = []byte("claims")     // id -> until (unix ns)
	bClaimExp  = []byte("claims-exp") // until|id -> nil
	bTx        = []byte("tx")         // id -> record (JSON)
	bTxExp     = []byte("tx-exp")     // expires|id -> nil
	bPending   = []byte("pending")    // id -> nil, while the record is PENDING
	bCerts     = []byte("certs")      // serial -> certificate (JSON)
	bNotAfter  = []byte("certs-na")   // notAfter|serial -> nil
	bByUser    = []byte("certs-user") // len|user|notAfter|serial -> nil
	bByDevice  = []byte("certs-dev")  // len|device|notAfter|serial -> nil
	bRevoked   = []byte("revoked")    // serial -> revocation (JSON)
	bRevokedAt = []byte("revoked-at") // revokedAt|serial -> nil
	allBuckets = [][]byte{bMeta, bClaims, bClaimExp, bTx, bTxExp, bPending, bCerts, bNotAfter, bByUser, bByDevice, bRevoked, bRevokedAt}
	keyVersion = []byte("version")
)

// ErrClosed is returned by the methods of a closed Store.
var ErrClosed = errors.New("boltstore: closed")

// ErrNewerSchema is returned by [Open] for a file a newer release of this package
// wrote: its layout is not known here. Run that release, or restore a backup.
var ErrNewerSchema error = damageError("boltstore: the file was written by a newer release")

// now is the store's clock; a Store Open did not make has none (its methods then
// answer ErrNotOpen).
func (s *Store) now() time.Time {
	if s == nil || s.clock == nil {
		return time.Now()
	}
	return s.clock()
}

// ErrLocked is returned by [Open] when the file is held open by another Store, of
// this process or another (a second gateway on the same state directory): bbolt's
// lock admits one at a time.
var ErrLocked = errors.New("boltstore: locked")

// ErrNotOpen is returned by a Store that Open did not make (a zero Store, a nil one).
var ErrNotOpen = errors.New("boltstore: not opened (use Open or OpenDir)")

// ErrJournalMissing is returned by [Open] when the journal (path+"-journal") is
// missing and the file's last run did not end with Close: writes acknowledged since
// its last checkpoint may be in the journal alone. Put the journal back beside the file; to
// open the file without those writes, create the journal as an empty file.
var ErrJournalMissing error = damageError("boltstore: the journal is missing and the file was not closed cleanly")

// Options configures [Open]. The zero value has defaults.
type Options struct {
	// Timeout is how long Open waits for another process to release the file; zero
	// means one second.
	Timeout time.Duration
	// Now is the clock of expiries; nil means time.Now.
	Now func() time.Time
	// Logger receives an ERROR line when a checkpoint fails (a full disk, say: the
	// writes go on in the journal until it is full too), at most one a minute while
	// they keep failing, and an INFO line when one succeeds again; nil means none.
	Logger *slog.Logger

	// syncDir syncs a directory; nil means syncDir. Tests count the calls.
	syncDir func(dir string) error
	// checkpointEvery replaces the package's checkpointEvery when positive. Tests of
	// the journal make it longer than they last, so that a slow machine does not
	// checkpoint the writes they mean to leave in the journal alone.
	checkpointEvery time.Duration
}

// dirSyncer is o's syncDir.
func (o *Options) dirSyncer() func(string) error {
	if o == nil || o.syncDir == nil {
		return atomicfile.SyncDir
	}
	return o.syncDir
}

// Store is a crp.Store in one bbolt file. Its methods are safe for concurrent use.
type Store struct {
	db    *bolt.DB
	clock func() time.Time
	ops   chan *op
	quit  chan struct{}
	done  chan struct{}
	once  sync.Once

	// Owned by the commit loop.
	j          *journal
	tx         *bolt.Tx  // the open write transaction: every write and read goes through it
	lastCkpt   time.Time // of the last checkpoint, or of its last failure
	ckptErr    error     // of the last failed checkpoint
	retryAt    time.Time // no checkpoint is tried before, after one failed
	broken     error     // set when tx could not be rebuilt: every operation fails with it
	closeErr   error     // of the last checkpoint, made by Close
	w          wtx
	checkpoint atomic.Int64 // checkpoints made, for the tests
	log        *slog.Logger
	path       string
	opened     os.FileInfo // of the file at path when it was opened (see checkPath)
	dbFile     *os.File    // the file bbolt opened
	wedged     bool        // bbolt panicked and may hold its lock: Close closes dbFile, not db
	ckptFails  int         // checkpoints failed in a row
	ckptLogged time.Time   // of the last line about them
	// releaseFailed is set once releasing the memory map after a checkpoint failed.
	releaseFailed bool

	syncs atomic.Int64 // fdatasyncs made (journal, and two per checkpoint), for the benchmarks

	// commitTx commits a checkpoint's transaction; nil means tx.Commit. Tests make it
	// fail.
	commitTx func(tx *bolt.Tx) error

	// ckptEvery is checkpointEvery, or Options.checkpointEvery.
	ckptEvery time.Duration
}

var (
	_ crp.Store               = (*Store)(nil)
	_ challenge.ReplayStore   = (*Store)(nil)
	_ crp.IssuanceRecorder    = (*Store)(nil)
	_ crp.TransactionCreator  = (*Store)(nil)
	_ crp.IssuanceCreator     = (*Store)(nil)
	_ crp.TransactionReplacer = (*Store)(nil)
	_ crp.IssuanceReplacer    = (*Store)(nil)
)

const (
	// checkpointEvery and checkpointBytes say when the open transaction is committed
	// to the file: a second after the last checkpoint, or once the journal holds
	// checkpointBytes (about 40 enrollments). The open transaction holds what it
	// wrote in memory until then, and a checkpoint holds the commit loop while bbolt
	// writes it. Under load the bytes decide: at 256 KiB the quickstart (4 devices,
	// one core, alternating runs) had a p99 of 25-28 ms against 27-33 ms at 1 MiB, and
	// spent less CPU per enrollment in three runs of four; a checkpoint every ten
	// seconds left 7.9 KB per enrollment in the quickstart's RSS.
	checkpointEvery = time.Second
	checkpointBytes = 256 << 10
	// retryCheckpoint is how long after a failed checkpoint the next is tried.
	retryCheckpoint = time.Second
)

// op is one operation waiting in the commit queue. A read does not change tx.
type op struct {
	apply func(w *wtx) error
	read  bool
	err   error
	done  chan error
	// snap, set on a read, receives a read transaction on the file as of a
	// checkpoint made for it (see Backup).
	snap chan *bolt.Tx
}

// errPanic marks an operation that panicked, on a stored value it could not decode
// (a damaged file) or in bbolt: it fails alone instead of ending the process.
var errPanic = errors.New("boltstore: internal error")

// run applies o to w; a panic is returned as an error wrapping errPanic.
func (o *op) run(w *wtx) error { return safely(func() error { return o.apply(w) }) }

// safely runs fn, returning a panic as an error wrapping errPanic.
func safely(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", errPanic, r)
		}
	}()
	return fn()
}

// wtx is the open write transaction as operations see it: their puts and deletes are
// recorded for the journal, with what they replaced so that a failed operation can be
// undone.
type wtx struct {
	tx      *bolt.Tx
	payload []byte // the group's mutations, for the journal
	undo    []undo // the group's replaced values, in order
}

type undo struct {
	bucket []byte
	key    []byte
	old    []byte // nil: the key was absent
}

func bucketIndex(name []byte) int {
	for i, b := range allBuckets {
		if bytes.Equal(b, name) {
			return i
		}
	}
	panic("boltstore: unknown bucket " + string(name))
}

func (w *wtx) bucket(name []byte) *bolt.Bucket { return w.tx.Bucket(name) }

// remember records that k held cur (nil: absent) in the named bucket before a
// mutation, for rollback.
func (w *wtx) remember(name, k, cur []byte) {
	w.undo = append(w.undo, undo{bucket: name, key: bytes.Clone(k), old: bytes.Clone(cur)})
}

// put sets k to v in the named bucket. v and k must not change afterwards.
func (w *wtx) put(name, k, v []byte) error {
	b := w.tx.Bucket(name)
	w.remember(name, k, b.Get(k))
	if v == nil {
		v = []byte{}
	}
	if err := b.Put(k, v); err != nil {
		return err
	}
	w.payload = appendMutation(w.payload, mutPut, bucketIndex(name), k, v)
	return nil
}

// del deletes k from the named bucket.
func (w *wtx) del(name, k []byte) error {
	b := w.tx.Bucket(name)
	cur := b.Get(k)
	if cur == nil {
		return nil
	}
	w.remember(name, k, cur)
	if err := b.Delete(k); err != nil {
		return err
	}
	w.payload = appendMutation(w.payload, mutDelete, bucketIndex(name), k, nil)
	return nil
}

// release drops what the group's buffers refer to once it is over: the replaced
// values of the undo log, and the payload's array when a group grew it past
// checkpointBytes (it would otherwise be held for the store's life; a group that large
// is followed by a checkpoint, which costs more than the allocation).
func (w *wtx) release() {
	clear(w.undo) // rollback cleared what it truncated
	w.undo = w.undo[:0]
	if cap(w.payload) > checkpointBytes {
		w.payload = nil
	}
}

// rollback undoes the mutations after the marks (lengths of payload and undo).
func (w *wtx) rollback(payloadMark, undoMark int) error {
	var errs []error
	for i := len(w.undo) - 1; i >= undoMark; i-- {
		u := w.undo[i]
		b := w.tx.Bucket(u.bucket)
		if u.old == nil {
			errs = append(errs, b.Delete(u.key))
		} else {
			errs = append(errs, b.Put(u.key, u.old))
		}
	}
	clear(w.undo[undoMark:])
	w.undo, w.payload = w.undo[:undoMark], w.payload[:payloadMark]
	return errors.Join(errs...)
}

// Open opens (creating if needed) the store in the file at path, and its journal in
// path+"-journal". Writes the journal holds that were not yet in the file (the process
// ended without Close) are applied first. A file it creates has its directory synced.
//
// Open refuses a damaged file or journal rather than open it without writes it
// acknowledged (see the package documentation): with an error that matches
// [ErrNeedsOperator] and names the file (ErrStateMissing, ErrJournalDamaged,
// ErrJournalAhead, ErrCorrupt, ErrJournalMissing, ErrNewerSchema). A file another
// Store holds is ErrLocked.
func Open(path string, o *Options) (s *Store, err error) {
	if o == nil {
		o = &Options{}
	}
	if err := checkStatePresent(path, path+"-journal"); err != nil {
		return nil, err
	}
	if err := checkJournalSize(path + "-journal"); err != nil {
		return nil, err
	}
	if err := checkStateFile(path); err != nil {
		return nil, err
	}
	// bbolt reads the file through a memory map: a page the file no longer has is a
	// fault (SIGBUS, SIGSEGV), and a damaged one fails its assertions (panics). Both
	// are an error of this Open, not the end of the process.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	var opened openFiles
	defer func() {
		if r := recover(); r != nil {
			// db.Close could wait forever for the lock of the transaction that
			// panicked: the file is closed instead (which releases bbolt's lock),
			// leaving its memory map.
			opened.close()
			s, err = nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, r)
		}
	}()
	return open(path, o, &opened)
}

// openFiles are the files open made, for Open to close after a panic.
type openFiles struct {
	db *os.File // the file bbolt opened
	j  *journal
}

func (f *openFiles) close() {
	if f.j != nil {
		f.j.close()
	}
	if f.db != nil {
		f.db.Close()
	}
}

// open is Open after the checks of the files, which it records in opened as it
// opens them.
func open(path string, o *Options, opened *openFiles) (*Store, error) {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	_, statErr := os.Lstat(path)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			opened.db = f
			return f, err
		}})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s is locked by another Store, of this process or another (another gateway on this state directory?): %w", ErrLocked, path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("boltstore: opening %s: %w", path, err)
	}
	// Copies a Backup was making when its process ended (the file is locked now:
	// no other Store is making one).
	// Listed rather than globbed: a directory named with '[' or '*' is no pattern.
	if entries, err := os.ReadDir(filepath.Dir(path)); err == nil {
		prefix := filepath.Base(path) + backupSuffix
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), prefix) {
				os.Remove(filepath.Join(filepath.Dir(path), e.Name()))
			}
		}
	}
	if err := checkJournal(db, path+"-journal"); err != nil {
		db.Close()
		return nil, err
	}
	dbInfo, err := opened.db.Stat()
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("boltstore: opening %s: %w", path, err)
	}
	j, jcreated, err := openJournal(path + "-journal")
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("boltstore: opening the journal of %s: %w", path, err)
	}
	opened.j = j
	if errors.Is(statErr, os.ErrNotExist) || jcreated {
		// A file's name is as durable as its content only once its directory is
		// synced (fsync(2) of the file alone does not write the entry on Linux).
		if err := o.dirSyncer()(filepath.Dir(path)); err != nil {
			j.close()
			db.Close()
			return nil, fmt.Errorf("boltstore: creating %s: %w", path, err)
		}
	}
	var next uint64 // the journal's epoch from now on
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bMeta)
		switch v := meta.Get(keyVersion); {
		case v == nil:
			if err := meta.Put(keyVersion, []byte{schemaVersion}); err != nil {
				return err
			}
		case len(v) != 1 || v[0] > schemaVersion:
			return fmt.Errorf("%w: %s has schema version %v, newer than this package's %d", ErrNewerSchema, path, v, schemaVersion)
		case v[0] < schemaVersion:
			if err := meta.Put(keyVersion, []byte{schemaVersion}); err != nil {
				return err
			}
		}
		// The journal's writes since the last checkpoint, then the next epoch.
		if v := meta.Get(keyEpoch); len(v) == 8 {
			j.epoch = binary.BigEndian.Uint64(v)
		}
		if _, err := j.recover(tx, path+"-journal"); err != nil {
			return err
		}
		// The journal holds no entry of a later epoch (recover refused it): the next
		// epoch was never used.
		next = j.epoch + 1
		if err := meta.Delete(keyClosed); err != nil {
			return err
		}
		return meta.Put(keyEpoch, binary.BigEndian.AppendUint64(nil, next))
	})
	if err != nil {
		j.close()
		db.Close()
		return nil, err
	}
	j.restart(next)
	tx, err := db.Begin(true)
	if err != nil {
		j.close()
		db.Close()
		return nil, fmt.Errorf("boltstore: %w", err)
	}
	s := &Store{db: db, clock: o.Now, ops: make(chan *op, maxBatch), quit: make(chan struct{}), done: make(chan struct{}),
		j: j, tx: tx, log: o.Logger, path: path, dbFile: opened.db, opened: dbInfo, ckptEvery: checkpointEvery}
	if o.checkpointEvery > 0 {
		s.ckptEvery = o.checkpointEvery
	}
	s.lastCkpt = time.Now()
	go s.commitLoop()
	return s, nil
}

// checkJournal returns ErrJournalMissing when the journal at jpath is missing and the
// file in db has a journal epoch without the mark of a Close at that epoch.
func checkJournal(db *bolt.DB, jpath string) error {
	if _, err := os.Lstat(jpath); !errors.Is(err, os.ErrNotExist) {
		return nil // present, or openJournal reports why not
	}
	return db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bMeta)
		if meta == nil {
			return nil // a new file
		}
		if e := meta.Get(keyEpoch); e != nil && !bytes.Equal(meta.Get(keyClosed), e) {
			return fmt.Errorf("%w: %s", ErrJournalMissing, jpath)
		}
		return nil
	})
}

// Ping implements crp.Pinger: it reports whether the store can go on taking writes,
// without touching the disk. It fails while the store is broken (every operation fails
// with the same error) and while its checkpoints fail, with the last one's error: a
// full disk or a file system gone read-only. Writes then still succeed, into the
// journal, until it is full (up to 8 MiB of them), so a write that succeeds, such as a
// readiness probe's, says nothing of the condition; Ping does. A registration point
// pings a store its claims do not go to before the CA signs; scepkit serve's /readyz
// pings its store.
func (s *Store) Ping(ctx context.Context) error {
	return s.enqueue(ctx, &op{read: true, apply: func(*wtx) error {
		if s.ckptFails > 0 {
			return fmt.Errorf("boltstore: %d checkpoints failed in a row; the journal holds %d of %d bytes until one succeeds: %w",
				s.ckptFails, s.j.off, journalSize, s.ckptErr)
		}
		return nil
	}})
}

// Close waits for the operations under way, commits what the journal holds to the
// file with the mark that the journal holds nothing more, and closes both. A Store an
// earlier failure broke (its operations fail with it) is closed without that commit,
// and Close returns the failure; the next Open applies the journal. Calls after the
// first return nil.
func (s *Store) Close() error {
	if s == nil || s.ops == nil {
		return ErrNotOpen
	}
	first := false
	s.once.Do(func() { first = true; close(s.quit) })
	<-s.done
	if !first {
		return nil
	}
	if s.wedged {
		// bbolt may hold the lock of the transaction that panicked, which its Close
		// would wait for: the file is closed instead, its memory map left.
		return errors.Join(s.closeErr, s.j.close(), s.dbFile.Close())
	}
	return errors.Join(s.closeErr, s.j.close(), s.db.Close())
}

// view runs a read of the store's current content (what every write that returned
// nil left). On a closed Store it returns ErrClosed.
func (s *Store) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	return s.enqueue(ctx, &op{apply: func(w *wtx) error { return fn(w.tx) }, read: true})
}

// write queues apply and waits until it is durable or failed. Once queued, a write is
// carried out even if ctx ends: the caller waits for the outcome, so that it never
// reports as failed a write that is on disk.
func (s *Store) write(ctx context.Context, apply func(w *wtx) error) error {
	return s.enqueue(ctx, &op{apply: apply})
}

func (s *Store) enqueue(ctx context.Context, o *op) error {
	if s == nil || s.ops == nil {
		return ErrNotOpen
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-s.quit:
		return ErrClosed
	default:
	}
	o.done = make(chan error, 1)
	select {
	case s.ops <- o:
	case <-s.quit:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-o.done:
		return err
	case <-s.done:
		// Closed: the operation was carried out before, or never will be.
		select {
		case err := <-o.done:
			return err
		default:
			return ErrClosed
		}
	}
}

func (s *Store) commitLoop() {
	defer close(s.done)
	// A fault on the file's memory map (a page its file lost) is a panic that safely
	// and guard turn into an error, not the end of the process.
	debug.SetPanicOnFault(true)
	tick := time.NewTicker(checkpointEvery / 4)
	defer tick.Stop()
	batch := make([]*op, 0, maxBatch)
	for {
		var first *op
		select {
		case first = <-s.ops:
		case <-tick.C:
			s.maybeCheckpoint()
			continue
		case <-s.quit:
			// Operations queued before Close are still carried out.
			select {
			case first = <-s.ops:
			default:
				s.closeErr = s.finish()
				return
			}
		}
		batch = append(batch[:0], first)
		if !first.read {
			// Let the writers that are runnable reach the queue before the group
			// closes. On one core they would not otherwise run before the fdatasync
			// (the runtime hands this goroutine's P over only once the syscall has
			// lasted a sysmon tick), so every group held one write: the yield is what
			// makes concurrent enrollments share fsyncs there. When nothing else is
			// runnable it returns at once, so a lone write waits no longer.
			runtime.Gosched()
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case o := <-s.ops:
				batch = append(batch, o)
			default:
				break drain
			}
		}
		s.run(batch)
		s.maybeCheckpoint()
	}
}

// run carries out a group: the reads first, which return at once, then each write is
// applied to the open transaction (a failed one is undone alone), and the group's
// writes are made durable together, with one journal entry (one fdatasync), or with a
// checkpoint when the entry does not fit. Only then does any write return: no read
// ever sees a write that could still be lost.
func (s *Store) run(batch []*op) {
	if s.broken != nil {
		answer(batch, s.broken)
		return
	}
	w := &s.w
	w.tx, w.payload, w.undo = s.tx, w.payload[:0], w.undo[:0]
	defer w.release()
	// The reads first: they see only writes that are durable, so they return at once
	// instead of after this group's fdatasync. A write of the group has not returned
	// yet, so no caller can tell that a read queued after it did not see it.
	writes := batch[:0:0]
	for _, o := range batch {
		if !o.read {
			writes = append(writes, o)
			continue
		}
		if s.broken != nil {
			// A snapshot's checkpoint before it in this group broke the store.
			o.done <- s.broken
			continue
		}
		if o.snap != nil {
			rtx, err := s.snapshot()
			o.snap <- rtx
			o.done <- err
			continue
		}
		w.tx = s.tx
		o.done <- o.run(w)
	}
	batch = writes
	if s.broken != nil {
		answer(batch, s.broken)
		return
	}
	for _, o := range batch {
		pm, um := len(w.payload), len(w.undo)
		w.tx = s.tx
		o.err = o.run(w)
		if errors.Is(o.err, errPanic) {
			// The transaction may be half changed: rebuild it from the file and the
			// journal rather than trust the undo log.
			s.fail(batch, o.err)
			return
		}
		if o.err != nil {
			if err := w.rollback(pm, um); err != nil {
				s.fail(batch, undoFailed(err))
				return
			}
		}
	}
	if len(w.payload) > 0 {
		pm, um := len(w.payload), len(w.undo)
		// The sweep reads stored keys too: a damaged one fails the group, not the process.
		if err := safely(func() error { return sweep(w, s.now()) }); errors.Is(err, errPanic) {
			s.fail(batch, err)
			return
		} else if err != nil {
			if err := w.rollback(pm, um); err != nil {
				s.fail(batch, undoFailed(err))
				return
			}
		}
	}
	if len(w.payload) > 0 {
		var err error
		if s.j.fits(len(w.payload)) {
			err = s.j.append(w.payload)
			if err == nil {
				s.syncs.Add(1)
			} else if rerr := w.rollback(0, 0); rerr != nil {
				s.fail(batch, undoFailed(rerr))
				return
			}
		} else if time.Now().Before(s.retryAt) {
			// The journal is full and the last checkpoint failed a moment ago: fail
			// at once rather than rebuild the transaction for every write.
			err = s.ckptErr
			if rerr := w.rollback(0, 0); rerr != nil {
				s.fail(batch, undoFailed(rerr))
				return
			}
		} else {
			// Too large for the journal: the file itself. Nothing is left to
			// checkpoint after.
			err = s.commit()
		}
		if err != nil {
			answer(batch, err)
			return
		}
	}
	for _, o := range batch {
		o.done <- o.err
	}
}

// snapshot makes a checkpoint if the journal holds writes the file lacks, and returns
// a read transaction on the file: what every write that returned nil left.
func (s *Store) snapshot() (*bolt.Tx, error) {
	if s.j.off > 0 {
		if time.Now().Before(s.retryAt) {
			// The last checkpoint failed a moment ago: not another one for a
			// backup (as the commit loop waits too).
			return nil, s.ckptErr
		}
		if err := s.commit(); err != nil {
			return nil, err
		}
		if s.broken != nil {
			return nil, s.broken
		}
	}
	var rtx *bolt.Tx
	err := s.guard("beginning a backup", func() (err error) { rtx, err = s.db.Begin(false); return err })
	if err != nil {
		return nil, err
	}
	return rtx, nil
}

// backupSuffix, after the file's name, names the copies Backup makes beside it.
const backupSuffix = ".backup-"

// Backup writes to w a copy of the store that opens on its own: one file holding
// every write that returned nil before Backup was called, while the store goes on
// serving. It makes a checkpoint, copies the file as of it into a file of its own
// beside the store (bbolt's Tx.WriteTo on a read transaction, outside the commit
// loop), then writes that copy to w and removes it: the read transaction lasts a
// local copy, not as long as w takes (a checkpoint that must grow the file waits for
// it to end, and with it every write). The disk holding the store needs room for one
// more copy per Backup in progress; one a process left behind is removed by the next
// Open.
//
// To restore, stop the process, put the copy in place of the store's file (path, or
// FileName in the directory of OpenDir) and make its journal (path+"-journal") an
// empty file (zero bytes: "open the file as it is"). What was
// written after the copy is lost: revocations to make again, certificates missing
// from the inventory, and challenge claims, so that a challenge used after the copy
// and still within its lifetime would pass again (see docs/operations.md).
func (s *Store) Backup(ctx context.Context, w io.Writer) (int64, error) {
	snap := make(chan *bolt.Tx, 1)
	if err := s.enqueue(ctx, &op{read: true, snap: snap}); err != nil {
		return 0, err // snapshot hands out no transaction with an error
	}
	rtx := <-snap
	f, err := os.CreateTemp(filepath.Dir(s.path), filepath.Base(s.path)+backupSuffix+"*")
	if err != nil {
		rtx.Rollback()
		return 0, fmt.Errorf("boltstore: backup: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	n, err := rtx.WriteTo(f)
	rtx.Rollback()
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		return 0, fmt.Errorf("boltstore: backup: %w", err)
	}
	return io.CopyN(w, f, n)
}

// answer ends every operation of batch with err.
func answer(batch []*op, err error) {
	for _, o := range batch {
		o.done <- err
	}
}

// undoFailed is the error of a group whose undo failed.
func undoFailed(err error) error { return fmt.Errorf("boltstore: undoing a failed write: %w", err) }

// fail ends a group whose open transaction can no longer be trusted (its undo failed,
// or an operation panicked): it no longer matches what the journal and the file hold,
// so it is rebuilt from them, and every operation of the group fails with err.
func (s *Store) fail(batch []*op, err error) {
	answer(batch, err)
	if s.guard("rolling back", s.tx.Rollback); s.broken == nil {
		s.rebuild()
	}
}

// maybeCheckpoint commits the open transaction when it is due: checkpointEvery after
// the last, or once the journal holds checkpointBytes. A failed checkpoint is tried
// again a period later (the journal keeps the writes durable meanwhile).
func (s *Store) maybeCheckpoint() {
	if s.broken != nil || s.j.off == 0 { // nothing written since the last checkpoint
		return
	}
	if time.Since(s.lastCkpt) < s.ckptEvery && s.j.off < checkpointBytes || time.Now().Before(s.retryAt) {
		return
	}
	s.commit()
}

// commit commits the open transaction (two fdatasyncs, by bbolt) with the next journal
// epoch, and opens the next. On failure the transaction is rebuilt from the file and
// the journal, so that it holds again every write that returned nil.
func (s *Store) commit() error {
	s.lastCkpt = time.Now()
	if err := s.checkPath(); err != nil {
		// Not a failure to retry: the file the checkpoints go to is lost to the next
		// Open. The journal keeps this epoch's entries; the store stops here.
		s.tx.Rollback()
		s.broken = err
		if s.log != nil {
			s.log.Error("boltstore: the store's file was deleted or replaced; every operation fails until it is reopened",
				"path", s.path, "err", err)
		}
		return err
	}
	epoch := s.j.epoch + 1
	err := s.guard("checkpoint", func() error {
		err := s.tx.Bucket(bMeta).Put(keyEpoch, binary.BigEndian.AppendUint64(nil, epoch))
		if err == nil {
			if s.commitTx != nil {
				err = s.commitTx(s.tx)
			} else {
				err = s.tx.Commit()
			}
			s.syncs.Add(2)
		} else {
			s.tx.Rollback()
		}
		return err
	})
	if errors.Is(err, ErrCorrupt) {
		return err
	}
	if err != nil {
		s.rebuild()
		s.ckptErr = fmt.Errorf("boltstore: committing: %w", err)
		s.retryAt = time.Now().Add(retryCheckpoint)
		s.ckptFails++
		if s.log != nil && (s.ckptFails == 1 || time.Since(s.ckptLogged) >= time.Minute) {
			s.ckptLogged = time.Now()
			s.log.Error("boltstore: checkpoint failed; writes go on in the journal until it is full, then fail",
				"path", s.path, "err", err, "failed_in_a_row", s.ckptFails, "journal_used", fmt.Sprintf("%d of %d bytes", s.j.off, journalSize))
		}
		return s.ckptErr
	}
	if s.ckptFails > 0 {
		if s.log != nil {
			s.log.Info("boltstore: checkpoint made again", "path", s.path, "failed_before", s.ckptFails)
		}
		s.ckptFails = 0
	}
	s.checkpoint.Add(1)
	s.j.restart(epoch)
	// No transaction is open: the pages read until now leave the process's resident
	// set (they stay in the page cache), so that it does not grow with the file.
	if err := releaseMapping(s.db); err != nil && !s.releaseFailed {
		s.releaseFailed = true // said once: the store works on without it
		if s.log != nil {
			s.log.Warn("boltstore: cannot release the file's memory map after a checkpoint; the process's resident set grows with the file", "path", s.path, "err", err)
		}
	}
	if err := s.guard("beginning a transaction", func() (err error) { s.tx, err = s.db.Begin(true); return err }); err != nil && s.broken == nil {
		s.tx = nil
		s.broken = fmt.Errorf("boltstore: %w", err)
	}
	return nil
}

// rebuild opens a write transaction on the file and applies the journal's entries of
// the current epoch to it. On failure the store is broken: reopening it applies the
// journal again.
func (s *Store) rebuild() {
	var tx *bolt.Tx
	s.tx = nil
	err := s.guard("rebuilding the transaction", func() (err error) {
		if tx, err = s.db.Begin(true); err != nil {
			return err
		}
		s.tx = tx // for guard to roll back
		if err = s.replayEpoch(tx); err != nil {
			tx.Rollback()
		}
		return err
	})
	if errors.Is(err, ErrCorrupt) {
		return
	}
	if err != nil {
		s.broken = fmt.Errorf("boltstore: the store must be reopened: %w", err)
		return
	}
	s.tx = tx
}

// replayEpoch applies to tx, a transaction on the file, the journal's entries since
// the last checkpoint: every one of them, or it fails. It fails too when the file is
// not at the journal's epoch: a checkpoint whose commit failed after bbolt wrote its
// meta page (the meta's fdatasync failed) is in the file as bbolt reads it from then
// on, with the next epoch, but may not be on the disk. Writes cannot go on: entries of
// the journal's epoch would be skipped by the next Open, and entries of the next
// would overwrite the journal that the file on the disk may still need. Reopening the
// store settles it: bbolt reads the file as it is, and Open's commit makes it durable.
func (s *Store) replayEpoch(tx *bolt.Tx) error {
	if v := tx.Bucket(bMeta).Get(keyEpoch); len(v) != 8 || binary.BigEndian.Uint64(v) != s.j.epoch {
		var fileEpoch uint64
		if len(v) == 8 {
			fileEpoch = binary.BigEndian.Uint64(v)
		}
		return fmt.Errorf("the last checkpoint may have reached the file (its epoch %d, the journal's %d)", fileEpoch, s.j.epoch)
	}
	n, err := s.j.replay(tx, s.j.seq)
	if err == nil && uint64(n) != s.j.seq {
		err = fmt.Errorf("%w: %d of the %d entries since the last checkpoint read back", errJournal, n, s.j.seq)
	}
	return err
}

// finish is Close's end of the loop: the last checkpoint, then the transaction is
// closed.
func (s *Store) finish() error {
	if s.broken != nil {
		// No checkpoint: the journal holds what the file lacks; the next Open applies it.
		return s.broken
	}
	// Even without writes: the mark of a Close tells the next Open that the journal
	// holds nothing the file lacks (see checkJournal).
	err := s.guard("closing", func() error {
		return s.tx.Bucket(bMeta).Put(keyClosed, binary.BigEndian.AppendUint64(nil, s.j.epoch+1))
	})
	if err == nil {
		err = s.commit()
	}
	if s.broken == nil {
		s.guard("closing", s.tx.Rollback)
	}
	return err
}

// sweep deletes up to sweepBudget expired claims and records, found through their
// expiry indexes. A main entry goes only if it still has the expiry its index entry
// names (it may have been replaced since, with a later one).
func sweep(w *wtx, now time.Time) error {
	budget := sweepBudget
	err := sweepIndex(w, bClaimExp, now, &budget, func(at, id []byte) error {
		if v := w.bucket(bClaims).Get(id); v != nil && bytes.Equal(v, at) {
			return w.del(bClaims, id)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return sweepIndex(w, bTxExp, now, &budget, func(at, id []byte) error {
		if exp, ok := recordExpires(w.bucket(bTx).Get(id)); !ok || !bytes.Equal(encodeTime(time.Unix(0, exp)), at) {
			return nil
		}
		if err := w.del(bPending, id); err != nil {
			return err
		}
		return w.del(bTx, id)
	})
}

// expiresKey is the key of a stored record's Expires in its JSON. No string value of
// the record holds it: JSON writes a quote within a string as \".
var expiresKey = []byte(`"expires":`)

// recordExpires returns the Expires of the stored record v (its JSON), read without
// decoding the rest: the sweep reads it for every record it deletes, in the commit
// loop, and decoding a whole record (its request, CSR and signer key in base64) cost
// about 100 µs, so that a commit deleting 64 records took 7 to 10 times as long as
// one deleting none (BenchmarkSweepBacklog). ok is false when v holds no expiry.
func recordExpires(v []byte) (exp int64, ok bool) {
	i := bytes.LastIndex(v, expiresKey)
	if i < 0 {
		return 0, false
	}
	n := v[i+len(expiresKey):]
	end := 0
	for end < len(n) && (n[end] >= '0' && n[end] <= '9' || end == 0 && n[end] == '-') {
		end++
	}
	exp, err := strconv.ParseInt(string(n[:end]), 10, 64)
	return exp, err == nil
}

// sweepIndex deletes the index entries (expiry|id) that expired before now, at most
// *budget of them, calling drop for each first.
func sweepIndex(w *wtx, idx []byte, now time.Time, budget *int, drop func(at, id []byte) error) error {
	var dead [][]byte
	c := w.bucket(idx).Cursor()
	for k, _ := c.First(); k != nil && *budget > 0 && !decodeTime(k[:8]).After(now); k, _ = c.Next() {
		dead = append(dead, append([]byte(nil), k...))
		*budget--
	}
	for _, k := range dead {
		if err := drop(k[:8], k[8:]); err != nil {
			return err
		}
		if err := w.del(idx, k); err != nil {
			return err
		}
	}
	return nil
}

// minKeyTime and maxKeyTime bound the times a key holds exactly: nanoseconds since
// 1970 in an int64, from 1677 to 2262.
var (
	minKeyTime = time.Unix(0, math.MinInt64)
	maxKeyTime = time.Unix(0, math.MaxInt64)
)

// encodeTime writes t as a key that sorts as t does. A time outside [minKeyTime,
// maxKeyTime] (a certificate may name any time up to 9999, a query bound may be
// now plus Go's longest duration) is written as the bound it passes: UnixNano would
// wrap it around, sorting 2300 before 1970.
func encodeTime(t time.Time) []byte {
	switch {
	case t.Before(minKeyTime):
		t = minKeyTime
	case t.After(maxKeyTime):
		t = maxKeyTime
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(t.UnixNano())^(1<<63))
	return b[:]
}

func decodeTime(b []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(b)^(1<<63)))
}

// hashedPrefix starts the key of a hashed id.
const hashedPrefix = "sha256:"

// idKey is the key of id: id itself, or, for an id over maxIDLen bytes or one that
// starts like a hashed key, hashedPrefix and the hex SHA-256 of id. So no id a client
// chooses (a transactionID reading "sha256:...") names the key of another.
func idKey(id string) []byte {
	if len(id) > maxIDLen || strings.HasPrefix(id, hashedPrefix) {
		sum := sha256.Sum256([]byte(id))
		return []byte(hashedPrefix + hex.EncodeToString(sum[:]))
	}
	return []byte(id)
}

// serialKey encodes a positive serial so that byte order is numeric order: its length,
// then its big-endian bytes.
func serialKey(n *big.Int) []byte {
	b := n.Bytes()
	return append([]byte{byte(len(b))}, b...)
}

// seek positions c at the first key at or after start (the first key for an empty
// start).
func seek(c *bolt.Cursor, start []byte) ([]byte, []byte) {
	if len(start) == 0 {
		return c.First()
	}
	return c.Seek(start)
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// ---- challenge claims ----

// Claim implements challenge.ReplayStore: the claim is on disk when it returns nil.
func (s *Store) Claim(ctx context.Context, id string, until time.Time) error {
	if id == "" {
		return fmt.Errorf("%w: empty id", challenge.ErrMissingClaim)
	}
	k := idKey(id)
	var replayed bool
	err := s.write(ctx, func(w *wtx) error {
		replayed = false
		now := s.now()
		if v := w.bucket(bClaims).Get(k); v != nil && decodeTime(v).After(now) {
			replayed = true
			return nil
		}
		u := until
		if !u.After(now) {
			u = now.Add(minClaimTTL)
		}
		at := encodeTime(u)
		if err := w.put(bClaims, k, at); err != nil {
			return err
		}
		return w.put(bClaimExp, cat(at, k), nil)
	})
	if err != nil {
		return fmt.Errorf("boltstore: claim: %w", err)
	}
	if replayed {
		return challenge.ErrReplayed
	}
	return nil
}

// Release implements challenge.Releaser.
func (s *Store) Release(ctx context.Context, id string) error {
	k := idKey(id)
	err := s.write(ctx, func(w *wtx) error {
		v := w.bucket(bClaims).Get(k)
		if v == nil {
			return nil
		}
		if err := w.del(bClaimExp, cat(v, k)); err != nil {
			return err
		}
		return w.del(bClaims, k)
	})
	if err != nil {
		return fmt.Errorf("boltstore: release: %w", err)
	}
	return nil
}

// ---- transaction records ----

// record is a crp.Record as stored.
type record struct {
	ID          string         `json:"id"`
	SignerKey   []byte         `json:"signer_key,omitempty"`
	Request     []byte         `json:"request,omitempty"`
	CSR         []byte         `json:"csr,omitempty"`
	Status      scep.PKIStatus `json:"status"`
	Certificate []byte         `json:"certificate,omitempty"`
	CertSerial  []byte         `json:"cert_serial,omitempty"` // instead of Certificate: the inventory's of this serial key
	Phase       crp.Phase      `json:"phase,omitempty"`
	Reason      crp.Reason     `json:"reason,omitempty"`
	UserID      string         `json:"user_id,omitempty"`
	DeviceID    string         `json:"device_id,omitempty"`
	ProfileID   string         `json:"profile_id,omitempty"`
	Template    string         `json:"template,omitempty"`
	Validator   string         `json:"validator,omitempty"`
	CA          []byte         `json:"ca,omitempty"`
	Expires     int64          `json:"expires"`           // unix ns
	Written     int64          `json:"written,omitempty"` // unix ns; 0 unknown (written before it was kept)
}

func (r *record) decode() (*crp.Record, error) {
	out := &crp.Record{TransactionID: r.ID, SignerKey: r.SignerKey, Request: r.Request, CSR: r.CSR, Status: r.Status,
		Phase: r.Phase, Reason: r.Reason, UserID: r.UserID, DeviceID: r.DeviceID, ProfileID: r.ProfileID,
		Template: r.Template, Validator: r.Validator, CAHash: r.CA, Expires: time.Unix(0, r.Expires)}
	if r.Written != 0 {
		out.Written = time.Unix(0, r.Written)
	}
	if len(r.Certificate) > 0 {
		c, err := x509.ParseCertificate(r.Certificate)
		if err != nil {
			return nil, fmt.Errorf("boltstore: transaction %q: %w", r.ID, err)
		}
		out.Certificate = c
	}
	return out, nil
}

// Put implements crp.TransactionStore: the record is on disk when it returns nil.
func (s *Store) Put(ctx context.Context, r *crp.Record) error {
	return s.writeRecord(ctx, nil, r, nil)
}

// RecordIssuance implements crp.IssuanceRecorder: the certificate and its transaction
// record are written in one commit, on disk when it returns nil.
func (s *Store) RecordIssuance(ctx context.Context, c *crp.IssuedCertificate, r *crp.Record) error {
	return s.writeRecord(ctx, c, r, nil)
}

// Create implements crp.TransactionCreator: r is written, and on disk when it returns
// nil, only when no live record of its transaction id is stored; otherwise it returns
// an error matching crp.ErrRecordExists and writes nothing. The test and the write are
// one step of the commit loop, which applies writes one at a time.
func (s *Store) Create(ctx context.Context, r *crp.Record) error {
	return s.writeRecord(ctx, nil, r, s.absent)
}

// CreateIssuance implements crp.IssuanceCreator: RecordIssuance when no live record of
// r's transaction id is stored; otherwise an error matching crp.ErrRecordExists, and
// neither c nor r is written.
func (s *Store) CreateIssuance(ctx context.Context, c *crp.IssuedCertificate, r *crp.Record) error {
	return s.writeRecord(ctx, c, r, s.absent)
}

// Replace implements crp.TransactionReplacer: r is written, and on disk when it
// returns nil, only while the live record of its transaction id is old still (the
// same Request, Status, Reason and Expires); otherwise nothing is, and the error
// matches crp.ErrRecordExists (another record lives) or crp.ErrNotFound (none does).
// The test and the write are one step of the commit loop.
func (s *Store) Replace(ctx context.Context, old, r *crp.Record) error {
	return s.replace(ctx, nil, old, r)
}

// ReplaceIssuance implements crp.IssuanceReplacer: Replace, with c written in the same
// commit; when the record is not old's version, neither c nor r is written.
func (s *Store) ReplaceIssuance(ctx context.Context, c *crp.IssuedCertificate, old, r *crp.Record) error {
	return s.replace(ctx, c, old, r)
}

// replace is Replace, and ReplaceIssuance when c is not nil.
func (s *Store) replace(ctx context.Context, c *crp.IssuedCertificate, old, r *crp.Record) error {
	if old == nil || r == nil {
		return errNilRecord
	}
	if old.TransactionID != r.TransactionID {
		return fmt.Errorf("boltstore: replacing the record of transaction %q with one of %q", old.TransactionID, r.TransactionID)
	}
	return s.writeRecord(ctx, c, r, func(w *wtx, id string) error {
		var cur record
		v := w.bucket(bTx).Get(idKey(id))
		switch {
		case v == nil || json.Unmarshal(v, &cur) != nil || cur.ID != id || !time.Unix(0, cur.Expires).After(s.now()):
			return fmt.Errorf("boltstore: %w: transaction %q", crp.ErrNotFound, id)
		case !bytes.Equal(cur.Request, old.Request) || cur.Status != old.Status || cur.Reason != old.Reason ||
			cur.Expires != old.Expires.UnixNano():
			return fmt.Errorf("boltstore: %w: transaction %q was replaced meanwhile", crp.ErrRecordExists, id)
		}
		return nil
	})
}

// errNilRecord refuses a nil record given to a write.
var errNilRecord = errors.New("boltstore: nil transaction record")

// absent refuses, with an error matching crp.ErrRecordExists, to write over a live
// record of transaction id (recordLive).
func (s *Store) absent(w *wtx, id string) error {
	if s.recordLive(w, id) {
		return fmt.Errorf("boltstore: %w: transaction %q", crp.ErrRecordExists, id)
	}
	return nil
}

// writeRecord writes r, and c (when not nil) with it in one commit; with a cond, only
// when cond, given the open transaction and r's transaction id, returns nil, and
// otherwise nothing, with what cond returned. The test and the write are one step of
// the commit loop.
func (s *Store) writeRecord(ctx context.Context, c *crp.IssuedCertificate, r *crp.Record, cond func(w *wtx, id string) error) error {
	if r == nil {
		return errNilRecord
	}
	what := "recording transaction"
	var addCert func(w *wtx) error
	if c != nil {
		what = "recording certificate and transaction"
		var err error
		if addCert, err = addCertificate(c); err != nil {
			return err
		}
	}
	putRecord, err := s.putRecord(r, c != nil)
	var refused error
	if err == nil {
		err = s.write(ctx, func(w *wtx) error {
			if cond != nil {
				if refused = cond(w, r.TransactionID); refused != nil {
					return nil
				}
			}
			if addCert != nil {
				if err := addCert(w); err != nil {
					return err
				}
			}
			return putRecord(w)
		})
	}
	if err != nil {
		return fmt.Errorf("boltstore: %s: %w", what, err)
	}
	return refused
}

// recordLive reports whether a record of transaction id is stored and has not expired
// (as Get would find it).
func (s *Store) recordLive(w *wtx, id string) bool {
	v := w.bucket(bTx).Get(idKey(id))
	if v == nil {
		return false
	}
	var o record
	return json.Unmarshal(v, &o) == nil && o.ID == id && time.Unix(0, o.Expires).After(s.now())
}

// putRecord returns the write of r. With inInventory, r's certificate is written to
// the inventory in the same commit: the record names it by serial.
func (s *Store) putRecord(r *crp.Record, inInventory bool) (func(w *wtx) error, error) {
	exp := r.Expires
	if exp.IsZero() {
		exp = s.now().Add(DefaultRecordTTL)
	}
	rec := record{ID: r.TransactionID, SignerKey: r.SignerKey, Request: r.Request, CSR: r.CSR, Status: r.Status,
		Phase: r.Phase, Reason: r.Reason, UserID: r.UserID, DeviceID: r.DeviceID, ProfileID: r.ProfileID,
		Template: r.Template, Validator: r.Validator, CA: r.CAHash, Expires: exp.UnixNano()}
	if !r.Written.IsZero() {
		rec.Written = r.Written.UnixNano()
	}
	switch {
	case r.Certificate != nil && inInventory:
		rec.CertSerial = serialKey(r.Certificate.SerialNumber)
	case r.Certificate != nil:
		rec.Certificate = r.Certificate.Raw
	}
	v, err := json.Marshal(&rec)
	if err != nil {
		return nil, err
	}
	k := idKey(r.TransactionID)
	at := encodeTime(exp)
	return func(w *wtx) error {
		if old := w.bucket(bTx).Get(k); old != nil {
			var o record
			if json.Unmarshal(old, &o) == nil {
				if err := w.del(bTxExp, cat(encodeTime(time.Unix(0, o.Expires)), k)); err != nil {
					return err
				}
			}
		}
		if err := w.put(bTx, k, v); err != nil {
			return err
		}
		if err := w.put(bTxExp, cat(at, k), nil); err != nil {
			return err
		}
		if r.Status == scep.Pending {
			return w.put(bPending, k, nil)
		}
		return w.del(bPending, k)
	}, nil
}

// Get implements crp.TransactionStore.
func (s *Store) Get(ctx context.Context, id string) (*crp.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var rec record
	found := false
	err := s.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket(bTx).Get(idKey(id))
		if v == nil {
			return nil
		}
		found = true
		if err := json.Unmarshal(v, &rec); err != nil {
			return err
		}
		if len(rec.Certificate) == 0 && len(rec.CertSerial) > 0 {
			var c certificate
			cv := tx.Bucket(bCerts).Get(rec.CertSerial)
			if cv == nil {
				return errors.New("its certificate is missing from the inventory")
			}
			if err := json.Unmarshal(cv, &c); err != nil {
				return err
			}
			rec.Certificate = c.DER
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: transaction %q: %w", id, err)
	}
	if !found || rec.ID != id || !time.Unix(0, rec.Expires).After(s.now()) {
		return nil, fmt.Errorf("%w: transaction %q", crp.ErrNotFound, id)
	}
	return rec.decode()
}

// Pending implements crp.PendingLister.
func (s *Store) Pending(ctx context.Context, after string, limit int) ([]*crp.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n := crp.ListLimit(limit)
	now := s.now()
	var out []*crp.Record
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bTx)
		c := tx.Bucket(bPending).Cursor()
		k, _ := seek(c, idKey(after))
		if k != nil && after != "" && bytes.Equal(k, idKey(after)) {
			k, _ = c.Next()
		}
		for ; k != nil && len(out) < n; k, _ = c.Next() {
			var rec record
			v := b.Get(k)
			if v == nil || json.Unmarshal(v, &rec) != nil || rec.Status != scep.Pending ||
				!time.Unix(0, rec.Expires).After(now) {
				continue
			}
			r, err := rec.decode()
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// ---- the certificate inventory ----

type certificate struct {
	DER           []byte `json:"der"`
	UserID        string `json:"user_id,omitempty"`
	DeviceID      string `json:"device_id,omitempty"`
	ProfileID     string `json:"profile_id,omitempty"`
	Template      string `json:"template,omitempty"`
	TransactionID string `json:"transaction_id,omitempty"`
	IssuedAt      int64  `json:"issued_at,omitempty"` // unix ns; 0 unknown
	Withheld      bool   `json:"withheld,omitempty"`
}

func (c *certificate) decode() (*crp.IssuedCertificate, error) {
	cert, err := x509.ParseCertificate(c.DER)
	if err != nil {
		return nil, fmt.Errorf("boltstore: stored certificate: %w", err)
	}
	out := &crp.IssuedCertificate{Certificate: cert, UserID: c.UserID, DeviceID: c.DeviceID, ProfileID: c.ProfileID,
		Template: c.Template, TransactionID: c.TransactionID, Withheld: c.Withheld}
	if c.IssuedAt != 0 {
		out.IssuedAt = time.Unix(0, c.IssuedAt)
	}
	return out, nil
}

// naKey encodes a NotAfter at the precision certificates carry (seconds), so that
// index order is crp.CertificateOrder.
func naKey(t time.Time) []byte { return encodeTime(time.Unix(t.Unix(), 0)) }

func prefixKey(s string) []byte {
	return binary.AppendUvarint(nil, uint64(len(s))) // then s
}

// indexKeys returns the index entries of c: the NotAfter index, then the user's and
// the device's.
func indexKeys(userID, deviceID string, notAfter time.Time, sk []byte) [3][]byte {
	na := naKey(notAfter)
	return [3][]byte{
		cat(na, sk),
		cat(prefixKey(userID), []byte(userID), na, sk),
		cat(prefixKey(deviceID), []byte(deviceID), na, sk),
	}
}

var indexBuckets = [3][]byte{bNotAfter, bByUser, bByDevice}

// Add implements crp.CertificateStore: the record is on disk when it returns nil.
func (s *Store) Add(ctx context.Context, c *crp.IssuedCertificate) error {
	apply, err := addCertificate(c)
	if err != nil {
		return err
	}
	if err := s.write(ctx, apply); err != nil {
		return fmt.Errorf("boltstore: recording certificate: %w", err)
	}
	return nil
}

// addCertificate returns the write of c.
func addCertificate(c *crp.IssuedCertificate) (func(w *wtx) error, error) {
	if c == nil || c.Certificate == nil || c.Certificate.SerialNumber == nil || c.Certificate.SerialNumber.Sign() <= 0 {
		return nil, errors.New("boltstore: a certificate with a positive serial is needed")
	}
	rec := certificate{DER: c.Certificate.Raw, UserID: c.UserID, DeviceID: c.DeviceID, ProfileID: c.ProfileID,
		Template: c.Template, TransactionID: c.TransactionID, Withheld: c.Withheld}
	if !c.IssuedAt.IsZero() {
		rec.IssuedAt = c.IssuedAt.UnixNano()
	}
	v, err := json.Marshal(&rec)
	if err != nil {
		return nil, err
	}
	sk := serialKey(c.Certificate.SerialNumber)
	keys := indexKeys(c.UserID, c.DeviceID, c.Certificate.NotAfter, sk)
	return func(w *wtx) error {
		if old := w.bucket(bCerts).Get(sk); old != nil {
			var o certificate
			if json.Unmarshal(old, &o) == nil {
				if oc, err := x509.ParseCertificate(o.DER); err == nil {
					for i, k := range indexKeys(o.UserID, o.DeviceID, oc.NotAfter, sk) {
						if err := w.del(indexBuckets[i], k); err != nil {
							return err
						}
					}
				}
			}
		}
		if err := w.put(bCerts, sk, v); err != nil {
			return err
		}
		for i, k := range keys {
			if err := w.put(indexBuckets[i], k, nil); err != nil {
				return err
			}
		}
		return nil
	}, nil
}

// Lookup implements crp.CertificateStore.
func (s *Store) Lookup(ctx context.Context, serial *big.Int) (*crp.IssuedCertificate, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if serial == nil || serial.Sign() <= 0 {
		return nil, fmt.Errorf("%w: certificate %v", crp.ErrNotFound, serial)
	}
	var rec certificate
	found := false
	err := s.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket(bCerts).Get(serialKey(serial))
		if v == nil {
			return nil
		}
		found = true
		return json.Unmarshal(v, &rec)
	})
	switch {
	case err != nil:
		return nil, fmt.Errorf("boltstore: certificate %x: %w", serial, err)
	case !found:
		return nil, fmt.Errorf("%w: certificate %x", crp.ErrNotFound, serial)
	}
	return rec.decode()
}

// Certificates implements crp.CertificateQuerier, from the index of the user, the
// device or NotAfter.
func (s *Store) Certificates(ctx context.Context, q crp.CertificateQuery) ([]*crp.IssuedCertificate, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := q.Check(); err != nil {
		return nil, err
	}
	n := crp.ListLimit(q.Limit)
	var prefix []byte
	idx := bNotAfter
	switch {
	case q.UserID != "":
		idx, prefix = bByUser, cat(prefixKey(q.UserID), []byte(q.UserID))
	case q.DeviceID != "":
		idx, prefix = bByDevice, cat(prefixKey(q.DeviceID), []byte(q.DeviceID))
	}
	start := prefix
	if !q.ExpiresAfter.IsZero() {
		start = cat(prefix, naKey(q.ExpiresAfter))
	}
	var afterKey []byte
	if q.After != nil {
		afterKey = cat(prefix, naKey(q.After.Certificate.NotAfter), serialKey(q.After.Certificate.SerialNumber))
		if bytes.Compare(afterKey, start) > 0 {
			start = afterKey
		}
	}
	var end []byte
	// A bound past maxKeyTime leaves the end open: keys saturate there (encodeTime).
	if b := q.ExpiresBefore; !b.IsZero() && !b.After(maxKeyTime) {
		if !b.Truncate(time.Second).Equal(b) {
			b = b.Add(time.Second) // NotAfter has second precision: round the bound up
		}
		end = cat(prefix, naKey(b))
	}
	// The certificates are parsed after the read, outside the commit loop, which
	// would otherwise hold every write back while a long list is parsed.
	var found []certificate
	err := s.view(ctx, func(tx *bolt.Tx) error {
		certs := tx.Bucket(bCerts)
		c := tx.Bucket(idx).Cursor()
		for k, _ := seek(c, start); k != nil && len(found) < n; k, _ = c.Next() {
			if !bytes.HasPrefix(k, prefix) || (end != nil && bytes.Compare(k, end) >= 0) {
				break
			}
			if afterKey != nil && bytes.Compare(k, afterKey) <= 0 {
				continue
			}
			// The key holds NotAfter to the second, as the certificate does: one in
			// ExpiresAfter's second but before it is not counted toward the page.
			if !q.ExpiresAfter.IsZero() && !q.ExpiresAfter.After(maxKeyTime) &&
				decodeTime(k[len(prefix):len(prefix)+8]).Before(q.ExpiresAfter) {
				continue
			}
			var rec certificate
			v := certs.Get(k[len(prefix)+8:])
			if v == nil || json.Unmarshal(v, &rec) != nil ||
				(q.UserID != "" && rec.UserID != q.UserID) || (q.DeviceID != "" && rec.DeviceID != q.DeviceID) {
				continue
			}
			found = append(found, rec)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]*crp.IssuedCertificate, 0, len(found))
	for i := range found {
		ic, err := found[i].decode()
		if err != nil {
			return nil, err
		}
		if q.Match(ic) {
			out = append(out, ic)
		}
	}
	return out, nil
}

// ---- revocations ----

type revocation struct {
	Serial    []byte `json:"serial"`
	Reason    int    `json:"reason"`
	RevokedAt int64  `json:"revoked_at"` // unix ns
	By        string `json:"by,omitempty"`
	// Issuer is the revoked certificate's DER issuer name; absent in records
	// written before it was kept (crp.Revocation.Issuer nil: any issuer's).
	Issuer []byte `json:"issuer,omitempty"`
}

func (r *revocation) decode() *crp.Revocation {
	return &crp.Revocation{Serial: new(big.Int).SetBytes(r.Serial), Reason: r.Reason,
		RevokedAt: time.Unix(0, r.RevokedAt), By: r.By, Issuer: r.Issuer}
}

// Revoke implements crp.RevocationStore: the revocation is on disk when it returns.
func (s *Store) Revoke(ctx context.Context, r *crp.Revocation) (*crp.Revocation, error) {
	if err := crp.CheckRevocation(r); err != nil {
		return nil, err
	}
	rec := revocation{Serial: r.Serial.Bytes(), Reason: r.Reason, RevokedAt: r.RevokedAt.UnixNano(), By: r.By,
		Issuer: r.Issuer}
	v, err := json.Marshal(&rec)
	if err != nil {
		return nil, err
	}
	sk := serialKey(r.Serial)
	var have revocation
	err = s.write(ctx, func(w *wtx) error {
		have = rec
		if old := w.bucket(bRevoked).Get(sk); old != nil {
			have = revocation{} // the first revocation alone, none of rec's fields
			return json.Unmarshal(old, &have)
		}
		if err := w.put(bRevoked, sk, v); err != nil {
			return err
		}
		return w.put(bRevokedAt, cat(encodeTime(r.RevokedAt), sk), nil)
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: revoking: %w", err)
	}
	return have.decode(), nil
}

// RevokedSince implements crp.RevocationStore.
func (s *Store) RevokedSince(ctx context.Context, since time.Time) ([]*crp.Revocation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// The read copies the entries; they are decoded after it, outside the commit loop,
	// which would otherwise hold every write back while a long CRL's worth is decoded.
	var raw [][]byte
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bRevoked)
		c := tx.Bucket(bRevokedAt).Cursor()
		var start []byte
		if !since.IsZero() {
			start = encodeTime(since)
		}
		for k, _ := seek(c, start); k != nil; k, _ = c.Next() {
			if v := b.Get(k[8:]); v != nil {
				raw = append(raw, bytes.Clone(v))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]*crp.Revocation, 0, len(raw))
	for _, v := range raw {
		var rec revocation
		if json.Unmarshal(v, &rec) == nil {
			out = append(out, rec.decode())
		}
	}
	return out, nil
}

// IsRevoked implements crp.RevocationChecker: the serial is revoked, for cert's
// issuer or for no issuer in particular (see crp.Revocation.Issuer). A certificate
// without a serial is an error.
func (s *Store) IsRevoked(ctx context.Context, cert *x509.Certificate) (bool, error) {
	if cert == nil || cert.SerialNumber == nil {
		return false, errors.New("boltstore: revocation check of a certificate without a serial")
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	var revoked bool
	err := s.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket(bRevoked).Get(serialKey(cert.SerialNumber))
		if v == nil {
			return nil
		}
		var rec revocation
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("boltstore: revocation of %x: %w", cert.SerialNumber, err)
		}
		revoked = rec.decode().For(cert.RawIssuer)
		return nil
	})
	return revoked, err
}
