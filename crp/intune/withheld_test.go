package intune_test

import (
	"context"
	"errors"
	"testing"

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
