package crp_test

// The transaction-record logic (crp.go finishRecord, enrollSCEP), from review findings.

import (
	"context"
	"crypto/x509/pkix"
	"errors"
	"testing"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// TestTransactionIDCannotBeTakenOver: anyone may know a transactionID (it travels in
// clear and scep.Client derives it from the public key); a request signed by another
// key under it is refused and does not replace the victim's record.
func TestTransactionIDCannotBeTakenOver(t *testing.T) {
	env := newEnv(t)
	env.Templates[crptest.TemplateName].RequiresApproval = true
	ctx := context.Background()
	tid := transactionIDOf(t, deviceKey)
	victimSelf, err := scep.SelfSigned(deviceKey, pkix.Name{CommonName: "alice@example.com"}, nil)
	require.NoError(t, err)
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	resp, err := env.RP.Respond(ctx, &scep.Request{MessageType: scep.PKCSReq, TransactionID: tid,
		CSR: csr(t, deviceKey, "alice@example.com", ch), ChallengePassword: ch, Signer: victimSelf})
	require.NoError(t, err)
	require.Equal(t, scep.Pending, resp.Status)

	// The attacker: own key, same transactionID, no challenge at all.
	attackerSelf, err := scep.SelfSigned(smallKey, pkix.Name{CommonName: "x"}, nil)
	require.NoError(t, err)
	_, err = env.RP.Respond(ctx, &scep.Request{MessageType: scep.PKCSReq, TransactionID: tid,
		CSR: csr(t, smallKey, "x", ""), Signer: attackerSelf})
	require.Error(t, err)

	// The victim polls.
	resp, err = env.RP.Respond(ctx, &scep.Request{MessageType: scep.CertPoll, TransactionID: tid, Signer: victimSelf})
	require.NoError(t, err, "the victim's pending transaction was overwritten by another signer's refused request")
	require.Equal(t, scep.Pending, resp.Status)
}

// TestNotifyOutageAfterIssueKeepsChallengeBurnt: with RequireNotification, a transient
// Notifier error after the CA issued (crp/intune's network errors) withholds the
// certificate but does not release the challenge: a retry gets no second certificate.
func TestNotifyOutageAfterIssueKeepsChallengeBurnt(t *testing.T) {
	env := newEnv(t)
	env.RP.RequireNotification = true
	down := true
	env.RP.Notifier = crp.NotifierFunc(func(ctx context.Context, n *crp.Notification) error {
		if down {
			return errors.Join(crp.ErrUnavailable, errors.New("MDM unreachable"))
		}
		return nil
	})
	ctx := context.Background()
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	req := csr(t, deviceKey, "alice@example.com", ch)
	_, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "n1", CSR: req, Challenge: ch})
	require.Error(t, err)
	require.Equal(t, 1, env.Issuer.Count(), "the CA signed although the device got a failure")
	down = false
	_, err = env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "n2", CSR: req, Challenge: ch})
	t.Logf("second enrollment with the same challenge: err=%v, certificates issued=%d", err, env.Issuer.Count())
	require.Equal(t, 1, env.Issuer.Count(), "one challenge yielded two certificates")
}

// TestIssuerAndSerialRequired: a GetCert or GetCRL handed to Respond without its
// issuer and serial (a Responder request built by hand; scep.Server always parses
// one) is refused, not a panic (before: GetCRL and GetCert dereferenced it).
func TestIssuerAndSerialRequired(t *testing.T) {
	env := newEnv(t)
	for _, mt := range []scep.MessageType{scep.GetCert, scep.GetCRL} {
		t.Run(mt.String(), func(t *testing.T) {
			_, err := env.RP.Respond(context.Background(), &scep.Request{MessageType: mt, TransactionID: "no-ias"})
			require.Equal(t, scep.BadCertID, scep.FailInfoOf(err))
		})
	}
}
