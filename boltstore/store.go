// Package boltstore keeps everything a gateway remembers in one file, with the
// embedded database go.etcd.io/bbolt: challenge claims, transaction records and
// pending requests, the issued-certificate inventory and revocations (it implements
// every interface of crp.Store). It is the default of the examples and of
// crptest.Options.Dir: a gateway on one machine that must survive restarts and
// crashes.
//
// # Durability and group commit
//
// Every write returns once it is on disk: bbolt commits copy-on-write pages and then
// its meta page, each followed by fdatasync, so that after a crash (even SIGKILL or a
// power loss on a disk that honours flushes) the file opens at the last commit, and
// every write a caller saw succeed is in it. The challenge claim is thus on disk
// before the CA signs, and the certificate's record before the CertRep leaves.
//
// Writes go through one commit queue: while a commit is being synced, the writes that
// arrive wait and are committed together in the next one. A single enrollment pays
// its commits alone (no timer delays it); under concurrent load the fsyncs are shared
// (see BenchmarkEnrollmentWrites for the count per enrollment).
//
// # Retention
//
// Claims are kept until their challenge expires (at least a minute); transaction
// records, and so pending requests, until Record.Expires (a zero Expires is
// [DefaultRecordTTL] from the write). Expired entries are deleted a few at a time by
// later commits ([sweepBudget] per commit, through expiry indexes: never a full scan).
// Certificates and revocations are kept: they are the inventory and the CRL. The file
// grows with them (about 2 KB per certificate with its indexes) and reuses the
// pages freed by expired claims and records.
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
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
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
	schemaVersion = 2
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

// Options configures [Open]. The zero value has defaults.
type Options struct {
	// Timeout is how long Open waits for another process to release the file; zero
	// means one second.
	Timeout time.Duration
	// Now is the clock of expiries; nil means time.Now.
	Now func() time.Time
}

// Store is a crp.Store in one bbolt file. Its methods are safe for concurrent use.
type Store struct {
	db   *bolt.DB
	now  func() time.Time
	ops  chan *op
	quit chan struct{}
	done chan struct{}
	once sync.Once

	commits atomic.Int64 // commits made, for the benchmarks' fsync counts
}

var (
	_ crp.Store             = (*Store)(nil)
	_ challenge.ReplayStore = (*Store)(nil)
	_ crp.IssuanceRecorder  = (*Store)(nil)
)

// op is one write waiting in the commit queue. apply may run twice (once in a
// group, then alone when another write of the group failed): it must set its
// results afresh each time.
type op struct {
	apply func(tx *bolt.Tx) error
	done  chan error
}

