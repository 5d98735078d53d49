package crp

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/internal/crlnumber"
)

// CRLPublisher issues the built-in CA's certificate revocation list from a
// [RevocationStore], so that revocations survive restarts and are shared by gateways
// side by side, and publishes it: over HTTP (it is an http.Handler) and through SCEP's
// GetCRL (set RegistrationPoint.CRL to its CRL method). Point the CA's
// CRLDistributionPoints at the URL where the handler is mounted.
//
// A CRL is signed when first asked for, again once it is older than Refresh, and
// after each [CRLPublisher.Revoke]; in between, every request gets the same bytes.
// When the store cannot be read at a refresh, the last CRL is served until its
// nextUpdate, unless this publisher revoked something since.
// Set the fields before first use. It is safe for concurrent use.
type CRLPublisher struct {
	// CA signs the CRL. Required.
	CA *catemplate.CA
	// Revocations holds the revocations the CRL lists: those whose Issuer is the
	// CA's subject, and those recorded without an issuer. Required.
	Revocations RevocationStore
	// Validity is how long each CRL is valid (its nextUpdate is its signing time plus
	// Validity); zero means 24 hours. Its thisUpdate is CRLBackdate before the
	// signing, as certificates' notBefore is, so that relying parties whose clocks
	// are a little behind do not take it for not yet valid (and every certificate
	// with it for unverifiable).
	Validity time.Duration
	// Refresh is how often a new CRL is signed when this publisher revoked nothing
	// (another gateway sharing the store may have); zero means an hour, and it is
	// capped at half of Validity, so that a cached CRL never reaches its nextUpdate.
	// A CRL's age is measured by Now and by the monotonic clock, whichever says more,
	// so that a clock stepped back does not keep an old CRL in service.
	Refresh time.Duration
	// Logger receives failures to sign; nil means no logging.
	Logger *slog.Logger
	// Now is the clock; nil means the CA's clock.
	Now func() time.Time

	mu     sync.Mutex
	cur    *signedCRL
	stale  bool
	number *big.Int
}

type signedCRL struct {
	der                    []byte
	number                 *big.Int
	signed                 time.Time // when: refreshes and cache lifetimes count from it
	mono                   time.Time // time.Now() at signing, for its monotonic reading
	thisUpdate, nextUpdate time.Time
	modified               time.Time // Last-Modified: thisUpdate, or zero for none (see sign)
}

// age is how long ago c was signed, by the publisher's clock reading now or, when it
// says more, by the monotonic clock: a wall clock stepped back must not make a CRL
// look younger than it is (and stay unrefreshed, or cached, by as much).
func (c *signedCRL) age(now time.Time) time.Duration {
	return max(now.Sub(c.signed), time.Since(c.mono))
}

// valid reports whether c has not reached its nextUpdate by its age at now.
func (c *signedCRL) valid(now time.Time) bool {
	return c.age(now) < c.nextUpdate.Sub(c.signed)
}

// CRLBackdate is how far before its signing a CRL's thisUpdate is set.
const CRLBackdate = 5 * time.Minute

// DefaultCRLValidity is the validity of a CRL when CRLPublisher.Validity is zero.
const DefaultCRLValidity = 24 * time.Hour

// CRLContentType is the media type of a DER CRL (RFC 2585 section 4.2).
const CRLContentType = "application/pkix-crl"

func (p *CRLPublisher) now() time.Time {
	switch {
	case p.Now != nil:
		return p.Now()
	case p.CA != nil && p.CA.Now != nil:
		return p.CA.Now()
	}
	return time.Now()
}

func (p *CRLPublisher) validity() time.Duration {
	if p.Validity > 0 {
		return p.Validity
	}
	return DefaultCRLValidity
}

func (p *CRLPublisher) refresh() time.Duration {
	r := p.Refresh
	if r <= 0 {
		r = time.Hour
	}
	if half := p.validity() / 2; r > half {
		r = half
	}
	return r
}

// CRL returns the current CRL (DER), signing a new one when needed. Its signature
// fits RegistrationPoint.CRL.
func (p *CRLPublisher) CRL(ctx context.Context) ([]byte, error) {
	c, err := p.current(ctx)
	if err != nil {
		return nil, err
	}
	return c.der, nil
}

