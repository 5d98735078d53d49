package redisstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/internal/poolwait"
	"github.com/scepkit/scepkit/scep"
)

// DefaultPrefix starts every key a [Store] with an empty Prefix writes.
const DefaultPrefix = "scepkit:"

// DefaultRecordTTL is how long a transaction record whose Expires is zero is kept.
const DefaultRecordTTL = 24 * time.Hour

// minClaimTTL is how long a challenge id claimed with an until already past (or less
// than this away) is kept, as challenge.MemoryReplayStore does.
const minClaimTTL = time.Minute

// maxIDLen bounds the id written into a key; longer ids are replaced by their
// SHA-256, so a client cannot make keys of arbitrary size. Hashed ids live in a
// namespace of their own (kind "tx#", not "tx:"), so that no id chosen by a client
// names the key of a hashed one.
const maxIDLen = 128

// Store keeps the state gateways running side by side must share in Redis: one-time
// use of challenges ([challenge.ReplayStore] and [challenge.Releaser]) and transaction
// records ([crp.TransactionStore]). Fill Client and pass the same Store (or Stores with
// the same Prefix on the same Redis) to every gateway. Its methods are safe for
// concurrent use; do not change the fields while they run.
type Store struct {
	// Client is the connection to Redis. Required. Any go-redis client works: a
	// *redis.Client, a *redis.ClusterClient (every command touches a single key), a
	// Sentinel failover client or a *redis.Ring. The Store never closes it.
	Client redis.UniversalClient
	// Prefix starts every key, so that several deployments can share one Redis.
	// Empty means [DefaultPrefix]. Challenge claims are kept under Prefix+"claim:"+id,
	// transaction records under Prefix+"tx:"+id; an id over 128 bytes is replaced by
	// the hex SHA-256 of it under Prefix+"claim#sha256:" or Prefix+"tx#sha256:", which
	// no literal id can reach. The ids of pending requests are indexed in the sorted
	// set Prefix+"pending" (see [Store.Pending]); Prefix+"pending-indexed" says that
	// the pending records of an earlier release, which no index named, were indexed.
	Prefix string
	// Now is the clock that turns the deadlines of Claim and of Record.Expires into
	// TTLs; nil means time.Now. Redis expires keys by its own clock: only the
	// difference between Now and the deadline matters, not the offset between the two
	// clocks. A step of Redis's clock forward expires every key early by as much:
	// challenge claims carry a day of margin for it (challenge.ClaimMargin).
	Now func() time.Time
}

var (
	_ challenge.ReplayStore   = (*Store)(nil)
	_ challenge.Releaser      = (*Store)(nil)
	_ crp.TransactionStore    = (*Store)(nil)
	_ crp.TransactionCreator  = (*Store)(nil)
	_ crp.TransactionReplacer = (*Store)(nil)
	_ crp.PendingLister       = (*Store)(nil)
)

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Store) key(kind, id string) string {
	p := s.Prefix
	if p == "" {
		p = DefaultPrefix
	}
	if len(id) > maxIDLen {
		sum := sha256.Sum256([]byte(id))
		return p + strings.TrimSuffix(kind, ":") + "#sha256:" + hex.EncodeToString(sum[:])
	}
	return p + kind + id
}

// ClientsWait bounds how long a command waits, beyond the client's own retries, while
// Redis closes the connections the client opens at once, as it does beyond its
// maxclients (the client then reads "ERR max number of clients reached", or finds the
// connection closed as it writes): the command is sent again once one of the pool's
// connections is idle, or every refusedRetry, rather than failing while the pool's
// connections are merely busy. At a gateway, a certificate the CA has signed is
// withheld, and its challenge spent, when its record cannot be written. Every command
// a Store sends may be sent twice: a claim finds its own token (see [Store.Claim]),
// the others write or remove the same value.
const ClientsWait = 2 * time.Second

// refusedRetry is how often a command refused a connection is sent again (opening a
// connection) while it waits for one of the pool's own.
const refusedRetry = 50 * time.Millisecond

// retry runs cmd, and again while its error is refused, for at most ClientsWait and
// while ctx lasts (see ClientsWait). It returns cmd's last error.
func retry(ctx context.Context, c redis.UniversalClient, cmd func() error) error {
	err := cmd()
	if err == nil || !refused(err) {
		return err
	}
	return poolwait.Retry(ctx, err, refused, func() bool { return c.PoolStats().IdleConns > 0 }, refusedRetry,
		time.Now().Add(ClientsWait), cmd)
}