// Open opens (creating if needed) the store in the file at path.
func Open(path string, o *Options) (*Store, error) {
	if o == nil {
		o = &Options{}
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if err != nil {
		return nil, fmt.Errorf("boltstore: opening %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bMeta)
		switch v := meta.Get(keyVersion); {
		case v == nil:
			return meta.Put(keyVersion, []byte{schemaVersion})
		case len(v) != 1 || v[0] > schemaVersion:
			return fmt.Errorf("boltstore: %s has schema version %v, newer than this package's %d", path, v, schemaVersion)
		case v[0] < schemaVersion:
			return meta.Put(keyVersion, []byte{schemaVersion})
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	s := &Store{db: db, now: o.Now, ops: make(chan *op, maxBatch), quit: make(chan struct{}), done: make(chan struct{})}
	if s.now == nil {
		s.now = time.Now
	}
	go s.commitLoop()
	return s, nil
}

// Close waits for the writes under way and closes the file.
func (s *Store) Close() error {
	s.once.Do(func() { close(s.quit) })
	<-s.done
	return s.db.Close()
}

// view runs a read-only transaction; on a closed Store it returns ErrClosed.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	err := s.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// write queues apply and waits until it is committed (durable) or failed. Once queued,
// a write is committed even if ctx ends: the caller waits for the outcome, so that it
// never reports as failed a write that is on disk.
func (s *Store) write(ctx context.Context, apply func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-s.quit:
		return ErrClosed
	default:
	}
	o := &op{apply: apply, done: make(chan error, 1)}
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
		// Closed: the write was committed before, or never will be.
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
	batch := make([]*op, 0, maxBatch)
	for {
		var first *op
		select {
		case first = <-s.ops:
		case <-s.quit:
			// Writes queued before Close are still committed.
			select {
			case first = <-s.ops:
			default:
				return
			}
		}
		batch = append(batch[:0], first)
	drain:
		for len(batch) < maxBatch {
			select {
			case o := <-s.ops:
				batch = append(batch, o)
			default:
				break drain
			}
		}
		s.commit(batch)
	}
}

// commit writes a group in one transaction (one pair of fsyncs). When one write of
// the group fails, the group is rolled back and each write is committed alone.
func (s *Store) commit(batch []*op) {
	now := s.now()
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, o := range batch {
			if err := o.apply(tx); err != nil {
				return err
			}
		}
		return sweep(tx, now)
	})
	s.commits.Add(1)
	if err == nil || len(batch) == 1 {
		for _, o := range batch {
			o.done <- err
		}
		return
	}
	for _, o := range batch {
		o.done <- s.db.Update(o.apply)
		s.commits.Add(1)
	}
}

// sweep deletes up to sweepBudget expired claims and records, found through their
// expiry indexes. A main entry goes only if it still has the expiry its index entry
// names (it may have been replaced since, with a later one).
func sweep(tx *bolt.Tx, now time.Time) error {
	budget := sweepBudget
	claims := tx.Bucket(bClaims)
	err := sweepIndex(tx.Bucket(bClaimExp), now, &budget, func(at, id []byte) error {
		if v := claims.Get(id); v != nil && bytes.Equal(v, at) {
			return claims.Delete(id)
		}
		return nil
	})
	if err != nil {
		return err
	}
	records, pending := tx.Bucket(bTx), tx.Bucket(bPending)
	return sweepIndex(tx.Bucket(bTxExp), now, &budget, func(at, id []byte) error {
		var r record
		if v := records.Get(id); v == nil || json.Unmarshal(v, &r) != nil || !bytes.Equal(encodeTime(time.Unix(0, r.Expires)), at) {
			return nil
		}
		if err := pending.Delete(id); err != nil {
			return err
		}
		return records.Delete(id)
	})
}

// sweepIndex deletes the index entries (expiry|id) that expired before now, at most
// *budget of them, calling drop for each first.
func sweepIndex(idx *bolt.Bucket, now time.Time, budget *int, drop func(at, id []byte) error) error {
	var dead [][]byte
	c := idx.Cursor()
	for k, _ := c.First(); k != nil && *budget > 0 && !decodeTime(k[:8]).After(now); k, _ = c.Next() {
		dead = append(dead, append([]byte(nil), k...))
		*budget--
	}
	for _, k := range dead {
		if err := drop(k[:8], k[8:]); err != nil {
			return err
		}
		if err := idx.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// encodeTime encodes t (unix nanoseconds) so that byte order is time order.
func encodeTime(t time.Time) []byte {
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
	err := s.write(ctx, func(tx *bolt.Tx) error {
		replayed = false
		now := s.now()
		b := tx.Bucket(bClaims)
		if v := b.Get(k); v != nil && decodeTime(v).After(now) {
			replayed = true
			return nil
		}
		u := until
		if !u.After(now) {
			u = now.Add(minClaimTTL)
		}
		at := encodeTime(u)
		if err := b.Put(k, at); err != nil {
			return err
		}
		return tx.Bucket(bClaimExp).Put(cat(at, k), nil)
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
	err := s.write(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bClaims)
		v := b.Get(k)
		if v == nil {
			return nil
		}
		if err := tx.Bucket(bClaimExp).Delete(cat(v, k)); err != nil {
			return err
		}
		return b.Delete(k)
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
	Expires     int64          `json:"expires"` // unix ns
}

func (r *record) decode() (*crp.Record, error) {
	out := &crp.Record{TransactionID: r.ID, SignerKey: r.SignerKey, Request: r.Request, CSR: r.CSR, Status: r.Status,
		Phase: r.Phase, Reason: r.Reason, UserID: r.UserID, DeviceID: r.DeviceID, ProfileID: r.ProfileID,
		Template: r.Template, Validator: r.Validator, Expires: time.Unix(0, r.Expires)}
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
	apply, err := s.putRecord(r, false)
	if err == nil {
		err = s.write(ctx, apply)
	}
	if err != nil {
		return fmt.Errorf("boltstore: recording transaction: %w", err)
	}
	return nil
}

// RecordIssuance implements crp.IssuanceRecorder: the certificate and its transaction
// record are written in one commit, on disk when it returns nil.
func (s *Store) RecordIssuance(ctx context.Context, c *crp.IssuedCertificate, r *crp.Record) error {
	addCert, err := addCertificate(c)
	if err != nil {
		return err
	}
	putRecord, err := s.putRecord(r, true)
	if err == nil {
		err = s.write(ctx, func(tx *bolt.Tx) error {
			if err := addCert(tx); err != nil {
				return err
			}
			return putRecord(tx)
		})
	}
	if err != nil {
		return fmt.Errorf("boltstore: recording certificate and transaction: %w", err)
	}
	return nil
}

// putRecord returns the write of r. With inInventory, r's certificate is written to
// the inventory in the same commit: the record names it by serial.
func (s *Store) putRecord(r *crp.Record, inInventory bool) (func(tx *bolt.Tx) error, error) {
	exp := r.Expires
	if exp.IsZero() {
		exp = s.now().Add(DefaultRecordTTL)
	}
	rec := record{ID: r.TransactionID, SignerKey: r.SignerKey, Request: r.Request, CSR: r.CSR, Status: r.Status,
		Phase: r.Phase, Reason: r.Reason, UserID: r.UserID, DeviceID: r.DeviceID, ProfileID: r.ProfileID,
		Template: r.Template, Validator: r.Validator, Expires: exp.UnixNano()}
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
	return func(tx *bolt.Tx) error {
		b, idx := tx.Bucket(bTx), tx.Bucket(bTxExp)
		if old := b.Get(k); old != nil {
			var o record
			if json.Unmarshal(old, &o) == nil {
				if err := idx.Delete(cat(encodeTime(time.Unix(0, o.Expires)), k)); err != nil {
					return err
				}
			}
		}
		if err := b.Put(k, v); err != nil {
			return err
		}
		if err := idx.Put(cat(at, k), nil); err != nil {
			return err
		}
		if r.Status == scep.Pending {
			return tx.Bucket(bPending).Put(k, nil)
		}
		return tx.Bucket(bPending).Delete(k)
	}, nil
}

// Get implements crp.TransactionStore.
func (s *Store) Get(ctx context.Context, id string) (*crp.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var rec record
	found := false
	err := s.view(func(tx *bolt.Tx) error {
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
	err := s.view(func(tx *bolt.Tx) error {
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
}

func (c *certificate) decode() (*crp.IssuedCertificate, error) {
	cert, err := x509.ParseCertificate(c.DER)
	if err != nil {
		return nil, fmt.Errorf("boltstore: stored certificate: %w", err)
	}
	out := &crp.IssuedCertificate{Certificate: cert, UserID: c.UserID, DeviceID: c.DeviceID, ProfileID: c.ProfileID,
		Template: c.Template, TransactionID: c.TransactionID}
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
func addCertificate(c *crp.IssuedCertificate) (func(tx *bolt.Tx) error, error) {
	if c == nil || c.Certificate == nil || c.Certificate.SerialNumber == nil || c.Certificate.SerialNumber.Sign() <= 0 {
		return nil, errors.New("boltstore: a certificate with a positive serial is needed")
	}
	rec := certificate{DER: c.Certificate.Raw, UserID: c.UserID, DeviceID: c.DeviceID, ProfileID: c.ProfileID,
		Template: c.Template, TransactionID: c.TransactionID}
	if !c.IssuedAt.IsZero() {
		rec.IssuedAt = c.IssuedAt.UnixNano()
	}
	v, err := json.Marshal(&rec)
	if err != nil {
		return nil, err
	}
	sk := serialKey(c.Certificate.SerialNumber)
	keys := indexKeys(c.UserID, c.DeviceID, c.Certificate.NotAfter, sk)
	return func(tx *bolt.Tx) error {
		b := tx.Bucket(bCerts)
		if old := b.Get(sk); old != nil {
			var o certificate
			if json.Unmarshal(old, &o) == nil {
				if oc, err := x509.ParseCertificate(o.DER); err == nil {
					for i, k := range indexKeys(o.UserID, o.DeviceID, oc.NotAfter, sk) {
						if err := tx.Bucket(indexBuckets[i]).Delete(k); err != nil {
							return err
						}
					}
				}
			}
		}
		if err := b.Put(sk, v); err != nil {
			return err
		}
		for i, k := range keys {
			if err := tx.Bucket(indexBuckets[i]).Put(k, nil); err != nil {
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
	err := s.view(func(tx *bolt.Tx) error {
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
	if b := q.ExpiresBefore; !b.IsZero() {
		if !b.Truncate(time.Second).Equal(b) {
			b = b.Add(time.Second) // NotAfter has second precision: round the bound up
		}
		end = cat(prefix, naKey(b))
	}
	var out []*crp.IssuedCertificate
	err := s.view(func(tx *bolt.Tx) error {
		certs := tx.Bucket(bCerts)
		c := tx.Bucket(idx).Cursor()
		for k, _ := seek(c, start); k != nil && len(out) < n; k, _ = c.Next() {
			if !bytes.HasPrefix(k, prefix) || (end != nil && bytes.Compare(k, end) >= 0) {
				break
			}
			if afterKey != nil && bytes.Compare(k, afterKey) <= 0 {
				continue
			}
			var rec certificate
			v := certs.Get(k[len(prefix)+8:])
			if v == nil || json.Unmarshal(v, &rec) != nil {
				continue
			}
			ic, err := rec.decode()
			if err != nil {
				return err
			}
			if q.Match(ic) {
				out = append(out, ic)
			}
		}
		return nil
	})
	return out, err
}

// ---- revocations ----

type revocation struct {
	Serial    []byte `json:"serial"`
	Reason    int    `json:"reason"`
	RevokedAt int64  `json:"revoked_at"` // unix ns
	By        string `json:"by,omitempty"`
}

func (r *revocation) decode() *crp.Revocation {
	return &crp.Revocation{Serial: new(big.Int).SetBytes(r.Serial), Reason: r.Reason,
		RevokedAt: time.Unix(0, r.RevokedAt), By: r.By}
}

// Revoke implements crp.RevocationStore: the revocation is on disk when it returns.
func (s *Store) Revoke(ctx context.Context, r *crp.Revocation) (*crp.Revocation, error) {
	if err := crp.CheckRevocation(r); err != nil {
		return nil, err
	}
	rec := revocation{Serial: r.Serial.Bytes(), Reason: r.Reason, RevokedAt: r.RevokedAt.UnixNano(), By: r.By}
	v, err := json.Marshal(&rec)
	if err != nil {
		return nil, err
	}
	sk := serialKey(r.Serial)
	var have revocation
	err = s.write(ctx, func(tx *bolt.Tx) error {
		have = rec
		b := tx.Bucket(bRevoked)
		if old := b.Get(sk); old != nil {
			have = revocation{} // the first revocation alone, none of rec's fields
			return json.Unmarshal(old, &have)
		}
		if err := b.Put(sk, v); err != nil {
			return err
		}
		return tx.Bucket(bRevokedAt).Put(cat(encodeTime(r.RevokedAt), sk), nil)
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
	var out []*crp.Revocation
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bRevoked)
		c := tx.Bucket(bRevokedAt).Cursor()
		var start []byte
		if !since.IsZero() {
			start = encodeTime(since)
		}
		for k, _ := seek(c, start); k != nil; k, _ = c.Next() {
			var rec revocation
			if v := b.Get(k[8:]); v == nil || json.Unmarshal(v, &rec) != nil {
				continue
			}
			out = append(out, rec.decode())
		}
		return nil
	})
	return out, err
}

// IsRevoked implements crp.RevocationChecker. A certificate without a serial is an
// error.
func (s *Store) IsRevoked(ctx context.Context, cert *x509.Certificate) (bool, error) {
	if cert == nil || cert.SerialNumber == nil {
		return false, errors.New("boltstore: revocation check of a certificate without a serial")
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	var revoked bool
	err := s.view(func(tx *bolt.Tx) error {
		revoked = tx.Bucket(bRevoked).Get(serialKey(cert.SerialNumber)) != nil
		return nil
	})
	return revoked, err
}
