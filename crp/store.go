package crp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/scepkit/scepkit/challenge"
)

// The storage seam. A gateway remembers five things, each behind its own small
// interface so that a deployment can mix backends (Redis for challenge claims and
// PostgreSQL for the rest, say):
//
//   - challenge claims: challenge.ReplayStore (and challenge.Releaser), through
//     RegistrationPoint.Verifier.Replay;
//   - transaction records, with their answers: [TransactionStore];
//   - pending requests and their decisions: [PendingLister], and the decision claims
//     of RegistrationPoint.Decisions;
//   - the issued-certificate inventory: [CertificateStore] and [CertificateQuerier];
//   - revocations: [RevocationStore] (and [RevocationChecker] for renewals).
//
// [Store] is all of them together, which each backend implements: the in-memory
// [MemoryStore], package boltstore (embedded, one file, the default), package pgstore
// (PostgreSQL, several gateways), and package redisstore for claims and records.
//
// Durability: a backend returns from a write only once the write is durable (on disk,
// or acknowledged by its server), so that nothing is acknowledged to a device before
// it is: the challenge claim is durable before the certificate is signed, and the
// certificate's record before the CertRep leaves.

// Store is every store a gateway needs, as one backend implements them. Nothing in crp
// requires a Store: each field of RegistrationPoint takes the single interface it uses.
type Store interface {
	challenge.ReplayStore
	challenge.Releaser
	TransactionStore
	PendingLister
	CertificateStore
	CertificateQuerier
	RevocationStore
	RevocationChecker
}

// PendingLister lists the pending requests (transaction records whose Status is
// PENDING and that have not expired), for an operator to decide them with
// [RegistrationPoint.Approve] or [RegistrationPoint.Reject]. Used by admin tools.
//
// Pending returns at most limit records (limit <= 0 means [DefaultListLimit]; more
// than [MaxListLimit] is capped: see [ListLimit]), ordered by transaction id,
// starting after the id after ("" starts at the beginning): pass the last id of a
// page to get the next. Each is the whole record, as [TransactionStore.Get] returns
// it (its CSR and UserID included). A record replaced by one with another Status
// (the request was decided) leaves the list, and so does one whose Expires has
// passed. The conformance suite in package crp/storetest checks these rules.
type PendingLister interface {
	Pending(ctx context.Context, after string, limit int) ([]*Record, error)
}

// PendingListerFunc adapts a function to PendingLister.
type PendingListerFunc func(ctx context.Context, after string, limit int) ([]*Record, error)

// Pending calls f.
func (f PendingListerFunc) Pending(ctx context.Context, after string, limit int) ([]*Record, error) {
	return f(ctx, after, limit)
}

// Limits of one page of a list query.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// ListLimit returns the page size a list query with limit returns: limit <= 0 is
// DefaultListLimit, more than MaxListLimit is MaxListLimit. It is for store
// implementers (boltstore, pgstore and MemoryStore use it, so that every backend
// pages alike); users of a store just pass their limit.
func ListLimit(limit int) int {
	switch {
	case limit <= 0:
		return DefaultListLimit
	case limit > MaxListLimit:
		return MaxListLimit
	}
	return limit
}

// CertificateQuery selects issued certificates. Every set field narrows the result.
type CertificateQuery struct {
	// UserID and DeviceID select the certificates issued for that user or device.
	UserID, DeviceID string
	// ExpiresAfter and ExpiresBefore bound NotAfter: ExpiresAfter <= NotAfter <
	// ExpiresBefore. "Expiring within d" is ExpiresAfter: now, ExpiresBefore:
	// now.Add(d). Zero values leave the bound open.
	ExpiresAfter, ExpiresBefore time.Time
	// After resumes a listing after this certificate (the last of the previous
	// page); nil starts at the beginning.
	After *IssuedCertificate
	// Limit is the page size (see [ListLimit]).
	Limit int
}

// ErrBadQuery is returned by a CertificateQuerier for a query it cannot answer: an
// After without its certificate and serial.
var ErrBadQuery = errors.New("crp: bad certificate query")

// ErrRevokedForOtherCA is returned by [CRLPublisher.Revoke] when the store already
// holds a revocation of the serial for a certificate of another CA: stores key
// revocations by serial alone, so the store kept that one and this certificate is
// not revoked. It can happen only when two CAs issue the same serial (after a
// rollover, with a CA that numbers its certificates in order).
var ErrRevokedForOtherCA = errors.New("crp: the serial is already revoked for another CA's certificate")

// Check returns an error matching ErrBadQuery when q cannot be answered (After set
// without a certificate and serial). Every backend calls it first.
func (q *CertificateQuery) Check() error {
	if q.After != nil && (q.After.Certificate == nil || q.After.Certificate.SerialNumber == nil) {
		return fmt.Errorf("%w: After has no certificate and serial to resume from", ErrBadQuery)
	}
	return nil
}

