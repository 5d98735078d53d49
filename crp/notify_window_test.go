package crp_test

import (
	"context"
	"crypto/x509/pkix"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
)

// TestPollWhileApprovalNotified: an approved request whose notification is required
// (RequireNotification, Intune's) is recorded as withheld while the MDM is told, and
// as issued once it has heard. A poll of the device that comes meanwhile gets
// PENDING, and its next poll the certificate: before, it got FAILURE, which a SCEP
// client takes as final, so the device never got the certificate the MDM was then
// told it had. So does the resend of an enrollment read meanwhile at another gateway
// (TestResendWhileNotifiedElsewhere).
func TestPollWhileApprovalNotified(t *testing.T) {
	env := newEnv(t)
	env.RP.RequireNotification = true
	env.Templates[crptest.TemplateName].RequiresApproval = true
	ctx := context.Background()
	self, err := scep.SelfSigned(deviceKey, pkix.Name{CommonName: "alice@example.com"}, nil)
	require.NoError(t, err)
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	resp, err := env.RP.Respond(ctx, &scep.Request{MessageType: scep.PKCSReq, TransactionID: "poll",
		CSR: csr(t, deviceKey, "alice@example.com", ch), ChallengePassword: ch, Signer: self})
	require.NoError(t, err)
	require.Equal(t, scep.Pending, resp.Status)

	poll := func() (*scep.Response, error) {
		return env.RP.Respond(ctx, &scep.Request{MessageType: scep.CertPoll, TransactionID: "poll", Signer: self})
	}
	var during *scep.Response
	var duringErr error
	next := env.RP.Notifier
	env.RP.Notifier = crp.NotifierFunc(func(ctx context.Context, n *crp.Notification) error {
		if n.Outcome == crp.OutcomeIssued {
			during, duringErr = poll() // the device polls while the MDM is told
		}
		return next.Notify(ctx, n)
	})
	cert, err := env.RP.Approve(ctx, "poll")
	require.NoError(t, err)
	require.NoError(t, duringErr, "a poll while the MDM was told of the certificate got FAILURE")
	require.Equal(t, scep.Pending, during.Status)
	resp, err = poll()
	require.NoError(t, err)
	require.True(t, resp.Certificate.Equal(cert))
}

// TestResendWhileNotifiedElsewhere: a device resends its PKCSReq to another gateway
// sharing the store while the first one tells the MDM of its certificate (a required
// notification). The resend is answered PENDING, not FAILURE, and the device's poll
// then gets the certificate the MDM was told of. Once the first gateway's work cannot
// end any more (it stopped between the two writes), the record answers FAILURE.
func TestResendWhileNotifiedElsewhere(t *testing.T) {
	keys(t)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	env, err := crptest.New(crptest.Options{Now: clock})
	require.NoError(t, err)
	t.Cleanup(func() { env.Close() })
	env.RP.RequireNotification = true
	other, err := crptest.New(crptest.Options{Now: clock})
	require.NoError(t, err)
	t.Cleanup(func() { other.Close() })
	other.RP.Transactions = env.RP.Transactions // the store both gateways share
	ctx := context.Background()
	self, err := scep.SelfSigned(deviceKey, pkix.Name{CommonName: "alice@example.com"}, nil)
	require.NoError(t, err)
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	req := &scep.Request{MessageType: scep.PKCSReq, TransactionID: "resend",
		CSR: csr(t, deviceKey, "alice@example.com", ch), ChallengePassword: ch, Signer: self}

	var during *scep.Response
	var duringErr error
	next := env.RP.Notifier
	env.RP.Notifier = crp.NotifierFunc(func(ctx context.Context, n *crp.Notification) error {
		if n.Outcome == crp.OutcomeIssued {
			during, duringErr = other.RP.Respond(ctx, req)
		}
		return next.Notify(ctx, n)
	})
	resp, err := env.RP.Respond(ctx, req)
	require.NoError(t, err)
	require.NotNil(t, resp.Certificate)
	require.NoError(t, duringErr, "the resend at the other gateway got FAILURE while the MDM was told")
	require.Equal(t, scep.Pending, during.Status)
	poll, err := other.RP.Respond(ctx, &scep.Request{MessageType: scep.CertPoll, TransactionID: "resend", Signer: self})
	require.NoError(t, err)
	require.True(t, poll.Certificate.Equal(resp.Certificate))
	require.Equal(t, 1, env.Issuer.Count()+other.Issuer.Count())

	// A gateway that stopped while it told the MDM leaves the record it wrote before:
	// read as PENDING while that gateway could still record the outcome, as FAILURE
	// once it no longer can.
	rec, err := env.RP.Transactions.Get(ctx, "resend")
	require.NoError(t, err)
	rec.Status, rec.Certificate, rec.Phase, rec.Reason = scep.Failure, nil, crp.PhaseNotify, crp.ReasonNotifying
	require.NoError(t, env.RP.Transactions.Put(ctx, rec))
	resp, err = other.RP.Respond(ctx, req)
	require.NoError(t, err)
	require.Equal(t, scep.Pending, resp.Status, "the first gateway may still record it")
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	_, err = other.RP.Respond(ctx, req)
	var e *crp.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, crp.ReasonNotifyFailed, e.Reason, "%v", err)
}
