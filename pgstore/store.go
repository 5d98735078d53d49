// Package pgstore keeps everything gateways running side by side must share in
// PostgreSQL: challenge claims, transaction records and pending requests, the
// issued-certificate inventory and revocations (it implements every interface of
// crp.Store). Point every gateway at the same database.
//
// # Guarantees
//
// Every write is a single statement in its own transaction, but a certificate with
// its transaction record, which are one transaction (see [Store.RecordIssuance]): it
// returns once PostgreSQL committed it (durable with the server's default
// synchronous_commit).
// A challenge is claimed with INSERT ... ON CONFLICT, so that of any number of
// concurrent claims at any number of gateways exactly one succeeds; a pending
// request is decided once the same way (crp.RegistrationPoint.Decisions, or the
// Verifier's replay store, being this Store). When the database cannot be reached,
// every method returns an error: the registration point answers FAILURE and issues
// nothing, and works again when the database is back. A database that stops
// answering costs each call at most [Options.Timeout]; a write that timed out may
// still have been applied (a challenge is then spent, never granted twice). A call
// the server refuses a new connection for want of slots (max_connections, a role's
// or database's connection limit) waits, within that timeout, for one of the pool's
// own connections.
//
// # Schema
//
// It needs PostgreSQL 11 or later (the schema's trigger is declared with EXECUTE
// FUNCTION); the tests run against the server Debian packages (15 and later).
// [New] creates the tables and indexes, and migrates an older schema, in one
// transaction under an advisory lock (gateways starting together apply each version
// once), within [Options.Timeout]; the versions applied are in scepkit_schema. It
// waits for a table's lock 200 ms at a time, giving its locks back in between, so that
// a long reader of a table delays the start rather than the gateways already running. A
// database at a newer version than this package knows is refused
// ([ErrNewerSchema]), and nothing is written to it. Times are stored as timestamptz
// (microseconds), serials as numeric. Every statement is parameterised. An id (a
// challenge's, a transactionID) over 128 bytes, or one that starts with "sha256:", is
// keyed by "sha256:" and its hex SHA-256, so that no id a client chooses names the key
// of another; the transactionID itself is kept beside it.
//
// # Retention
//
// Claims are kept until the time the claimant gives (for a challenge, a day past its
// expiry: challenge.ClaimMargin; at least a minute), transaction
// records and pending requests until Record.Expires (a zero Expires is
// [DefaultRecordTTL] from the write); expired rows are deleted in small batches, one
// started every [SweepEvery] writes and run beside them (one at a time; the write
// that starts it does not wait for it, and Close waits for it), skipping the rows
// another session holds (another gateway's sweep), which the sweep would otherwise
// wait for. Certificates and revocations are kept.
package pgstore

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/internal/poolwait"
	"github.com/scepkit/scepkit/scep"
)

// DefaultRecordTTL is how long a transaction record whose Expires is zero is kept.
const DefaultRecordTTL = 24 * time.Hour

// SweepEvery is how many writes pass between two deletions of expired rows.
const SweepEvery = 64

// DefaultTimeout bounds each call when Options.Timeout is zero.
const DefaultTimeout = 5 * time.Second

var (
	// ErrConnString is matched by the error of [Open] for a connection string that
	// does not parse (the error does not quote the string).
	ErrConnString = errors.New("pgstore: the connection string does not parse")
	// ErrNewerSchema is matched by the error of [New] and [Open] for a database whose
	// schema version is newer than this package knows: a newer release migrated it,
	// and this one must not write it.
	ErrNewerSchema = errors.New("pgstore: the database's schema is newer than this release knows")
)

const (
	minClaimTTL = time.Minute
	maxIDLen    = 128
	sweepBatch  = 500
)