// Match reports whether c is selected by q's filters (not by After or Limit). It is
// for store implementers that filter in Go (boltstore and MemoryStore do).
func (q *CertificateQuery) Match(c *IssuedCertificate) bool {
	na := c.Certificate.NotAfter
	return (q.UserID == "" || c.UserID == q.UserID) &&
		(q.DeviceID == "" || c.DeviceID == q.DeviceID) &&
		(q.ExpiresAfter.IsZero() || !na.Before(q.ExpiresAfter)) &&
		(q.ExpiresBefore.IsZero() || na.Before(q.ExpiresBefore))
}

// CertificateOrder compares issued certificates in the order
// [CertificateQuerier.Certificates] returns them: by NotAfter (second precision, as
// certificates encode it), then by serial. It returns -1, 0 or +1. It is for store
// implementers: it defines the order (and the After of the next page) that a
// backend sorting in Go sorts by, and one sorting elsewhere (an index, SQL) must
// reproduce.
func CertificateOrder(a, b *IssuedCertificate) int {
	ta, tb := a.Certificate.NotAfter.Unix(), b.Certificate.NotAfter.Unix()
	switch {
	case ta < tb:
		return -1
	case ta > tb:
		return 1
	}
	return a.Certificate.SerialNumber.Cmp(b.Certificate.SerialNumber)
}

// CertificateQuerier answers an operator's questions about the issued-certificate
// inventory: what was issued to this user or device, what expires soon. (By serial:
// [CertificateStore.Lookup].) Used by admin tools and reports.
//
// Certificates returns the certificates q selects ([CertificateQuery.Match]), ordered
// by [CertificateOrder], at most [ListLimit](q.Limit) of them, each as
// [CertificateStore.Add] stored it (the user, device and template it was issued
// for). Certificates past their NotAfter are listed too. With q.After set, the
// page starts strictly after that certificate in that order (certificates with the
// same NotAfter are told apart by serial). A query [CertificateQuery.Check] refuses
// (an After without its certificate or serial) returns an error matching
// [ErrBadQuery], never a panic. It is called concurrently. The conformance suite in
// package crp/storetest checks these rules.
type CertificateQuerier interface {
	Certificates(ctx context.Context, q CertificateQuery) ([]*IssuedCertificate, error)
}

// CertificateQuerierFunc adapts a function to CertificateQuerier.
type CertificateQuerierFunc func(ctx context.Context, q CertificateQuery) ([]*IssuedCertificate, error)

// Certificates calls f.
func (f CertificateQuerierFunc) Certificates(ctx context.Context, q CertificateQuery) ([]*IssuedCertificate, error) {
	return f(ctx, q)
}

// Revocation is one revoked certificate, as a CRL lists it (RFC 5280 section 5.3).
type Revocation struct {
	// Serial is the revoked certificate's serial number.
	Serial *big.Int
	// Reason is the CRLReason (RFC 5280 section 5.3.1): 0-6, 9 or 10 (7 is unassigned,
	// 8, removeFromCRL, is for delta CRLs only); 0 is
	// unspecified.
	Reason int
	// RevokedAt is when the certificate was revoked (the CRL's revocationDate).
	RevokedAt time.Time
	// By says who asked, for the operator: an admin's name, "intune:" and the
	// request's context, and so on. Free text; never sent to a device.
	By string
	// Issuer is the DER issuer name of the revoked certificate (its RawIssuer): a
	// serial is unique per issuer only, and a CRL lists only its own CA's
	// certificates (RFC 5280 §5). [CRLPublisher.Revoke] fills it with its CA's name
	// when it is nil. Nil in records stored before issuers were recorded: such a
	// record is listed on the CRL of every CA, and IsRevoked matches it whatever
	// the certificate's issuer, as before.
	Issuer []byte
}

// For reports whether r is about a certificate of the CA whose subject is issuer
// (DER): r names that issuer, or no issuer at all (a record stored before issuers
// were). It is for store implementers' IsRevoked, and for CRLs.
func (r *Revocation) For(issuer []byte) bool {
	return r.Issuer == nil || bytes.Equal(r.Issuer, issuer)
}

// RevocationStore keeps revocations. Used by the built-in CA's CRL (built from
// RevokedSince, so that revocations survive restarts), by admin tools that revoke, and
// by Intune's revocation poller (package crp/intune), whose results must survive a
// restart.
//
// Revoke records r and returns the revocation on record for r.Serial: r itself, or,
// when the serial was already revoked, the first revocation, whole and unchanged
// (none of its fields, not even an empty By, is taken from r: revoking again is not
// an error). It refuses, keeping nothing, what [CheckRevocation] refuses (a serial
// that is nil, zero or negative, a CRLReason 7, 8 or outside 0-10, a zero RevokedAt):
// call it first. Issuer is kept as given, nil staying nil. RevokedSince returns the
// revocations whose RevokedAt is at or after since (the zero time: all), ordered by
// RevokedAt then serial, each with every field Revoke recorded. Both methods are
// called concurrently. The conformance suite in package crp/storetest checks these
// rules.
type RevocationStore interface {
	Revoke(ctx context.Context, r *Revocation) (*Revocation, error)
	RevokedSince(ctx context.Context, since time.Time) ([]*Revocation, error)
}