func (p *CRLPublisher) current(ctx context.Context) (*signedCRL, error) {
	if p.CA == nil || p.Revocations == nil {
		return nil, errors.New("crp: CRLPublisher needs a CA and Revocations")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if c := p.cur; c != nil && !p.stale && c.age(now) < p.refresh() && c.valid(now) {
		return c, nil
	}
	revs, err := p.Revocations.RevokedSince(ctx, time.Time{})
	if err != nil {
		if c := p.cur; c != nil && !p.stale && c.valid(now) {
			// The store cannot be read (an outage): the CRL signed last is still
			// valid and lacks nothing revoked here, so relying parties keep it rather
			// than find none. After a Revoke here it would lack that one: no CRL then.
			if p.Logger != nil {
				p.Logger.WarnContext(ctx, "crp: revocations cannot be read; serving the last CRL until its nextUpdate",
					"err", err, "next_update", c.nextUpdate)
			}
			return c, nil
		}
		return nil, fmt.Errorf("%w: reading revocations: %w", ErrUnavailable, err)
	}
	entries := make([]x509.RevocationListEntry, 0, len(revs))
	for _, r := range revs {
		// A CRL's entries are certificates of its issuer (RFC 5280 §5): after a
		// rollover the store holds the other CA's revocations too.
		if !r.For(p.CA.Certificate.RawSubject) {
			continue
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: r.Serial, RevocationTime: r.RevokedAt.UTC(),
			ReasonCode: r.Reason})
	}
	// The CRL number must grow from one CRL to the next, also across restarts and
	// between gateways that sign in turn (whose clocks must be synchronised for that):
	// the signing time in microseconds, as catemplate.CA.CRL numbers. In seconds, a
	// burst of revocations (a CRL each) ran the number ahead of the clock, and a
	// restart within that lead went back.
	num := crlnumber.Next(now, p.number)
	// thisUpdate is written in seconds; keep the same precision here, so that
	// Last-Modified and If-Modified-Since agree with the CRL.
	signed := now.Truncate(time.Second)
	this := signed.Add(-CRLBackdate)
	next := signed.Add(p.validity())
	der, err := p.CA.SignCRL(ctx, &x509.RevocationList{Number: num, ThisUpdate: this, NextUpdate: next,
		RevokedCertificateEntries: entries})
	if err != nil {
		return nil, fmt.Errorf("%w: signing the CRL: %w", ErrUnavailable, err)
	}
	// Last-Modified is thisUpdate, which HTTP dates hold to the second. A CRL with the
	// thisUpdate of the one before it (both signed within one second: a burst of
	// revocations) has none: If-Modified-Since would take it for the one a client
	// holds. It is revalidated by its ETag, and so is every CRL whose date says less
	// than its number.
	modified := this
	if p.cur != nil && p.cur.thisUpdate.Equal(this) {
		modified = time.Time{}
	}
	p.number, p.stale = num, false
	p.cur = &signedCRL{der: der, number: num, signed: signed, mono: time.Now(), thisUpdate: this, nextUpdate: next,
		modified: modified}
	return p.cur, nil
}

// Revoke records r in the store (see [RevocationStore.Revoke]) and has the next CRL
// signed afresh, so that it lists r. A nil r.Issuer is recorded as the CA's name: r
// is about a certificate of this CA. It returns the revocation on record.
func (p *CRLPublisher) Revoke(ctx context.Context, r *Revocation) (*Revocation, error) {
	if p.Revocations == nil {
		return nil, errors.New("crp: CRLPublisher needs Revocations")
	}
	if err := CheckRevocation(r); err != nil {
		return nil, err
	}
	if r.Issuer == nil && p.CA != nil && p.CA.Certificate != nil {
		c := *r
		c.Issuer = p.CA.Certificate.RawSubject
		r = &c
	}
	got, err := p.Revocations.Revoke(ctx, r)
	if err != nil {
		return nil, err
	}
	if !got.For(r.Issuer) {
		return nil, fmt.Errorf("%w: serial %x", ErrRevokedForOtherCA, r.Serial)
	}
	p.mu.Lock()
	p.stale = true
	p.mu.Unlock()
	return got, nil
}

// ServeHTTP serves the current CRL to GET and HEAD: DER, Content-Type
// application/pkix-crl, Last-Modified its thisUpdate (none when the CRL before it had
// the same thisUpdate, signed within the same second, so that If-Modified-Since never
// takes a changed CRL for the one a client holds), an ETag from its CRL number,
// Expires its nextUpdate, and Cache-Control letting caches keep it until the next
// one is due. Conditional requests get 304. When no CRL can be signed it answers 503
// without detail (the detail goes to the Logger).
func (p *CRLPublisher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	c, err := p.current(r.Context())
	if err != nil {
		if p.Logger != nil {
			p.Logger.ErrorContext(r.Context(), "crp: serving the CRL", "err", err)
		}
		http.Error(w, "CRL unavailable", http.StatusServiceUnavailable)
		return
	}
	age := c.age(p.now())
	maxAge := p.refresh() - age
	if until := c.nextUpdate.Sub(c.signed) - age; until < maxAge {
		maxAge = until
	}
	if maxAge < 0 {
		maxAge = 0
	}
	h := w.Header()
	h.Set("Content-Type", CRLContentType)
	h.Set("Cache-Control", "public, no-transform, max-age="+strconv.FormatInt(int64(maxAge/time.Second), 10))
	h.Set("Expires", c.nextUpdate.UTC().Format(http.TimeFormat))
	h.Set("ETag", `"`+c.number.Text(16)+`"`)
	http.ServeContent(w, r, "", c.modified, bytes.NewReader(c.der))
}