// refused reports whether err is Redis closing a connection as it was opened: its
// reply to a client beyond maxclients, or the connection found closed (a write that
// met a closed socket, a reset, or the end of the stream where the reply was to be:
// a client that wrote before Redis closed it reads io.EOF).
func refused(err error) bool {
	return strings.HasPrefix(err.Error(), "ERR max number of clients reached") ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF)
}

func (s *Store) client() (redis.UniversalClient, error) {
	if s.Client == nil {
		return nil, errors.New("redisstore: Store.Client is nil")
	}
	return s.Client, nil
}

// Ping implements crp.Pinger: one PING to Redis.
func (s *Store) Ping(ctx context.Context) error {
	c, err := s.client()
	if err != nil {
		return err
	}
	if err := retry(ctx, c, func() error { return c.Ping(ctx).Err() }); err != nil {
		return fmt.Errorf("redisstore: ping: %w", err)
	}
	return nil
}

// Claim records one-time use of the challenge id until the time until. It returns nil
// for the first claim and [challenge.ErrReplayed] for every later claim of id before
// until, from this process or any other using the same Redis and Prefix. An until
// already past (or less than a minute away) is kept one minute. An empty id is refused
// with an error matching [challenge.ErrMissingClaim].
//
// The claim is one command, SET key token NX PX ttl, so of any number of concurrent
// claims exactly one succeeds: there is no read before the write. The token is random
// and unique to this call; when SET NX finds the key, a GET tells whether the token is
// ours (a retry by go-redis after the first SET was applied but its reply lost: the
// claim is ours and succeeds) or another claimant's (replayed).
//
// Any other failure (Redis unreachable, a timeout, ctx done) returns an error that
// does not match ErrReplayed: the store could not decide, and the caller (crp) must
// refuse the request for now. If Redis applied the SET but no reply ever came back,
// the challenge stays claimed until it expires: the device then needs a new challenge
// from the MDM.
func (s *Store) Claim(ctx context.Context, id string, until time.Time) error {
	if id == "" {
		return fmt.Errorf("%w: empty id", challenge.ErrMissingClaim)
	}
	c, err := s.client()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisstore: claim: %w", err)
	}
	ttl := until.Sub(s.now())
	if ttl < minClaimTTL {
		ttl = minClaimTTL
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("redisstore: claim: %w", err)
	}
	return s.claim(ctx, c, s.key("claim:", id), hex.EncodeToString(b[:]), ttl)
}

// claim sets key to token if it is free; it succeeds too when key already holds token.
func (s *Store) claim(ctx context.Context, c redis.UniversalClient, key, token string, ttl time.Duration) error {
	err := retry(ctx, c, func() error { return c.SetArgs(ctx, key, token, redis.SetArgs{Mode: "NX", TTL: ttl}).Err() })
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, redis.Nil):
		return fmt.Errorf("redisstore: claim: %w", err)
	}
	var held string
	err = retry(ctx, c, func() (err error) { held, err = c.Get(ctx, key).Result(); return err })
	switch {
	case err == nil && held == token:
		return nil // our own SET, applied on a retried attempt
	case err == nil, errors.Is(err, redis.Nil):
		// Held by another claimant (or expired in between, which only a claim
		// shorter than a round trip allows): replayed either way.
		return challenge.ErrReplayed
	}
	return fmt.Errorf("redisstore: claim: %w", err)
}

// Release forgets a claim of id, so that the challenge can be presented again after a
// transient failure (crp calls it when the CA is unavailable). Releasing an id that is
// not claimed is not an error.
//
// Release is a plain DEL, without checking that the claim is the caller's: only the
// claimant that won calls Release, and a claim lasts as long as the challenge can be
// verified, so the key cannot have passed to another claimant meanwhile.
func (s *Store) Release(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	c, err := s.client()
	if err != nil {
		return err
	}
	if err := retry(ctx, c, func() error { return c.Del(ctx, s.key("claim:", id)).Err() }); err != nil {
		return fmt.Errorf("redisstore: release: %w", err)
	}
	return nil
}

