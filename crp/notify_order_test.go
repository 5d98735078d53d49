package crp_test

// The MDM hears of an issued certificate only once the certificate's transaction
// record is written: a certificate withheld because another requester's record took
// its transactionID, or because its record could not be written, is notified as the
// failure the device gets, never as issued.

import (
	"context"
	"crypto/x509"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
)

// otherRequester is the record another gateway writes, for another requester (bob,
// another key), under the transactionID the request under test runs with.
func otherRequester(id string) *crp.Record {
	return &crp.Record{TransactionID: id, SignerKey: []byte("bob's key hash, 32 bytes long.."),
		Request: []byte("bob's request hash"), Status: scep.Pending, UserID: "bob@example.com"}
}

// lostCreate is a store whose first record write of a transaction finds another
// requester's record there, written by another gateway while the request ran:
// Create and CreateIssuance write bob's record first, then fail as a store shared
// by gateways does. It records certificate and record in one write
// (crp.IssuanceRecorder) when it is both the inventory and the transaction store.
type lostCreate struct{ crp.MemoryStore }

func (s *lostCreate) Create(ctx context.Context, r *crp.Record) error {
	if err := s.MemoryStore.Put(ctx, otherRequester(r.TransactionID)); err != nil {
		return err
	}
	return s.MemoryStore.Create(ctx, r)
}

func (s *lostCreate) RecordIssuance(ctx context.Context, c *crp.IssuedCertificate, r *crp.Record) error {
	if err := s.MemoryStore.Add(ctx, c); err != nil {
		return err
	}
	return s.MemoryStore.Put(ctx, r)
}

func (s *lostCreate) CreateIssuance(ctx context.Context, c *crp.IssuedCertificate, r *crp.Record) error {
	if err := s.Create(ctx, r); err != nil {
		return err
	}
	return s.MemoryStore.Add(ctx, c)
}

// failedIssuance is a store, both inventory and transaction store, whose combined
// write of a certificate and its record fails (neither is written).
type failedIssuance struct{ crp.MemoryStore }

func (*failedIssuance) RecordIssuance(context.Context, *crp.IssuedCertificate, *crp.Record) error {
	return errDiskFull
}

func (*failedIssuance) CreateIssuance(context.Context, *crp.IssuedCertificate, *crp.Record) error {
	return errDiskFull
}