// migrations are the schema versions, in order; each is applied once.
var migrations = []string{
	// 1: claims, transactions, certificates, revocations.
	`CREATE TABLE scepkit_claims (
		id    text PRIMARY KEY,
		until timestamptz NOT NULL
	);
	CREATE INDEX scepkit_claims_until ON scepkit_claims (until);
	CREATE TABLE scepkit_transactions (
		id          text PRIMARY KEY,
		signer_key  bytea,
		request     bytea,
		csr         bytea,
		status      integer NOT NULL,
		certificate bytea,
		phase       integer NOT NULL DEFAULT 0,
		reason      text NOT NULL DEFAULT '',
		user_id     text NOT NULL DEFAULT '',
		device_id   text NOT NULL DEFAULT '',
		profile_id  text NOT NULL DEFAULT '',
		template    text NOT NULL DEFAULT '',
		validator   text NOT NULL DEFAULT '',
		expires     timestamptz NOT NULL
	);
	CREATE INDEX scepkit_transactions_expires ON scepkit_transactions (expires);
	CREATE INDEX scepkit_transactions_pending ON scepkit_transactions (id) WHERE status = 3;
	CREATE TABLE scepkit_certificates (
		serial         numeric PRIMARY KEY,
		der            bytea NOT NULL,
		not_after      timestamptz NOT NULL,
		user_id        text NOT NULL DEFAULT '',
		device_id      text NOT NULL DEFAULT '',
		profile_id     text NOT NULL DEFAULT '',
		template       text NOT NULL DEFAULT '',
		transaction_id text NOT NULL DEFAULT '',
		issued_at      timestamptz
	);
	CREATE INDEX scepkit_certificates_not_after ON scepkit_certificates (not_after, serial);
	CREATE INDEX scepkit_certificates_user ON scepkit_certificates (user_id, not_after, serial);
	CREATE INDEX scepkit_certificates_device ON scepkit_certificates (device_id, not_after, serial);
	CREATE TABLE scepkit_revocations (
		serial     numeric PRIMARY KEY,
		reason     integer NOT NULL,
		revoked_at timestamptz NOT NULL,
		by_whom    text NOT NULL DEFAULT ''
	);
	CREATE INDEX scepkit_revocations_at ON scepkit_revocations (revoked_at, serial);`,
	// 2: the transactionID as the client sent it, for records kept under the hash of
	// a long one (the key no longer names it). NULL in rows written by version 1.
	// (bytea: a transactionID of the crp.Enroll API may hold any bytes.)
	`ALTER TABLE scepkit_transactions ADD COLUMN tx_id bytea;`,
	// 3: the revoked certificate's DER issuer name (a CRL lists only its own CA's
	// certificates). NULL in rows written before: any issuer's.
	`ALTER TABLE scepkit_revocations ADD COLUMN issuer bytea;`,
	// 4: the CA a pending request is to be issued by (crp.Record.CAHash). NULL in rows
	// written before.
	`ALTER TABLE scepkit_transactions ADD COLUMN ca bytea;`,
	// 5: certificates the device was not given (crp.IssuedCertificate.Withheld).
	`ALTER TABLE scepkit_certificates ADD COLUMN withheld boolean NOT NULL DEFAULT false;`,
	// 6: when the gateway wrote the record (crp.Record.Written), NULL when unknown: in
	// rows written before, and in those a gateway of an earlier release, still running
	// during a rolling upgrade, writes. Such a gateway's upsert or replace sets the
	// columns it knows only, and would leave the written of the row's previous record
	// (a pending request written hours before it approved it) to a record it wrote
	// now: the trigger clears written when a write changes expires and not written,
	// which this release's writes never do but by writing the same Written with
	// another Expires.
	`ALTER TABLE scepkit_transactions ADD COLUMN written timestamptz;
	CREATE FUNCTION scepkit_transactions_written() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF NEW.expires IS DISTINCT FROM OLD.expires AND NEW.written IS NOT DISTINCT FROM OLD.written THEN
			NEW.written := NULL;
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER scepkit_transactions_written BEFORE UPDATE ON scepkit_transactions
		FOR EACH ROW EXECUTE FUNCTION scepkit_transactions_written();`,
}

// migrationLock is the advisory lock key under which the schema is migrated.
const migrationLock = 0x736365706b6974 // "scepkit"

// Store is a crp.Store in PostgreSQL. Its methods are safe for concurrent use.
type Store struct {
	pool    *pgxpool.Pool
	own     bool
	now     func() time.Time
	timeout time.Duration
	writes  atomic.Int64
	// sweepMu guards sweeping, set while a sweep runs (one at a time), and closed,
	// after which none starts; Close waits for sweeps.
	sweepMu  sync.Mutex
	sweeping bool
	closed   bool
	sweeps   sync.WaitGroup
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

// Options configures [New] and [Open]. The zero value has defaults.
type Options struct {
	// Now is the clock of expiries; nil means time.Now. Gateways sharing a database
	// should have synchronized clocks (claims and records expire by the writer's).
	Now func() time.Time
	// Timeout bounds each call, waiting for a connection from the pool included, so
	// that a server that stops answering (hung, or behind a network that drops
	// packets) costs a device a FAILURE after Timeout rather than a wait as long as
	// the device's, and requests do not pile up holding every connection. It bounds
	// [New]'s creation or migration of the schema as a whole too, waiting for the
	// schema lock included, so that a gateway started while the server hangs fails
	// to start rather than waiting without end. Zero means [DefaultTimeout]. The
	// caller's context still applies when it ends sooner.
	Timeout time.Duration
}

// Open connects to the database at dsn (a pgx connection string or URL), creates or
// migrates the schema, and returns a Store that owns the connection pool (Close closes
// it). A dsn that does not parse is refused with an error that does not quote it, so
// that its password cannot reach a log.
func Open(ctx context.Context, dsn string, o *Options) (*Store, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, connStringError(err)
	}
	s, err := New(ctx, pool, o)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.own = true
	return s, nil
}

// connStringError is err, from parsing a connection string, without the string. pgx
// quotes the string in its message and masks the password only where it recognizes
// one: a keyword/value string with spaces around "=" (which libpq allows), a quote
// escaped in a quoted password or a malformed pair went out whole. What follows the
// quoted string (what is wrong with it) is kept.
func connStringError(err error) error {
	var pe *pgconn.ParseConfigError
	if !errors.As(err, &pe) {
		return fmt.Errorf("pgstore: %w", err)
	}
	what := ErrConnString.Error()
	// pgx's message is "cannot parse `STRING`: WHAT"; WHAT never holds the string.
	if msg := pe.Error(); strings.HasPrefix(msg, "cannot parse `") {
		if i := strings.LastIndex(msg, "`: "); i >= 0 {
			what += ": " + msg[i+len("`: "):]
		}
	}
	return &parseError{what: what, err: errors.Unwrap(pe)}
}