// record is the stored form of a crp.Record, JSON with the certificate as DER.
type record struct {
	V             int            `json:"v"`
	TransactionID string         `json:"tid"`
	SignerKey     []byte         `json:"signer,omitempty"`
	Request       []byte         `json:"req,omitempty"`
	CSR           []byte         `json:"csr,omitempty"`
	Status        scep.PKIStatus `json:"status"`
	Certificate   []byte         `json:"cert,omitempty"`
	Phase         crp.Phase      `json:"phase"`
	Reason        crp.Reason     `json:"reason,omitempty"`
	UserID        string         `json:"user,omitempty"`
	DeviceID      string         `json:"device,omitempty"`
	ProfileID     string         `json:"profile,omitempty"`
	Template      string         `json:"template,omitempty"`
	Validator     string         `json:"validator,omitempty"`
	CA            []byte         `json:"ca,omitempty"`
	Expires       time.Time      `json:"expires"`
	// Written is crp.Record.Written, absent when zero (unknown). A release before it
	// ignores the field, as JSON does, and reads the record as before: recordVersion
	// stays, which such a release would refuse.
	Written time.Time `json:"written,omitzero"`
	// Write names the Replace that wrote the record, so that a Replace sent again
	// once its reply was lost knows its own write from another gateway's.
	Write string `json:"w,omitempty"`
}

const recordVersion = 1

// Put stores r under its TransactionID, replacing any record with that id, with a TTL
// that ends at r.Expires ([DefaultRecordTTL] when Expires is zero). A record already
// expired deletes any record with that id. The certificate is stored as DER.
func (s *Store) Put(ctx context.Context, r *crp.Record) error {
	return s.put(ctx, r, false)
}

// Create implements crp.TransactionCreator: Put when no live record of r's
// transaction id is stored, and otherwise an error matching crp.ErrRecordExists, the
// record not written. The write is a SET NX; when the key is present, the test and the
// write are one transaction on it (WATCH, then MULTI/EXEC), retried when another
// client wrote the key in between: of concurrent Creates of one id, from any gateway,
// one writes. A record judged expired
// by this Store's clock (see Get) counts as none.
func (s *Store) Create(ctx context.Context, r *crp.Record) error {
	return s.put(ctx, r, true)
}

// errNilRecord refuses a nil record given to a write.
var errNilRecord = errors.New("redisstore: nil transaction record")

// createAttempts bounds how often Create tries again when the record's key changed
// between its test and its write.
const createAttempts = 8

func (s *Store) put(ctx context.Context, r *crp.Record, create bool) error {
	if r == nil {
		return errNilRecord
	}
	c, err := s.client()
	if err != nil {
		return err
	}
	key := s.key("tx:", r.TransactionID)
	ttl := s.recordTTL(r)
	if ttl < time.Millisecond {
		if create {
			// Nothing to write, and a live record is not deleted: refused as any
			// Create over it.
			switch exists, err := s.setIfNone(ctx, c, key, r.TransactionID, nil, 0); {
			case err != nil:
				return fmt.Errorf("redisstore: put %q: %w", r.TransactionID, err)
			case exists:
				return fmt.Errorf("redisstore: %w: transaction %q", crp.ErrRecordExists, r.TransactionID)
			}
			return nil
		}
		if err := retry(ctx, c, func() error { return c.Del(ctx, key).Err() }); err != nil {
			return fmt.Errorf("redisstore: put %q: %w", r.TransactionID, err)
		}
		return nil
	}
	b, err := encodeRecord(r)
	if err != nil {
		return fmt.Errorf("redisstore: put %q: %w", r.TransactionID, err)
	}
	// The pending index is written before a pending record and cleaned after a
	// decided one, each a command on one key (Redis Cluster): a failure between the
	// two leaves an id in the index whose record is not pending, which Pending skips
	// and removes, never a pending record missing from the index.
	if r.Status == scep.Pending {
		if err := s.indexPending(ctx, c, r.TransactionID, s.now().Add(ttl), create); err != nil {
			return fmt.Errorf("redisstore: put %q: %w", r.TransactionID, err)
		}
	}
	if create {
		exists, err := s.setIfNone(ctx, c, key, r.TransactionID, b, ttl)
		switch {
		case err != nil:
			return fmt.Errorf("redisstore: put %q: %w", r.TransactionID, err)
		case exists:
			// A pending id indexed above is skipped and removed by Pending.
			return fmt.Errorf("redisstore: %w: transaction %q", crp.ErrRecordExists, r.TransactionID)
		}
	} else if err := retry(ctx, c, func() error { return c.Set(ctx, key, b, ttl).Err() }); err != nil {
		return fmt.Errorf("redisstore: put %q: %w", r.TransactionID, err)
	}
	if err := s.unindexDecided(ctx, c, r); err != nil {
		return fmt.Errorf("redisstore: put %q: %w", r.TransactionID, err)
	}
	return nil
}

