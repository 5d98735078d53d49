package intune_test

import (
	"context"
	"encoding/base64"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/intune/intunetest"
	"github.com/scepkit/scepkit/scep"
)

var errStoreDown = errors.New("store down")

// brokenRecords is a transaction store whose writes fail.
type brokenRecords struct{ crp.MemoryTransactions }

func (*brokenRecords) Put(context.Context, *crp.Record) error    { return errStoreDown }
func (*brokenRecords) Create(context.Context, *crp.Record) error { return errStoreDown }

// takenRecords is a transaction store where another gateway's record, for another
// requester, takes each transactionID just before this gateway's Create.
type takenRecords struct{ crp.MemoryTransactions }

func (s *takenRecords) Create(ctx context.Context, r *crp.Record) error {
	other := &crp.Record{TransactionID: r.TransactionID, SignerKey: []byte("another requester's key hash..."),
		Request: []byte("another request"), Status: scep.Pending}
	if err := s.MemoryTransactions.Put(ctx, other); err != nil {
		return err
	}
	return s.MemoryTransactions.Create(ctx, r)
}

// TestWithheldCertificateNotReportedIssued: Intune validated the request and the CA
// signed, but the certificate is withheld from the device: its record could not be
// written, or another requester's record took its transactionID (another gateway).
// Intune must not get a successNotification (the service's rule: a success
// notification is for a certificate the device is issued). It gets the
// failureNotification of a record that could not be written; a transactionID lost
// to another requester, a gateway-phase refusal, is reported to nobody, since that
// transactionID is the other requester's now. (Before, Intune heard of each
// certificate as issued.)
func TestWithheldCertificateNotReportedIssued(t *testing.T) {
	for _, tc := range []struct {
		name     string
		store    crp.TransactionStore
		reason   crp.Reason
		failures int
	}{
		{"record not written", &brokenRecords{}, crp.ReasonInternal, 1},
		{"transactionID taken", &takenRecords{}, crp.ReasonTransactionConflict, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGateway(t, false)
			g.RP.Transactions = tc.store
			ch := g.Emu.Challenge(intunetest.Verdict{})
			res, err := g.RP.Enroll(context.Background(), &crp.EnrollRequest{TransactionID: "tx-withheld",
				CSR: csr(t, "d", ch), Challenge: ch})
			var e *crp.Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, tc.reason, e.Reason, "%v", err)
			require.Nil(t, res.Certificate)
			require.Equal(t, 1, g.Issuer.Count(), "the CA signed")
			require.Empty(t, g.Emu.Successes(), "Intune was told of a certificate the device does not get")
			require.Len(t, g.Emu.Failures(), tc.failures)
			require.Empty(t, g.Emu.Violations())
		})
	}
}

var errKilled = errors.New("the gateway's process was killed")

// killable is the store of a gateway whose process is killed: once killed, none of its
// writes reaches the store.
type killable struct {
	crp.Store
	killed atomic.Bool
}

func (s *killable) Put(ctx context.Context, r *crp.Record) error {
	if s.killed.Load() {
		return errKilled
	}
	return s.Store.Put(ctx, r)
}

func (s *killable) Create(ctx context.Context, r *crp.Record) error {
	if s.killed.Load() {
		return errKilled
	}
	return s.Store.(crp.TransactionCreator).Create(ctx, r)
}

func (s *killable) Add(ctx context.Context, c *crp.IssuedCertificate) error {
	if s.killed.Load() {
		return errKilled
	}
	return s.Store.Add(ctx, c)
}

// TestStoppedGatewayFailureReported: the gateway is killed once Intune accepted the
// successNotification of a certificate and before its record says SUCCESS. Once the
// killed gateway could no longer record it, the device's resend, at the restarted
// gateway, ends the transaction: Intune gets a failureNotification after the success
// (it accepts it), once, and the device gets FAILURE, never the certificate. Before,
// Intune went on believing the certificate issued.
func TestStoppedGatewayFailureReported(t *testing.T) {
	for _, tc := range []struct {
		name     string
		heard    bool
		failures int
	}{
		{"killed once Intune heard", true, 1},
		{"killed before Intune heard", false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGateway(t, false)
			var mu sync.Mutex
			now := time.Now()
			g.RP.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			store := &killable{Store: g.Store}
			intune := g.RP.Notifier
			g.RP.Transactions, g.RP.Certificates = store, store
			g.RP.Notifier = crp.NotifierFunc(func(ctx context.Context, n *crp.Notification) error {
				switch {
				case store.killed.Load():
					return errKilled
				case n.Outcome != crp.OutcomeIssued:
					return intune.Notify(ctx, n)
				case !tc.heard:
					store.killed.Store(true)
					return errKilled
				}
				err := intune.Notify(ctx, n)
				store.killed.Store(true)
				return err
			})
			ctx := context.Background()
			ch := g.Emu.Challenge(intunetest.Verdict{})
			req := &crp.EnrollRequest{TransactionID: "tx-killed", CSR: csr(t, "d", ch), Challenge: ch}
			_, _ = g.RP.Enroll(ctx, req) // its answer never left the killed process

			// Restarted on the same store, after the killed gateway's time is over.
			g.RP.Transactions, g.RP.Certificates, g.RP.Notifier = g.Store, g.Store, intune
			mu.Lock()
			now = now.Add(2 * time.Minute)
			mu.Unlock()
			for range 2 {
				res, err := g.RP.Enroll(ctx, req)
				var e *crp.Error
				require.ErrorAs(t, err, &e)
				require.Equal(t, crp.ReasonNotifyFailed, e.Reason, "%v", err)
				require.Nil(t, res.Certificate)
			}
			require.Len(t, g.Emu.Successes(), map[bool]int{true: 1, false: 0}[tc.heard])
			failures := g.Emu.Failures()
			require.Len(t, failures, tc.failures)
			require.Equal(t, "tx-killed", failures[0].Notification.TransactionID)
			require.Equal(t, base64.StdEncoding.EncodeToString(req.CSR.Raw), failures[0].Notification.CertificateRequest)
			require.Empty(t, g.Emu.Violations())
			require.Equal(t, 1, g.Issuer.Count())
		})
	}
}