// parseError is a connection string that did not parse, without the string (see
// connStringError). It unwraps to what pgx's error wraps, not to that error, whose
// ConnString field holds the password.
type parseError struct {
	what string
	err  error
}

func (e *parseError) Error() string { return e.what }
func (e *parseError) Unwrap() error { return e.err }

// Is makes a parseError match ErrConnString.
func (e *parseError) Is(target error) bool { return target == ErrConnString }

// New returns a Store over pool (which it does not close), after creating or
// migrating the schema.
func New(ctx context.Context, pool *pgxpool.Pool, o *Options) (*Store, error) {
	if o == nil {
		o = &Options{}
	}
	s := &Store{pool: pool, now: o.Now, timeout: o.Timeout}
	if s.now == nil {
		s.now = time.Now
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	if err := s.migrate(ctx); errors.Is(err, ErrNewerSchema) {
		return nil, err
	} else if err != nil {
		return nil, fmt.Errorf("pgstore: migrating the schema: %w", err)
	}
	return s, nil
}

// Close waits for a deletion of expired rows under way (Options.Timeout at most), then
// closes the pool if Open made it.
func (s *Store) Close() {
	s.sweepMu.Lock()
	s.closed = true
	s.sweepMu.Unlock()
	s.sweeps.Wait()
	if s.own {
		s.pool.Close()
	}
}

// migrationLockWait bounds each wait of a migration for a table's lock, and is the
// pause before it tries again. A migration that waits holds the tables it altered
// before (ACCESS EXCLUSIVE, to its commit), and every statement on them queues behind
// it: without the bound, a long reader of one table (pg_dump, a report) kept the
// other gateways from their records and inventory until the migration gave up.
const migrationLockWait = 200 * time.Millisecond

// migrate creates or migrates the schema in one transaction, under the advisory lock
// migrationLock, all of it within the store's timeout: a server that does not answer,
// or a lock another session keeps (a gateway stopped or hung while it migrated, a
// long query on a table a version alters), fails the start with an error naming what
// it waited for. A wait for a table's lock lasts migrationLockWait at most: the
// transaction is then rolled back, giving back the locks it held, and tried again
// after as long.
func (s *Store) migrate(ctx context.Context) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	c, err := s.acquire(ctx)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer c.Release()
	for {
		err := s.migrateOnce(ctx, c)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "55P03" { // lock_not_available
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for a table lock, which another session holds (a long query or a backup "+
				"reading the table): %w", err)
		case <-time.After(migrationLockWait):
		}
	}
}