// Replace implements crp.TransactionReplacer: Put, only while the live record of r's
// transaction id is old still (the same Request, Status, Reason and Expires);
// otherwise nothing is written, and the error matches crp.ErrRecordExists (another
// record lives, or one this Store cannot read) or crp.ErrNotFound (none does). The test
// and the write are one transaction on the record's key (WATCH, then MULTI/EXEC),
// tested again when another client wrote the key in between: of concurrent Replaces
// of one version, from any gateway, one writes. A Replace whose EXEC applied but
// whose answer was lost, and which is sent again, finds the record it wrote (the
// record names the write that made it, since gateways ending one transaction write
// the same record) and returns nil; one that finds another's write is refused.
func (s *Store) Replace(ctx context.Context, old, r *crp.Record) error {
	if old == nil || r == nil {
		return errNilRecord
	}
	if old.TransactionID != r.TransactionID {
		return fmt.Errorf("redisstore: replacing the record of transaction %q with one of %q", old.TransactionID, r.TransactionID)
	}
	c, err := s.client()
	if err != nil {
		return err
	}
	id := r.TransactionID
	key := s.key("tx:", id)
	ttl := s.recordTTL(r)
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return fmt.Errorf("redisstore: replace %q: %w", id, err)
	}
	write := hex.EncodeToString(nonce[:])
	var b []byte // nil: r has expired already, and the record is deleted
	if ttl >= time.Millisecond {
		if b, err = encodeRecordWrite(r, write); err != nil {
			return fmt.Errorf("redisstore: replace %q: %w", id, err)
		}
		if r.Status == scep.Pending {
			// ZADD GT, as Create: a Replace refused below must not shorten the index
			// entry of the live pending record it did not replace.
			if err := s.indexPending(ctx, c, id, s.now().Add(ttl), true); err != nil {
				return fmt.Errorf("redisstore: replace %q: %w", id, err)
			}
		}
	}
	var refused error
	for range createAttempts {
		err = retry(ctx, c, func() error {
			refused = nil
			return c.Watch(ctx, func(tx *redis.Tx) error {
				cur, err := tx.Get(ctx, key).Bytes()
				switch {
				case errors.Is(err, redis.Nil):
					refused = fmt.Errorf("redisstore: %w: transaction %q", crp.ErrNotFound, id)
					return nil
				case err != nil:
					return err
				}
				var w record
				switch {
				case json.Unmarshal(cur, &w) != nil || w.V != recordVersion:
					refused = fmt.Errorf("redisstore: %w: transaction %q (a record this store cannot read)", crp.ErrRecordExists, id)
				case w.Write == write:
					return nil // this Replace's own write, whose reply was lost
				case w.TransactionID != id || !w.Expires.IsZero() && s.now().After(w.Expires):
					refused = fmt.Errorf("redisstore: %w: transaction %q", crp.ErrNotFound, id)
				case !bytes.Equal(w.Request, old.Request) || w.Status != old.Status || w.Reason != old.Reason ||
					!w.Expires.Equal(old.Expires):
					refused = fmt.Errorf("redisstore: %w: transaction %q was replaced meanwhile", crp.ErrRecordExists, id)
				}
				if refused != nil {
					return nil
				}
				return setOrDelete(ctx, tx, key, b, ttl)
			}, key)
		})
		if !errors.Is(err, redis.TxFailedErr) {
			break
		}
	}
	switch {
	case err != nil:
		return fmt.Errorf("redisstore: replace %q: %w", id, err)
	case refused != nil:
		return refused
	}
	if err := s.unindexDecided(ctx, c, r); err != nil {
		return fmt.Errorf("redisstore: replace %q: %w", id, err)
	}
	return nil
}

