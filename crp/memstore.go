package crp

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/scep"
)

// MemoryStore is a [Store] in memory, for tests, demos and a single process that may
// forget everything when it stops. Its zero value is ready. Retention and memory bounds
// are those of its parts: claims are kept a day past their challenge's expiry
// (challenge.MemoryReplayStore, challenge.ClaimMargin), transaction records and pending requests until their
// Expires (RegistrationPoint.RecordTTL, 24 hours by default; refusals of anonymous
// requests are never recorded), certificates and revocations for the life of the
// process (about 4.7 KB per certificate with an RSA-2048 key, parsed and held: 447 MB
// for 100,000, see docs/performance.md; use boltstore or pgstore when that is not
// bounded enough).
//
// Its parts each have their own clock and size: name the part, as in
// m.MemoryReplayStore.Now = clock and m.MemoryTransactions.Len() (m.Now and m.Len
// alone are ambiguous selectors, which the compiler refuses).
type MemoryStore struct {
	challenge.MemoryReplayStore
	MemoryTransactions
	MemoryCertificates
	MemoryRevocations
}

var (
	_ Store               = (*MemoryStore)(nil)
	_ TransactionCreator  = (*MemoryTransactions)(nil)
	_ TransactionReplacer = (*MemoryTransactions)(nil)
	_ Store               = (*memoryStoreCheck)(nil)
)

// memoryStoreCheck makes sure each part implements its interfaces on its own.
type memoryStoreCheck struct {
	challenge.ReplayStore
	challenge.Releaser
	*MemoryTransactions
	*MemoryCertificates
	*MemoryRevocations
}

// Pending implements PendingLister.
func (m *MemoryTransactions) Pending(ctx context.Context, after string, limit int) ([]*Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := m.now()
	var out []*Record
	for i := range m.shards {
		s := &m.shards[i]
		s.Lock()
		for id, r := range s.m {
			if r.Status == scep.Pending && id > after && r.live(now) {
				c := *r
				out = append(out, &c)
			}
		}
		s.Unlock()
	}
	slices.SortFunc(out, func(a, b *Record) int { return strings.Compare(a.TransactionID, b.TransactionID) })
	if n := ListLimit(limit); len(out) > n {
		out = out[:n]
	}
	return out, nil
}

// Certificates implements CertificateQuerier (by a scan of every certificate, each
// page: fine for tests and demos; 0.05 to 0.07 s a page at 100,000 certificates). A
// page holds at most twice its limit while it is made.
func (m *MemoryCertificates) Certificates(ctx context.Context, q CertificateQuery) ([]*IssuedCertificate, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := q.Check(); err != nil {
		return nil, err
	}
	// The page's first n in order, kept in at most 2n: each time 2n are gathered,
	// the later half is dropped, so that a page costs its own size, not the
	// inventory's.
	n := ListLimit(q.Limit)
	var out []*IssuedCertificate
	m.m.Range(func(_, v any) bool {
		c := v.(*IssuedCertificate)
		if q.Match(c) && (q.After == nil || CertificateOrder(c, q.After) > 0) {
			if out = append(out, c); len(out) == 2*n {
				slices.SortFunc(out, CertificateOrder)
				out = out[:n]
			}
		}
		return true
	})
	slices.SortFunc(out, CertificateOrder)
	if len(out) > n {
		out = out[:n]
	}
	return out, nil
}

// MemoryRevocations is a [RevocationStore] and [RevocationChecker] in memory. The zero
// value is ready. It keeps every revocation for the life of the process (about 100
// bytes each).
type MemoryRevocations struct {
	mu sync.RWMutex
	m  map[string]*Revocation // serial (decimal) -> first revocation
}

// Revoke implements RevocationStore.
func (m *MemoryRevocations) Revoke(ctx context.Context, r *Revocation) (*Revocation, error) {
	if err := CheckRevocation(r); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k := r.Serial.String()
	if have, ok := m.m[k]; ok {
		c := *have
		return &c, nil
	}
	if m.m == nil {
		m.m = map[string]*Revocation{}
	}
	c := *r
	c.Serial = new(big.Int).Set(r.Serial)
	c.Issuer = bytes.Clone(r.Issuer)
	m.m[k] = &c
	out := c
	return &out, nil
}

// RevokedSince implements RevocationStore.
func (m *MemoryRevocations) RevokedSince(ctx context.Context, since time.Time) ([]*Revocation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	var out []*Revocation
	for _, r := range m.m {
		if !r.RevokedAt.Before(since) {
			c := *r
			out = append(out, &c)
		}
	}
	m.mu.RUnlock()
	slices.SortFunc(out, RevocationOrder)
	return out, nil
}

// IsRevoked implements RevocationChecker. A certificate without a serial is an error.
func (m *MemoryRevocations) IsRevoked(ctx context.Context, cert *x509.Certificate) (bool, error) {
	if cert == nil || cert.SerialNumber == nil {
		return false, errNoSerial
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	r, ok := m.m[cert.SerialNumber.String()]
	return ok && r.For(cert.RawIssuer), nil
}

var errNoSerial = errors.New("crp: revocation check of a certificate without a serial")

// RevocationOrder compares revocations in the order
// [RevocationStore.RevokedSince] returns them: by RevokedAt, then serial. It returns
// -1, 0 or +1. It is for store implementers, as [CertificateOrder] is.
func RevocationOrder(a, b *Revocation) int {
	if c := a.RevokedAt.Compare(b.RevokedAt); c != 0 {
		return c
	}
	return a.Serial.Cmp(b.Serial)
}

// CheckRevocation reports a revocation no CRL could carry (a serial that is not
// positive, a CRLReason outside RFC 5280 section 5.3.1 or removeFromCRL, no time). It is for store
// implementers: every backend's Revoke calls it first and refuses those (the
// conformance suite crp/storetest checks it).
func CheckRevocation(r *Revocation) error {
	switch {
	case r == nil || r.Serial == nil || r.Serial.Sign() <= 0:
		return fmt.Errorf("crp: revocation: serial must be positive")
	case r.Reason < 0 || r.Reason > 10 || r.Reason == 7 || r.Reason == 8:
		// 7 is unassigned; 8, removeFromCRL, belongs in delta CRLs only (RFC 5280
		// section 5.3.1): in a full CRL, OpenSSL takes the certificate for valid.
		return fmt.Errorf("crp: revocation: invalid CRLReason %d", r.Reason)
	case r.RevokedAt.IsZero():
		return fmt.Errorf("crp: revocation: no time")
	}
	return nil
}