// migrateOnce is one try of migrate on c.
func (s *Store) migrateOnce(ctx context.Context, c *pgxpool.Conn) error {
	tx, err := c.Begin(ctx)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer tx.Rollback(ctx) // nothing to undo once committed
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrationLock)); err != nil {
		return fmt.Errorf("waiting for the schema lock, which another session holds "+
			"(a gateway migrating the schema, or stopped or hung while it did): %w", err)
	}
	// After the schema lock, whose wait only the store's timeout bounds.
	if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", migrationLockWait.Milliseconds())); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS scepkit_schema (
		version    integer PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return err
	}
	var have int
	if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM scepkit_schema").Scan(&have); err != nil {
		return err
	}
	if have > len(migrations) {
		return fmt.Errorf("%w (version %d; this one knows up to %d): run the release that migrated it", ErrNewerSchema,
			have, len(migrations))
	}
	for v := have + 1; v <= len(migrations); v++ {
		if _, err := tx.Exec(ctx, migrations[v-1]); err != nil {
			return fmt.Errorf("version %d: %w", v, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO scepkit_schema (version) VALUES ($1)", v); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// SchemaVersion returns the schema version of the database.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	var v int
	err := s.with(ctx, func(c *pgxpool.Conn) error {
		return c.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM scepkit_schema").Scan(&v)
	})
	return v, err
}

// hashedPrefix starts the key of an id kept under its SHA-256.
const hashedPrefix = "sha256:"

// idKey is the key of id: id itself, or, for an id over maxIDLen bytes, one that
// starts like a hashed key, or one PostgreSQL's text cannot hold (a NUL byte, not
// UTF-8), hashedPrefix and the hex SHA-256 of id. So no id a client chooses names the
// key of another (a transactionID that reads "sha256:..." is hashed too), and every
// id has a key.
func idKey(id string) string {
	if len(id) > maxIDLen || strings.HasPrefix(id, hashedPrefix) || strings.IndexByte(id, 0) >= 0 ||
		!utf8.ValidString(id) {
		sum := sha256.Sum256([]byte(id))
		return hashedPrefix + hex.EncodeToString(sum[:])
	}
	return id
}

// op bounds a call by the store's timeout.
func (s *Store) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// slotRetry is how often a call the server refused a connection for want of slots
// asks the server for a new one while it waits for one of the pool's own (each
// attempt costs the server a process).
const slotRetry = 100 * time.Millisecond

// acquire takes a connection from the pool. When the pool would open one and the
// server refuses it for want of connection slots (SQLSTATE 53300: max_connections, a
// role's or a database's connection limit), it waits until ctx ends for one of the
// pool's own connections, and asks the server again every slotRetry, rather than
// failing while the pool's connections are merely busy: at a gateway, a certificate
// the CA has signed is withheld when its record cannot be written. When ctx ends, the
// error is the server's refusal (and ctx's).
func (s *Store) acquire(ctx context.Context) (*pgxpool.Conn, error) {
	c, err := s.pool.Acquire(ctx)
	if err == nil || !noSlot(err) {
		return c, err
	}
	err = poolwait.Retry(ctx, err, noSlot, func() bool { return s.pool.Stat().IdleConns() > 0 }, slotRetry, time.Time{},
		func() (err error) { c, err = s.pool.Acquire(ctx); return err })
	switch {
	case err == nil:
		return c, nil
	case noSlot(err):
		return nil, fmt.Errorf("%w (waited for a connection: %w)", err, context.Cause(ctx))
	}
	return nil, err
}

// noSlot reports whether err is the server's refusal of a connection for want of
// slots (too_many_connections).
func noSlot(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "53300"
}

// with runs f with a connection from acquire, and releases it when f returns.
func (s *Store) with(ctx context.Context, f func(c *pgxpool.Conn) error) error {
	c, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	return f(c)
}

// wrote counts a write and, every SweepEvery writes, starts a deletion of expired
// rows (in a bounded batch, so that no sweep pays for a backlog), within a timeout of
// its own. The sweep runs beside the writes, one at a time: the write's caller (an
// enrollment) does not wait for it. A DELETE of 500 expired rows took up to 1.4 s
// while PostgreSQL had not yet vacuumed the rows an earlier sweep deleted (the index
// scan reads them again), and every sweeping write waited that long, several at once.
func (s *Store) wrote(ctx context.Context) {
	if s.writes.Add(1)%SweepEvery != 0 {
		return
	}
	s.sweepMu.Lock()
	defer s.sweepMu.Unlock()
	if s.closed || s.sweeping {
		return
	}
	s.sweeping = true
	s.sweeps.Add(1)
	go func() {
		defer s.sweeps.Done()
		s.sweep(context.WithoutCancel(ctx))
		s.sweepMu.Lock()
		s.sweeping = false
		s.sweepMu.Unlock()
	}()
}

// sweep deletes up to sweepBatch expired claims and as many expired records.
func (s *Store) sweep(ctx context.Context) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	now := s.now()
	// SKIP LOCKED: rows another session holds (another gateway's sweep, a claim taken
	// again) are left to a later sweep rather than waited for.
	s.pool.Exec(ctx, `DELETE FROM scepkit_claims WHERE id IN
		(SELECT id FROM scepkit_claims WHERE until < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`, now, sweepBatch)
	s.pool.Exec(ctx, `DELETE FROM scepkit_transactions WHERE id IN
		(SELECT id FROM scepkit_transactions WHERE expires < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`, now, sweepBatch)
}

func wrap(what string, err error) error { return fmt.Errorf("pgstore: %s: %w", what, err) }

// query runs a query on a connection from acquire and returns its rows, each read by
// scan.
func query[T any](ctx context.Context, s *Store, scan func(pgx.Row) (T, error), sql string, args ...any) ([]T, error) {
	var out []T
	err := s.with(ctx, func(c *pgxpool.Conn) error {
		rows, err := c.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			v, err := scan(rows)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return rows.Err()
	})
	return out, err
}

// exec runs one statement on a connection from acquire.
func (s *Store) exec(ctx context.Context, sql string, args ...any) error {
	return s.with(ctx, func(c *pgxpool.Conn) error {
		_, err := c.Exec(ctx, sql, args...)
		return err
	})
}

// Ping implements crp.Pinger: one round trip to the database, within the store's
// timeout.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	if err := s.with(ctx, func(c *pgxpool.Conn) error { return c.Ping(ctx) }); err != nil {
		return wrap("ping", err)
	}
	return nil
}

// ---- challenge claims ----

// Claim implements challenge.ReplayStore. An id whose claim has expired can be
// claimed again.
func (s *Store) Claim(ctx context.Context, id string, until time.Time) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	if id == "" {
		return fmt.Errorf("%w: empty id", challenge.ErrMissingClaim)
	}
	now := s.now()
	if !until.After(now) {
		until = now.Add(minClaimTTL)
	}
	var one int
	err := s.with(ctx, func(c *pgxpool.Conn) error {
		return c.QueryRow(ctx, `INSERT INTO scepkit_claims (id, until) VALUES ($1, $2)
			ON CONFLICT (id) DO UPDATE SET until = EXCLUDED.until WHERE scepkit_claims.until <= $3
			RETURNING 1`, idKey(id), until, now).Scan(&one)
	})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return challenge.ErrReplayed
	case err != nil:
		return wrap("claim", err)
	}
	s.wrote(ctx)
	return nil
}