// recordTTL is how long r is to be kept from now: until its Expires, or
// DefaultRecordTTL when it has none.
func (s *Store) recordTTL(r *crp.Record) time.Duration {
	if r.Expires.IsZero() {
		return DefaultRecordTTL
	}
	return r.Expires.Sub(s.now())
}

// unindexDecided takes r's transaction out of the pending index once r, written, is
// not PENDING (see put).
func (s *Store) unindexDecided(ctx context.Context, c redis.UniversalClient, r *crp.Record) error {
	if r.Status == scep.Pending {
		return nil
	}
	return retry(ctx, c, func() error { return c.ZRem(ctx, s.key("", "pending"), r.TransactionID).Err() })
}

// encodeRecord is r as stored.
func encodeRecord(r *crp.Record) ([]byte, error) { return encodeRecordWrite(r, "") }

// encodeRecordWrite is r as stored by the write named write (see record.Write).
func encodeRecordWrite(r *crp.Record, write string) ([]byte, error) {
	w := record{V: recordVersion, TransactionID: r.TransactionID, SignerKey: r.SignerKey, Request: r.Request,
		CSR: r.CSR, Status: r.Status, Phase: r.Phase, Reason: r.Reason, UserID: r.UserID, DeviceID: r.DeviceID,
		ProfileID: r.ProfileID, Template: r.Template, Validator: r.Validator, CA: r.CAHash, Expires: r.Expires,
		Written: r.Written, Write: write}
	if r.Certificate != nil {
		w.Certificate = r.Certificate.Raw
	}
	return json.Marshal(&w)
}

// setIfNone sets key to b for ttl unless it holds a live record of transaction id,
// and reports whether it did hold one. A nil b (a record already expired) deletes
// key instead, unless it holds a live record.
func (s *Store) setIfNone(ctx context.Context, c redis.UniversalClient, key, id string, b []byte, ttl time.Duration) (exists bool, err error) {
	// One round trip when the key is absent, as it is for a new transaction.
	if b != nil {
		var set bool
		if err := retry(ctx, c, func() (err error) { set, err = c.SetNX(ctx, key, b, ttl).Result(); return err }); err != nil || set {
			return false, err
		}
	}
	// Present: live, or expired by this Store's clock but not yet by Redis's TTL.
	for range createAttempts {
		err = retry(ctx, c, func() error {
			exists = false
			return c.Watch(ctx, func(tx *redis.Tx) error {
				old, err := tx.Get(ctx, key).Bytes()
				switch {
				case errors.Is(err, redis.Nil):
				case err != nil:
					return err
				case b != nil && bytes.Equal(old, b):
					// This very record: a write of ours applied on an attempt
					// whose reply was lost (retry sends it again).
					return nil
				case s.live(old, id):
					exists = true
					return nil
				}
				return setOrDelete(ctx, tx, key, b, ttl)
			}, key)
		})
		if !errors.Is(err, redis.TxFailedErr) {
			return exists, err
		}
	}
	return false, err
}

// setOrDelete sets key to b for ttl in tx's MULTI/EXEC, or deletes key if b is nil
// (a record already expired).
func setOrDelete(ctx context.Context, tx *redis.Tx, key string, b []byte, ttl time.Duration) error {
	_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if b == nil {
			p.Del(ctx, key)
		} else {
			p.Set(ctx, key, b, ttl)
		}
		return nil
	})
	return err
}

// live reports whether v, a stored record, is a record of transaction id that Get
// would return (not expired by this Store's clock), or one Get cannot read.
func (s *Store) live(v []byte, id string) bool {
	var w record
	if json.Unmarshal(v, &w) != nil || w.V != recordVersion {
		// Not a record this Store can read (a newer gateway's, during a rolling
		// upgrade): Get fails on it, and nothing says it expired or is another
		// requester's, so it is not replaced.
		return true
	}
	if w.TransactionID != id {
		return false // another id hashed into the key: Get does not find it
	}
	return w.Expires.IsZero() || !s.now().After(w.Expires)
}

