package crp_test

// A gateway telling the MDM of a certificate that is slow rather than stopped: the
// gateway that ends its transaction meanwhile decides the outcome.

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
)

// TestNotifyingSlowGatewayNotIssuedAfterEnded: the gateway telling the MDM of a
// certificate is slow, not stopped: another gateway reads its record once the window
// is over and ends the transaction (the MDM hears the failure). The slow gateway's
// notification then returns: it must not record the certificate as issued, nor answer
// it, since the MDM was told the transaction failed.
func TestNotifyingSlowGatewayNotIssuedAfterEnded(t *testing.T) {
	for _, dir := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory", true: "one commit"}[dir], func(t *testing.T) {
			keys(t)
			clk := &testClock{now: time.Now()}
			opts := crptest.Options{Now: clk.Now}
			if dir {
				opts.Dir = t.TempDir()
			}
			env, err := crptest.New(opts)
			require.NoError(t, err)
			t.Cleanup(func() { env.Close() })
			mdm := &crp.MemoryNotifier{}
			env.Notifier = mdm
			env.RP.RequireNotification = true
			told, release := make(chan struct{}), make(chan struct{})
			env.RP.Notifier = crp.NotifierFunc(func(ctx context.Context, n *crp.Notification) error {
				err := mdm.Notify(ctx, n)
				if n.Outcome == crp.OutcomeIssued {
					close(told)
					<-release // slow: the window ends meanwhile
				}
				return err
			})
			ctx := context.Background()
			req, poll := aliceRequests(t, env, "slow")
			type result struct {
				resp *scep.Response
				err  error
			}
			done := make(chan result, 1)
			go func() {
				resp, err := env.RP.Respond(ctx, req)
				done <- result{resp, err}
			}()
			<-told
			other := gatewayBeside(t, env, env.Store, clk.Now)
			clk.Set(clk.Now().Add(2 * time.Minute))
			_, err = other.RP.Respond(ctx, poll)
			require.Error(t, err, "ended")
			require.Equal(t, []crp.Outcome{crp.OutcomeIssued, crp.OutcomeFailed}, outcomesTold(mdm))
			close(release)
			r := <-done
			require.Nil(t, r.resp, "the slow gateway answered after the MDM was told the failure")
			var e *crp.Error
			require.ErrorAs(t, r.err, &e)
			require.Equal(t, crp.ReasonNotifyFailed, e.Reason, "%v", r.err)
			resp, err := other.RP.Respond(ctx, poll)
			require.Nil(t, resp, "a poll got an answer after the MDM was told the failure")
			require.ErrorAs(t, err, &e)
			require.Equal(t, crp.ReasonNotifyFailed, e.Reason, "%v", err)
			rec, err := env.Store.Get(ctx, "slow")
			require.NoError(t, err)
			require.Equal(t, scep.Failure, rec.Status, "record says %v after the MDM was told the failure", rec.Status)
			list, err := env.Store.Certificates(ctx, crp.CertificateQuery{DeviceID: "alice-laptop"})
			require.NoError(t, err)
			require.Len(t, list, 1)
			require.True(t, list[0].Withheld, "listed as issued")
			require.Equal(t, []crp.Outcome{crp.OutcomeIssued, crp.OutcomeFailed}, outcomesTold(mdm))
		})
	}
}

// replaceAnswerLost is a shared store whose compare-and-swaps apply but answer
// ErrRecordExists, as a Replace sent again after its answer was lost finds its write.
type replaceAnswerLost struct{ *crp.MemoryStore }

// requireEnrolledNotified has env require a notification, told to an MDM of its own,
// and alice enroll with transaction id: the device gets its certificate and the MDM
// hears "issued" only.
func requireEnrolledNotified(t *testing.T, env *crptest.Env, id string) {
	t.Helper()
	mdm := &crp.MemoryNotifier{}
	env.RP.RequireNotification = true
	env.RP.Notifier = mdm
	req, _ := aliceRequests(t, env, id)
	resp, err := env.RP.Respond(context.Background(), req)
	require.NoError(t, err)
	require.Equal(t, scep.Success, resp.Status)
	require.Equal(t, []crp.Outcome{crp.OutcomeIssued}, outcomesTold(mdm))
}

func (s replaceAnswerLost) Replace(ctx context.Context, old, r *crp.Record) error {
	if err := s.MemoryStore.Replace(ctx, old, r); err != nil {
		return err
	}
	return crp.ErrRecordExists
}

// TestNotifiedSuccessAnswerLost: the SUCCESS of a required notification replaces the
// held record, but the store's answer was lost and the compare-and-swap sent again is
// refused: the record says SUCCESS, so the device gets its certificate and the MDM
// hears nothing more.
func TestNotifiedSuccessAnswerLost(t *testing.T) {
	keys(t)
	store := replaceAnswerLost{&crp.MemoryStore{}}
	env, err := crptest.New(crptest.Options{Store: store})
	require.NoError(t, err)
	t.Cleanup(func() { env.Close() })
	requireEnrolledNotified(t, env, "lost")
}