// Release implements challenge.Releaser.
func (s *Store) Release(ctx context.Context, id string) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	if err := s.exec(ctx, "DELETE FROM scepkit_claims WHERE id = $1", idKey(id)); err != nil {
		return wrap("release", err)
	}
	return nil
}

// ---- transaction records ----

const recordColumns = "id, signer_key, request, csr, status, certificate, phase, reason, user_id, device_id, profile_id, template, validator, expires, tx_id, ca, written"

// errNilRecord refuses a nil record given to a write.
var errNilRecord = errors.New("pgstore: nil transaction record")

// Put implements crp.TransactionStore.
func (s *Store) Put(ctx context.Context, r *crp.Record) error {
	if r == nil {
		return errNilRecord
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	if err := s.exec(ctx, putRecordSQL, s.recordArgs(r)...); err != nil {
		return wrap("recording transaction", err)
	}
	s.wrote(ctx)
	return nil
}

const putRecordSQL = `INSERT INTO scepkit_transactions (` + recordColumns + `)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
	ON CONFLICT (id) DO UPDATE SET tx_id = EXCLUDED.tx_id, signer_key = EXCLUDED.signer_key, request = EXCLUDED.request,
		csr = EXCLUDED.csr, status = EXCLUDED.status, certificate = EXCLUDED.certificate,
		phase = EXCLUDED.phase, reason = EXCLUDED.reason, user_id = EXCLUDED.user_id,
		device_id = EXCLUDED.device_id, profile_id = EXCLUDED.profile_id,
		template = EXCLUDED.template, validator = EXCLUDED.validator, expires = EXCLUDED.expires, ca = EXCLUDED.ca,
		written = EXCLUDED.written`

// createRecordSQL is putRecordSQL that replaces only an expired record; its last
// argument is the writer's time, by which Get judges expiry.
const createRecordSQL = putRecordSQL + ` WHERE scepkit_transactions.expires <= $18`

// Create implements crp.TransactionCreator: one INSERT that writes r, or replaces a
// record of its transaction id that has expired, and otherwise writes nothing (an
// error matching crp.ErrRecordExists). Concurrent Creates of one id, from any gateway,
// are ordered by the row's lock: one writes.
func (s *Store) Create(ctx context.Context, r *crp.Record) error {
	if r == nil {
		return errNilRecord
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	var n int64
	err := s.with(ctx, func(c *pgxpool.Conn) error {
		tag, err := c.Exec(ctx, createRecordSQL, append(s.recordArgs(r), s.now())...)
		n = tag.RowsAffected()
		return err
	})
	switch {
	case err != nil:
		return wrap("recording transaction", err)
	case n == 0:
		return fmt.Errorf("pgstore: %w: transaction %q", crp.ErrRecordExists, r.TransactionID)
	}
	s.wrote(ctx)
	return nil
}

// replaceRecordSQL replaces the live record of an id ($1; $18 is the writer's time,
// by which Get judges expiry) while it is the version $19-$22 (request, status,
// reason, expires) names.
const replaceRecordSQL = `UPDATE scepkit_transactions SET tx_id = $15, signer_key = $2, request = $3, csr = $4,
		status = $5, certificate = $6, phase = $7, reason = $8, user_id = $9, device_id = $10, profile_id = $11,
		template = $12, validator = $13, expires = $14, ca = $16, written = $17
	WHERE id = $1 AND expires > $18 AND request IS NOT DISTINCT FROM $19 AND status = $20 AND reason = $21
		AND expires = $22`

// Replace implements crp.TransactionReplacer: one UPDATE that writes r only while the
// live record of its transaction id is old still (the same Request, Status, Reason and
// Expires). Otherwise nothing is written, and the error matches crp.ErrRecordExists
// (another record lives) or crp.ErrNotFound (none does). Concurrent Replaces of one
// version, from any gateway, are ordered by the row's lock: one writes.
func (s *Store) Replace(ctx context.Context, old, r *crp.Record) error {
	if err := sameTransaction(old, r); err != nil {
		return err
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	now := s.now()
	var refused error
	err := s.with(ctx, func(c *pgxpool.Conn) error {
		tag, err := c.Exec(ctx, replaceRecordSQL, s.replaceArgs(now, old, r)...)
		if err != nil || tag.RowsAffected() > 0 {
			return err
		}
		refused, err = notReplaced(ctx, c, r.TransactionID, now)
		return err
	})
	switch {
	case err != nil:
		return wrap("recording transaction", err)
	case refused != nil:
		return refused
	}
	s.wrote(ctx)
	return nil
}

// sameTransaction refuses to replace old with an r of another transaction id.
func sameTransaction(old, r *crp.Record) error {
	if old == nil || r == nil {
		return errNilRecord
	}
	if old.TransactionID != r.TransactionID {
		return fmt.Errorf("pgstore: replacing the record of transaction %q with one of %q", old.TransactionID, r.TransactionID)
	}
	return nil
}

// replaceArgs are replaceRecordSQL's arguments: r, in place of old, at now.
func (s *Store) replaceArgs(now time.Time, old, r *crp.Record) []any {
	return append(s.recordArgs(r), now, old.Request, int(old.Status), string(old.Reason), old.Expires)
}

// notReplaced says why replaceRecordSQL wrote no row of transaction id at now: an
// error matching crp.ErrRecordExists when a live record of id is stored (another
// version), crp.ErrNotFound when none is. err is the query's failure.
func notReplaced(ctx context.Context, c *pgxpool.Conn, id string, now time.Time) (refused, err error) {
	live := false
	if err := c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM scepkit_transactions WHERE id = $1 AND expires > $2)",
		idKey(id), now).Scan(&live); err != nil {
		return nil, err
	}
	if live {
		return fmt.Errorf("pgstore: %w: transaction %q was replaced meanwhile", crp.ErrRecordExists, id), nil
	}
	return fmt.Errorf("pgstore: %w: transaction %q", crp.ErrNotFound, id), nil
}

// ReplaceIssuance implements crp.IssuanceReplacer: RecordIssuance whose record is
// written by Replace's UPDATE (after the certificate's row, as every write of both
// orders their locks). When it writes no row (the record is not old's version any
// more, or none lives), the transaction is rolled back, the certificate's row with
// it, and the error matches crp.ErrRecordExists or crp.ErrNotFound as Replace's.
func (s *Store) ReplaceIssuance(ctx context.Context, c *crp.IssuedCertificate, old, r *crp.Record) error {
	if err := sameTransaction(old, r); err != nil {
		return err
	}
	now := s.now()
	return s.issuance(ctx, c, replaceRecordSQL, s.replaceArgs(now, old, r), func(ctx context.Context, conn *pgxpool.Conn) (refusal, err error) {
		return notReplaced(ctx, conn, r.TransactionID, now)
	})
}

// CreateIssuance implements crp.IssuanceCreator: RecordIssuance, whose record's
// INSERT replaces only an expired record. When a live one is stored, the transaction
// is rolled back (the certificate's row with it) and the error matches
// crp.ErrRecordExists.
func (s *Store) CreateIssuance(ctx context.Context, c *crp.IssuedCertificate, r *crp.Record) error {
	if r == nil {
		return errNilRecord
	}
	return s.issuance(ctx, c, createRecordSQL, append(s.recordArgs(r), s.now()), func(context.Context, *pgxpool.Conn) (refusal, err error) {
		return fmt.Errorf("pgstore: %w: transaction %q", crp.ErrRecordExists, r.TransactionID), nil
	})
}

func (s *Store) recordArgs(r *crp.Record) []any {
	exp := r.Expires
	if exp.IsZero() {
		exp = s.now().Add(DefaultRecordTTL)
	}
	var der []byte
	if r.Certificate != nil {
		der = r.Certificate.Raw
	}
	var written *time.Time // NULL: unknown
	if !r.Written.IsZero() {
		written = &r.Written
	}
	return []any{idKey(r.TransactionID), r.SignerKey, r.Request, r.CSR, int(r.Status), der, int(r.Phase), string(r.Reason),
		r.UserID, r.DeviceID, r.ProfileID, r.Template, r.Validator, exp, []byte(r.TransactionID), r.CAHash, written}
}

// RecordIssuance implements crp.IssuanceRecorder: the certificate and its transaction
// record are written in one transaction, both rows or neither. The transaction is
// opened and both rows written in one round trip, and committed by a second sent only
// once their answer came back: a call that times out against a hung server (its rows
// sent, no answer) leaves an open transaction that the server rolls back when it finds
// the connection closed, rather than one committed when it resumes (crp withholds the
// certificate of an issuance that failed, and its record must not give it to a
// resend). Only a COMMIT whose answer is lost may still apply after the call failed.
func (s *Store) RecordIssuance(ctx context.Context, c *crp.IssuedCertificate, r *crp.Record) error {
	if r == nil {
		return errNilRecord
	}
	return s.issuance(ctx, c, putRecordSQL, s.recordArgs(r), nil)
}

// issuance writes c, then a transaction record with recordSQL and its arguments, in one
// transaction (see RecordIssuance). When recordSQL writes no row, the transaction is
// rolled back and issuance returns the refusal refused says (its second result: the
// failure of a query it made); a nil refused is for a recordSQL that always writes.
func (s *Store) issuance(ctx context.Context, c *crp.IssuedCertificate, recordSQL string, recordArgs []any,
	refused func(ctx context.Context, conn *pgxpool.Conn) (refusal, err error)) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	certArgs, err := certificateArgs(c)
	if err != nil {
		return err
	}
	b := &pgx.Batch{}
	b.Queue("BEGIN") // a transaction the batch's Sync does not commit
	b.Queue(addCertificateSQL, certArgs...)
	b.Queue(recordSQL, recordArgs...)
	var refusal error
	err = s.with(ctx, func(conn *pgxpool.Conn) error {
		br := conn.SendBatch(ctx, b)
		var tag pgconn.CommandTag
		for range b.Len() {
			var err error
			if tag, err = br.Exec(); err != nil {
				// Not committed. (A connection left in a failed transaction is
				// closed by the pool, not reused.)
				br.Close()
				return err
			}
		}
		if err := br.Close(); err != nil {
			return err
		}
		if refused != nil && tag.RowsAffected() == 0 { // the record's statement, the last
			var err error
			if refusal, err = refused(ctx, conn); err != nil {
				return err
			}
			_, err = conn.Exec(ctx, "ROLLBACK")
			return err
		}
		_, err := conn.Exec(ctx, "COMMIT")
		return err
	})
	switch {
	case err != nil:
		return wrap("recording certificate and transaction", err)
	case refusal != nil:
		return refusal
	}
	s.wrote(ctx)
	return nil
}