// indexPending adds id to the pending index until its record expires at expires,
// and drops the ids whose records have expired, so that the index holds at most the
// pending requests still alive. For a Create (keep), an id already indexed keeps a
// later expiry (ZADD GT): the Create may be refused, and the record that refused it,
// another requester's pending one, must stay listed for as long as it lives.
func (s *Store) indexPending(ctx context.Context, c redis.UniversalClient, id string, expires time.Time, keep bool) error {
	idx := s.key("", "pending")
	z := redis.Z{Score: float64(expires.UnixMilli()), Member: id}
	if err := retry(ctx, c, func() error {
		if keep {
			return c.ZAddGT(ctx, idx, z).Err()
		}
		return c.ZAdd(ctx, idx, z).Err()
	}); err != nil {
		return err
	}
	return retry(ctx, c, func() error {
		return c.ZRemRangeByScore(ctx, idx, "-inf", "("+strconv.FormatInt(s.now().UnixMilli(), 10)).Err()
	})
}

// indexedKind names the key, under the prefix, set once every record stored before
// the pending index was kept (by an earlier release) has been indexed.
const indexedKind = "pending-indexed"

// indexStored indexes, once per Redis and prefix, the pending records that no index
// names: those of a release before the pending index, which Pending would never list.
// It scans the records' keys (every master of a cluster, every shard of a ring), reads
// them a page of the scan at a time (one pipeline), and adds each live pending
// record's id with its expiry (ZADD GT, so an entry a gateway wrote meanwhile keeps a
// later expiry); then it sets Prefix+"pending-indexed". Gateways that run it at once
// index the same ids. A gateway of such a release still running once it is set writes
// pending records that are not listed.
func (s *Store) indexStored(ctx context.Context, c redis.UniversalClient) error {
	marker := s.key("", indexedKind)
	var n int64
	if err := retry(ctx, c, func() (err error) { n, err = c.Exists(ctx, marker).Result(); return err }); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	scan := func(ctx context.Context, node redis.Cmdable) error {
		for _, kind := range []string{"tx:", "tx#sha256:"} {
			match := globEscape(s.key("", kind)) + "*"
			var cursor uint64
			for {
				var keys []string
				err := retry(ctx, c, func() (err error) {
					keys, cursor, err = node.Scan(ctx, cursor, match, indexScanPage).Result()
					return err
				})
				if err != nil {
					return err
				}
				if err := s.indexPage(ctx, c, node, keys); err != nil {
					return err
				}
				if cursor == 0 {
					break
				}
			}
		}
		return nil
	}
	var err error
	switch cc := c.(type) {
	case *redis.ClusterClient:
		err = cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return scan(ctx, m) })
	case *redis.Ring:
		err = cc.ForEachShard(ctx, func(ctx context.Context, m *redis.Client) error { return scan(ctx, m) })
	default:
		err = scan(ctx, c)
	}
	if err != nil {
		return fmt.Errorf("indexing the pending records of an earlier release: %w", err)
	}
	return retry(ctx, c, func() error { return c.Set(ctx, marker, "1", 0).Err() })
}

// indexScanPage is the COUNT of each SCAN of indexStored.
const indexScanPage = 1000

// indexPage reads the records under keys from node, and adds those that are live
// pending records this release reads to the pending index; any other value is left
// alone.
func (s *Store) indexPage(ctx context.Context, c redis.UniversalClient, node redis.Cmdable, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	var gets []*redis.StringCmd
	var ttls []*redis.DurationCmd
	err := retry(ctx, c, func() error {
		_, err := node.Pipelined(ctx, func(p redis.Pipeliner) error {
			gets, ttls = gets[:0], ttls[:0]
			for _, k := range keys {
				gets = append(gets, p.Get(ctx, k))
				ttls = append(ttls, p.PTTL(ctx, k))
			}
			return nil
		})
		var reply redis.Error
		if errors.As(err, &reply) {
			err = nil // a key that expired since the scan found it (or holds no string): skipped below
		}
		return err
	})
	if err != nil {
		return err
	}
	var zs []redis.Z
	for i, k := range keys {
		b, err := gets[i].Bytes()
		if err != nil {
			continue // expired since the scan
		}
		var w record
		if json.Unmarshal(b, &w) != nil || w.V != recordVersion || w.Status != scep.Pending || s.key("tx:", w.TransactionID) != k {
			continue
		}
		expires := w.Expires
		if expires.IsZero() {
			ttl := ttls[i].Val()
			if ttl <= 0 {
				continue
			}
			expires = s.now().Add(ttl)
		}
		if !expires.After(s.now()) {
			continue
		}
		zs = append(zs, redis.Z{Score: float64(expires.UnixMilli()), Member: w.TransactionID})
	}
	if len(zs) == 0 {
		return nil
	}
	return retry(ctx, c, func() error { return c.ZAddGT(ctx, s.key("", "pending"), zs...).Err() })
}