// TestWithheldCertificateNotNotifiedAsIssued: the CA signs, and the certificate is
// withheld from the device, because another gateway's record for another requester
// took its transactionID (Create or CreateIssuance: ErrRecordExists) or because its
// record could not be written. The MDM must not have been told it was issued: it is
// told the failure the device got. With and without RequireNotification, with the
// certificate and its record written apart or in one commit. (Before, the
// notification preceded the record: the MDM heard "issued" for each.)
func TestWithheldCertificateNotNotifiedAsIssued(t *testing.T) {
	for _, tc := range []struct {
		name   string
		set    func(env *crptest.Env)
		reason crp.Reason
		cause  error
	}{
		{"transactionID lost, record alone", func(env *crptest.Env) {
			env.RP.Transactions = &lostCreate{}
		}, crp.ReasonTransactionConflict, nil},
		{"transactionID lost, one commit", func(env *crptest.Env) {
			s := &lostCreate{}
			env.RP.Transactions, env.RP.Certificates = s, s
		}, crp.ReasonTransactionConflict, nil},
		{"record not written, record alone", func(env *crptest.Env) {
			env.RP.Transactions = &fullDisk{}
		}, crp.ReasonInternal, errDiskFull},
		{"record not written, one commit", func(env *crptest.Env) {
			s := &failedIssuance{}
			env.RP.Transactions, env.RP.Certificates = s, s
		}, crp.ReasonInternal, errDiskFull},
	} {
		for _, required := range []bool{false, true} {
			name := tc.name + map[bool]string{false: "", true: ", notification required"}[required]
			t.Run(name, func(t *testing.T) {
				env := newEnv(t)
				env.RP.RequireNotification = required
				tc.set(env)
				var signed *x509.Certificate
				ca := env.RP.Issuer
				env.RP.Issuer = crp.IssuerFunc(func(ctx context.Context, r *crp.IssueRequest) (*x509.Certificate, error) {
					c, err := ca.Issue(ctx, r)
					signed = c
					return c, err
				})
				ctx := context.Background()
				ch := mint(t, env, "alice@example.com", "alice-laptop")
				res, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "tx-withheld",
					CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch})

				// The device got no certificate, though the CA signed one.
				var e *crp.Error
				require.ErrorAs(t, err, &e, "the device was answered %+v", res)
				require.Equal(t, tc.reason, e.Reason, "%v", err)
				if tc.cause != nil {
					require.ErrorIs(t, err, tc.cause)
				}
				require.Nil(t, res.Certificate)
				require.NotEqual(t, scep.Success, res.Status)
				require.Equal(t, 1, env.Issuer.Count(), "the CA signed")
				require.NotNil(t, signed)
				if ic, lerr := env.RP.Certificates.Lookup(ctx, signed.SerialNumber); lerr == nil {
					require.True(t, ic.Withheld, "listed in the inventory as issued")
				}

				// What the MDM was told: the failure, never "issued".
				var told []crp.Outcome
				for _, n := range env.Notifier.Notifications() {
					require.Equal(t, "tx-withheld", n.TransactionID)
					told = append(told, n.Outcome)
					if n.Outcome == crp.OutcomeFailed {
						require.Equal(t, tc.reason, n.Reason, "%v", n.Err)
						require.False(t, n.Transient, "the CA signed: the failure is final")
						require.Nil(t, n.Certificate)
					}
				}
				require.Equal(t, []crp.Outcome{crp.OutcomeFailed}, told,
					"the MDM was told otherwise than the device")
			})
		}
	}
}

// TestRecordDurableBeforeIssuedNotification: when the MDM hears that a certificate
// was issued, the certificate's record is durable already, so that a gateway that
// stops right then never leaves the MDM told of a certificate the store does not
// hold. When the notification is required (the device may have the certificate only
// once the MDM has heard of it), the record says, while the MDM is told, what a
// failed notification leaves (FAILURE, the certificate withheld, which it keeps for the
// gateway that ends it should this one stop): a gateway that stops
// then gives the device nothing the MDM was not told of (and, written with the record
// in one commit, the inventory lists it withheld). Once told, the record says SUCCESS
// and the inventory lists the certificate as issued.
func TestRecordDurableBeforeIssuedNotification(t *testing.T) {
	for _, tc := range []struct {
		name      string
		oneCommit bool
		required  bool
		during    scep.PKIStatus // the record's status while the MDM is told
	}{
		{"record alone", false, false, scep.Success},
		{"one commit", true, false, scep.Success},
		{"record alone, notification required", false, true, scep.Failure},
		{"one commit, notification required", true, true, scep.Failure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t)
			env.RP.RequireNotification = tc.required
			var inventory crp.CertificateStore = env.RP.Certificates
			if tc.oneCommit {
				s := &countingStore{}
				env.RP.Transactions, env.RP.Certificates, inventory = s, s, s
			}
			ctx := context.Background()
			var seen []string
			env.RP.Notifier = crp.NotifierFunc(func(ctx context.Context, n *crp.Notification) error {
				rec, err := env.RP.Transactions.Get(ctx, n.TransactionID)
				require.NoError(t, err, "the MDM is told before the record is written")
				require.Equal(t, tc.during, rec.Status)
				if tc.required {
					require.Equal(t, crp.ReasonNotifying, rec.Reason)
					require.True(t, rec.Certificate.Equal(n.Certificate), "the record keeps the certificate it withholds")
					if tc.oneCommit { // apart, the inventory lists it before (accept), as ever
						ic, err := inventory.Lookup(ctx, n.Serial)
						require.NoError(t, err, "the certificate is written with its record")
						require.True(t, ic.Withheld, "listed as issued before the MDM heard of it")
					}
				}
				seen = append(seen, string(n.Outcome))
				return nil
			})
			ch := mint(t, env, "alice@example.com", "alice-laptop")
			res, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "tx-durable",
				CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch})
			require.NoError(t, err)
			require.NotNil(t, res.Certificate)
			require.Equal(t, []string{string(crp.OutcomeIssued)}, seen)
			rec, err := env.RP.Transactions.Get(ctx, "tx-durable")
			require.NoError(t, err)
			require.Equal(t, scep.Success, rec.Status)
			require.True(t, rec.Certificate.Equal(res.Certificate))
			ic, err := inventory.Lookup(ctx, res.Certificate.SerialNumber)
			require.NoError(t, err)
			require.False(t, ic.Withheld, "the device's certificate")
		})
	}
}