// scanRecord reads a record; id names it when a row of schema version 1 does not
// ("" for a listing, which then names it by its key).
func scanRecord(row pgx.Row, id string) (*crp.Record, error) {
	var (
		r                    crp.Record
		key                  string
		txID                 []byte
		status               int
		der                  []byte
		phase                int
		reason               string
		expires              time.Time
		written              *time.Time // NULL: unknown
		signer, request, csr []byte
	)
	if err := row.Scan(&key, &signer, &request, &csr, &status, &der, &phase, &reason, &r.UserID, &r.DeviceID,
		&r.ProfileID, &r.Template, &r.Validator, &expires, &txID, &r.CAHash, &written); err != nil {
		return nil, err
	}
	if written != nil {
		r.Written = *written
	}
	switch {
	case txID != nil:
		r.TransactionID = string(txID)
	case id != "":
		r.TransactionID = id
	default: // written by schema version 1: the key is the id, or its hash
		r.TransactionID = key
	}
	r.SignerKey, r.Request, r.CSR = signer, request, csr
	r.Status, r.Phase, r.Reason, r.Expires = scep.PKIStatus(status), crp.Phase(phase), crp.Reason(reason), expires
	if len(der) > 0 {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("transaction %q: %w", r.TransactionID, err)
		}
		r.Certificate = c
	}
	return &r, nil
}