// globEscape quotes the characters a SCAN MATCH pattern gives a meaning to.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Pending lists the pending requests (crp.PendingLister): at most limit records
// (limit <= 0 means crp.DefaultListLimit, capped at crp.MaxListLimit), ordered by
// transaction id, after the id after. It reads the ids of the index whose records
// have not expired, then each record; an id whose record is gone or decided is
// removed from the index. The index never holds more ids than there are live
// pending requests plus those decided by a Put that failed half-way (or
// refused by a Create: another requester's record lived). The first call on a Redis
// and prefix also indexes the pending records a release before the index stored,
// reading every transaction record once, and then sets Prefix+"pending-indexed".
func (s *Store) Pending(ctx context.Context, after string, limit int) ([]*crp.Record, error) {
	c, err := s.client()
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = crp.DefaultListLimit
	}
	limit = min(limit, crp.MaxListLimit)
	if err := s.indexStored(ctx, c); err != nil {
		return nil, fmt.Errorf("redisstore: pending: %w", err)
	}
	idx := s.key("", "pending")
	var ids []string
	err = retry(ctx, c, func() (err error) {
		ids, err = c.ZRangeByScore(ctx, idx, &redis.ZRangeBy{Min: "(" + strconv.FormatInt(s.now().UnixMilli(), 10), Max: "+inf"}).Result()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("redisstore: pending: %w", err)
	}
	slices.Sort(ids)
	out := make([]*crp.Record, 0, min(limit, len(ids)))
	for _, id := range ids {
		if id <= after {
			continue
		}
		r, err := s.Get(ctx, id)
		if errors.Is(err, crp.ErrNotFound) || err == nil && r.Status != scep.Pending {
			if err := retry(ctx, c, func() error { return c.ZRem(ctx, idx, id).Err() }); err != nil {
				return nil, fmt.Errorf("redisstore: pending: %w", err)
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
		if len(out) == limit {
			break
		}
	}
	return out, nil
}

// Get returns the record stored under the transaction id, or an error matching
// [crp.ErrNotFound] when there is none (or it has expired by Now). Any other error
// means Redis could not be asked or the record could not be decoded.
func (s *Store) Get(ctx context.Context, id string) (*crp.Record, error) {
	c, err := s.client()
	if err != nil {
		return nil, err
	}
	var b []byte
	err = retry(ctx, c, func() (err error) { b, err = c.Get(ctx, s.key("tx:", id)).Bytes(); return err })
	switch {
	case errors.Is(err, redis.Nil):
		return nil, fmt.Errorf("%w: transaction %q", crp.ErrNotFound, id)
	case err != nil:
		return nil, fmt.Errorf("redisstore: get %q: %w", id, err)
	}
	var w record
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("redisstore: get %q: %w", id, err)
	}
	if w.V != recordVersion {
		return nil, fmt.Errorf("redisstore: get %q: record version %d not supported", id, w.V)
	}
	if w.TransactionID != id {
		// Only possible for ids hashed into the key: a collision of SHA-256, or a
		// record written by something else.
		return nil, fmt.Errorf("%w: transaction %q", crp.ErrNotFound, id)
	}
	if !w.Expires.IsZero() && s.now().After(w.Expires) {
		return nil, fmt.Errorf("%w: transaction %q", crp.ErrNotFound, id)
	}
	r := &crp.Record{TransactionID: w.TransactionID, SignerKey: w.SignerKey, Request: w.Request, CSR: w.CSR,
		Status: w.Status, Phase: w.Phase, Reason: w.Reason, UserID: w.UserID, DeviceID: w.DeviceID,
		ProfileID: w.ProfileID, Template: w.Template, Validator: w.Validator, CAHash: w.CA, Expires: w.Expires,
		Written: w.Written}
	if len(w.Certificate) > 0 {
		if r.Certificate, err = x509.ParseCertificate(w.Certificate); err != nil {
			return nil, fmt.Errorf("redisstore: get %q: certificate: %w", id, err)
		}
	}
	return r, nil
}