// coarseExpiry is a shared store that keeps a record's Expires to the second, as a
// store of one's own may: the version it returns is not the one written.
type coarseExpiry struct{ *crp.MemoryStore }

func (s coarseExpiry) Put(ctx context.Context, r *crp.Record) error {
	c := *r
	c.Expires = c.Expires.Truncate(time.Second)
	return s.MemoryStore.Put(ctx, &c)
}

func (s coarseExpiry) Create(ctx context.Context, r *crp.Record) error {
	c := *r
	c.Expires = c.Expires.Truncate(time.Second)
	return s.MemoryStore.Create(ctx, &c)
}

func (s coarseExpiry) Replace(ctx context.Context, old, r *crp.Record) error {
	c := *r
	c.Expires = c.Expires.Truncate(time.Second)
	return s.MemoryStore.Replace(ctx, old, &c)
}

// TestNotifiedSuccessCoarseStore: a store that keeps the record's expiry at another
// precision than it was written still has the held record of a required
// notification replaced by SUCCESS: the device gets its certificate.
func TestNotifiedSuccessCoarseStore(t *testing.T) {
	keys(t)
	env, err := crptest.New(crptest.Options{Store: coarseExpiry{&crp.MemoryStore{}}})
	require.NoError(t, err)
	t.Cleanup(func() { env.Close() })
	requireEnrolledNotified(t, env, "coarse")
}

// replaceReplyLost is a shared store whose first compare-and-swap applies but fails, as
// one whose reply was lost.
type replaceReplyLost struct {
	crp.Store
	lost atomic.Bool
}

func (s *replaceReplyLost) Create(ctx context.Context, r *crp.Record) error {
	return s.Store.(crp.TransactionCreator).Create(ctx, r)
}

func (s *replaceReplyLost) Replace(ctx context.Context, old, r *crp.Record) error {
	err := s.Store.(crp.TransactionReplacer).Replace(ctx, old, r)
	if err == nil && r.Reason == crp.ReasonNotifyFailed && !s.lost.Swap(true) {
		return errDiskFull
	}
	return err
}

// TestNotifyingEndedReplyLost: the gateway ending a stopped gateway's transaction
// replaces its record, but the store's reply is lost: the record says the final
// FAILURE, and the MDM is told it, rather than never (the next read answers the
// record without a word to the MDM).
func TestNotifyingEndedReplyLost(t *testing.T) {
	keys(t)
	clk := &testClock{now: time.Now()}
	mdm := &crp.MemoryNotifier{}
	env, _, poll := stoppedAnswering(t, crptest.Options{Now: clk.Now}, mdm, true, "lost-end")
	ctx := context.Background()
	other := gatewayBeside(t, env, &replaceReplyLost{Store: env.Store}, clk.Now)
	clk.Set(clk.Now().Add(2 * time.Minute))
	for range 2 {
		_, err := other.RP.Respond(ctx, poll)
		var e *crp.Error
		require.ErrorAs(t, err, &e)
		require.Equal(t, crp.ReasonNotifyFailed, e.Reason, "%v", err)
	}
	require.Equal(t, []crp.Outcome{crp.OutcomeIssued, crp.OutcomeFailed}, outcomesTold(mdm))
}

// inventoryFailsAfterReplace is a store that writes a certificate with its record in
// one commit, whose commit of a SUCCESS record fails: the SUCCESS record itself is
// written by the compare-and-swap before it.
type inventoryFailsAfterReplace struct{ crp.Store }

func (s inventoryFailsAfterReplace) Create(ctx context.Context, r *crp.Record) error {
	return s.Store.(crp.TransactionCreator).Create(ctx, r)
}

func (s inventoryFailsAfterReplace) Replace(ctx context.Context, old, r *crp.Record) error {
	return s.Store.(crp.TransactionReplacer).Replace(ctx, old, r)
}

func (s inventoryFailsAfterReplace) CreateIssuance(ctx context.Context, c *crp.IssuedCertificate, r *crp.Record) error {
	return s.Store.(crp.IssuanceCreator).CreateIssuance(ctx, c, r)
}

func (s inventoryFailsAfterReplace) RecordIssuance(ctx context.Context, c *crp.IssuedCertificate, r *crp.Record) error {
	if r.Status == scep.Success {
		return errDiskFull
	}
	return s.Store.(crp.IssuanceRecorder).RecordIssuance(ctx, c, r)
}

// TestNotifiedInventoryNotWritten: once the record of a required notification says
// SUCCESS (a poll may have had the certificate), an inventory that cannot be written
// does not turn it into a FAILURE the MDM is told after the device got its
// certificate: the device gets it, and the MDM hears "issued" only.
func TestNotifiedInventoryNotWritten(t *testing.T) {
	keys(t)
	env, err := crptest.New(crptest.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { env.Close() })
	s := inventoryFailsAfterReplace{env.Store}
	env.RP.Transactions, env.RP.Certificates = s, s
	requireEnrolledNotified(t, env, "inv")
	rec, err := env.Store.Get(context.Background(), "inv")
	require.NoError(t, err)
	require.Equal(t, scep.Success, rec.Status)
}