// Get implements crp.TransactionStore.
func (s *Store) Get(ctx context.Context, id string) (*crp.Record, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	var r *crp.Record
	err := s.with(ctx, func(c *pgxpool.Conn) (err error) {
		r, err = scanRecord(c.QueryRow(ctx, "SELECT "+recordColumns+" FROM scepkit_transactions WHERE id = $1 AND expires > $2",
			idKey(id), s.now()), id)
		return err
	})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("%w: transaction %q", crp.ErrNotFound, id)
	case err != nil:
		return nil, wrap("transaction", err)
	}
	return r, nil
}

// Pending implements crp.PendingLister.
func (s *Store) Pending(ctx context.Context, after string, limit int) ([]*crp.Record, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	out, err := query(ctx, s, func(row pgx.Row) (*crp.Record, error) { return scanRecord(row, "") },
		"SELECT "+recordColumns+` FROM scepkit_transactions
		WHERE status = 3 AND id > $1 AND expires > $2 ORDER BY id LIMIT $3`,
		idKey(after), s.now(), crp.ListLimit(limit))
	if err != nil {
		return nil, wrap("pending", err)
	}
	return out, nil
}

// ---- the certificate inventory ----

const certColumns = "der, user_id, device_id, profile_id, template, transaction_id, issued_at, withheld"

// Add implements crp.CertificateStore.
func (s *Store) Add(ctx context.Context, c *crp.IssuedCertificate) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	args, err := certificateArgs(c)
	if err != nil {
		return err
	}
	if err := s.exec(ctx, addCertificateSQL, args...); err != nil {
		return wrap("recording certificate", err)
	}
	return nil
}

const addCertificateSQL = `INSERT INTO scepkit_certificates (serial, not_after, ` + certColumns + `)
	VALUES ($1::numeric, $2, $3, $4, $5, $6, $7, $8, $9, $10)
	ON CONFLICT (serial) DO UPDATE SET not_after = EXCLUDED.not_after, der = EXCLUDED.der,
		user_id = EXCLUDED.user_id, device_id = EXCLUDED.device_id, profile_id = EXCLUDED.profile_id,
		template = EXCLUDED.template, transaction_id = EXCLUDED.transaction_id, issued_at = EXCLUDED.issued_at,
		withheld = EXCLUDED.withheld`

func certificateArgs(c *crp.IssuedCertificate) ([]any, error) {
	if c == nil || c.Certificate == nil || c.Certificate.SerialNumber == nil || c.Certificate.SerialNumber.Sign() <= 0 {
		return nil, errors.New("pgstore: a certificate with a positive serial is needed")
	}
	var issuedAt *time.Time
	if !c.IssuedAt.IsZero() {
		issuedAt = &c.IssuedAt
	}
	return []any{c.Certificate.SerialNumber.String(), c.Certificate.NotAfter, c.Certificate.Raw, c.UserID, c.DeviceID,
		c.ProfileID, c.Template, c.TransactionID, issuedAt, c.Withheld}, nil
}

func scanCertificate(row pgx.Row) (*crp.IssuedCertificate, error) {
	var (
		c        crp.IssuedCertificate
		der      []byte
		issuedAt *time.Time
	)
	if err := row.Scan(&der, &c.UserID, &c.DeviceID, &c.ProfileID, &c.Template, &c.TransactionID, &issuedAt, &c.Withheld); err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("stored certificate: %w", err)
	}
	c.Certificate = cert
	if issuedAt != nil {
		c.IssuedAt = *issuedAt
	}
	return &c, nil
}