// secondWriteFails is a TransactionStore whose Put or Replace of a SUCCESS record fails: the
// record of a certificate whose notification is required is written as withheld, and
// then cannot be written as issued.
type secondWriteFails struct{ crp.MemoryTransactions }

func (s *secondWriteFails) Put(ctx context.Context, r *crp.Record) error {
	if r.Status == scep.Success {
		return errDiskFull
	}
	return s.MemoryTransactions.Put(ctx, r)
}

// Replace fails as Put does: the SUCCESS record replaces the withheld one with it.
func (s *secondWriteFails) Replace(ctx context.Context, old, r *crp.Record) error {
	if r.Status == scep.Success {
		return errDiskFull
	}
	return s.MemoryTransactions.Replace(ctx, old, r)
}

// TestIssuedRecordNotWrittenAfterNotification: the one window left. The MDM heard of
// the certificate (a required notification), and then its record could not be
// written as issued: the device gets FAILURE, its resend too, the certificate is
// withheld, and the MDM is told the failure after the success.
func TestIssuedRecordNotWrittenAfterNotification(t *testing.T) {
	env := newEnv(t)
	env.RP.RequireNotification = true
	env.RP.Transactions = &secondWriteFails{}
	ctx := context.Background()
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	req := &crp.EnrollRequest{TransactionID: "tx-second", CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch}
	res, err := env.RP.Enroll(ctx, req)
	require.ErrorIs(t, err, errDiskFull)
	require.Nil(t, res.Certificate)
	require.Equal(t, []crp.Outcome{crp.OutcomeIssued, crp.OutcomeFailed}, outcomesTold(env.Notifier))
	list, err := env.Certificates.Certificates(ctx, crp.CertificateQuery{DeviceID: "alice-laptop"})
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.True(t, list[0].Withheld)
	res, err = env.RP.Enroll(ctx, req)
	require.Error(t, err, "the resend")
	require.Nil(t, res.Certificate)
	require.Equal(t, 1, env.Issuer.Count())
}

// TestUnrecordedRejectionNotNotified: a rejection the store could not record leaves
// the request PENDING, to be decided again; the MDM is not told it failed, and when
// the request is approved next, it hears "issued" only. (Before, it was told "failed"
// first: an MDM such as Intune takes that as final, and a certificate issued after
// it is one the MDM refused.)
func TestUnrecordedRejectionNotNotified(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	enrollPending(t, env)
	flaky := &flakyTransactions{TransactionStore: env.RP.Transactions}
	env.RP.Transactions = flaky
	flaky.down.Store(true)
	require.ErrorIs(t, env.RP.Reject(ctx, "wait", errors.New("no")), crp.ErrUnavailable)
	flaky.down.Store(false)
	cert, err := env.RP.Approve(ctx, "wait")
	require.NoError(t, err)
	require.NotNil(t, cert)
	require.Equal(t, []crp.Outcome{crp.OutcomePending, crp.OutcomeIssued}, outcomesTold(env.Notifier))
}

// outcomesTold lists the outcomes the MDM was told, in order.
func outcomesTold(n *crp.MemoryNotifier) []crp.Outcome {
	var told []crp.Outcome
	for _, x := range n.Notifications() {
		told = append(told, x.Outcome)
	}
	return told
}