// Lookup implements crp.CertificateStore.
func (s *Store) Lookup(ctx context.Context, serial *big.Int) (*crp.IssuedCertificate, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	if serial == nil || serial.Sign() <= 0 {
		return nil, fmt.Errorf("%w: certificate %v", crp.ErrNotFound, serial)
	}
	var c *crp.IssuedCertificate
	err := s.with(ctx, func(conn *pgxpool.Conn) (err error) {
		c, err = scanCertificate(conn.QueryRow(ctx, "SELECT "+certColumns+" FROM scepkit_certificates WHERE serial = $1::numeric",
			serial.String()))
		return err
	})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("%w: certificate %x", crp.ErrNotFound, serial)
	case err != nil:
		return nil, wrap("certificate", err)
	}
	return c, nil
}

// Certificates implements crp.CertificateQuerier, from the index on the user, the
// device or not_after (each ordered by not_after, serial).
func (s *Store) Certificates(ctx context.Context, q crp.CertificateQuery) ([]*crp.IssuedCertificate, error) {
	if err := q.Check(); err != nil {
		return nil, err
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if q.UserID != "" {
		where = append(where, "user_id = "+arg(q.UserID))
	}
	if q.DeviceID != "" {
		where = append(where, "device_id = "+arg(q.DeviceID))
	}
	if !q.ExpiresAfter.IsZero() {
		where = append(where, "not_after >= "+arg(q.ExpiresAfter))
	}
	if !q.ExpiresBefore.IsZero() {
		where = append(where, "not_after < "+arg(q.ExpiresBefore))
	}
	if q.After != nil {
		where = append(where, fmt.Sprintf("(not_after, serial) > (%s, %s::numeric)",
			arg(q.After.Certificate.NotAfter), arg(q.After.Certificate.SerialNumber.String())))
	}
	sql := "SELECT " + certColumns + " FROM scepkit_certificates"
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += " ORDER BY not_after, serial LIMIT " + arg(crp.ListLimit(q.Limit))
	out, err := query(ctx, s, scanCertificate, sql, args...)
	if err != nil {
		return nil, wrap("certificates", err)
	}
	return out, nil
}

// ---- revocations ----

func scanRevocation(row pgx.Row) (*crp.Revocation, error) {
	var (
		r      crp.Revocation
		serial string
	)
	if err := row.Scan(&serial, &r.Reason, &r.RevokedAt, &r.By, &r.Issuer); err != nil {
		return nil, err
	}
	n, ok := new(big.Int).SetString(serial, 10)
	if !ok {
		return nil, fmt.Errorf("stored serial %q", serial)
	}
	r.Serial = n
	return &r, nil
}

// Revoke implements crp.RevocationStore.
func (s *Store) Revoke(ctx context.Context, r *crp.Revocation) (*crp.Revocation, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	if err := crp.CheckRevocation(r); err != nil {
		return nil, err
	}
	serial := r.Serial.String()
	var got *crp.Revocation
	err := s.with(ctx, func(c *pgxpool.Conn) error {
		if _, err := c.Exec(ctx, `INSERT INTO scepkit_revocations (serial, reason, revoked_at, by_whom, issuer)
			VALUES ($1::numeric, $2, $3, $4, $5) ON CONFLICT (serial) DO NOTHING`, serial, r.Reason, r.RevokedAt, r.By, r.Issuer); err != nil {
			return err
		}
		var err error
		got, err = scanRevocation(c.QueryRow(ctx, `SELECT serial::text, reason, revoked_at, by_whom, issuer
			FROM scepkit_revocations WHERE serial = $1::numeric`, serial))
		return err
	})
	if err != nil {
		return nil, wrap("revoking", err)
	}
	return got, nil
}

// RevokedSince implements crp.RevocationStore.
func (s *Store) RevokedSince(ctx context.Context, since time.Time) ([]*crp.Revocation, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	out, err := query(ctx, s, scanRevocation, `SELECT serial::text, reason, revoked_at, by_whom, issuer
		FROM scepkit_revocations WHERE revoked_at >= $1 ORDER BY revoked_at, serial`, since)
	if err != nil {
		return nil, wrap("revocations", err)
	}
	return out, nil
}

// IsRevoked implements crp.RevocationChecker: the serial is revoked, for cert's
// issuer or for no issuer in particular (see crp.Revocation.Issuer). A certificate
// without a serial is an error.
func (s *Store) IsRevoked(ctx context.Context, cert *x509.Certificate) (bool, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	if cert == nil || cert.SerialNumber == nil {
		return false, errors.New("pgstore: revocation check of a certificate without a serial")
	}
	var revoked bool
	err := s.with(ctx, func(c *pgxpool.Conn) error {
		return c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM scepkit_revocations WHERE serial = $1::numeric
			AND (issuer IS NULL OR issuer = $2))`, cert.SerialNumber.String(), cert.RawIssuer).Scan(&revoked)
	})
	if err != nil {
		return false, wrap("revocation", err)
	}
	return revoked, nil
}
