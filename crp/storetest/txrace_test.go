package storetest_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
)

// TestTransactionIDRaceAcrossGateways: alice and bob, each with a key and a challenge
// of their own, send a request under one transactionID at the same moment, alice to
// one gateway, bob to another on the same store. Neither finds a record when it
// begins (flights are per process). Alice's is held in the CA until bob's has been
// answered and recorded. Her record must not then replace his: with Put it did, and
// bob's resend was refused as another requester's (his pending request would have
// vanished the same way). The first record written stands; alice is refused
// (transactionID in use by another requester), as she would have been had she begun
// after it, and the certificate the CA signed for her is listed withheld, for
// revocation. Her MDM is told that failure, never that her certificate was issued
// (before, the notification went before the record, and it heard "issued"). For every
// backend that gateways can share, and boltstore (one process, two registration
// points).
func TestTransactionIDRaceAcrossGateways(t *testing.T) {
	for _, b := range []func(t *testing.T) floodBackend{memoryFlood, boltFlood, redisFlood, postgresFlood} {
		fb := b(t)
		t.Run(fb.name, func(t *testing.T) {
			for _, pending := range []bool{false, true} {
				t.Run(map[bool]string{false: "issued", true: "pending"}[pending], func(t *testing.T) {
					runTransactionIDRace(t, fb, pending)
				})
			}
		})
	}
}

func runTransactionIDRace(t *testing.T, fb floodBackend, pending bool) {
	ctx := context.Background()
	txID := "tx-shared-" + t.Name() // the backend's data outlives a subtest
	open := fb.open
	if fb.name == "boltstore" { // one process holds the file: both gateways share the Store
		store, replay, tx, closeStore := fb.open(t)
		t.Cleanup(closeStore)
		open = func(t *testing.T) (crp.Store, challenge.ReplayStore, crp.TransactionStore, func()) {
			return store, replay, tx, func() {}
		}
	}
	gw := func(first *crptest.Env) *crptest.Env {
		store, replay, tx, closeStore := open(t)
		t.Cleanup(closeStore)
		env, err := crptest.New(crptest.Options{Gateway: "gateway.example", Share: first, Store: store, Replay: replay,
			Transactions: tx})
		require.NoError(t, err)
		if pending {
			tmpl := *env.Templates[crptest.TemplateName]
			tmpl.RequiresApproval = true
			env.Templates[crptest.TemplateName] = &tmpl
		}
		return env
	}
	a := gw(nil)
	b := gw(a)

	var (
		mu          sync.Mutex
		aliceCert   *x509.Certificate
		aliceInCA   = make(chan struct{})
		bobAnswered = make(chan struct{})
	)
	inner := a.RP.Issuer
	a.RP.Issuer = crp.IssuerFunc(func(ctx context.Context, r *crp.IssueRequest) (*x509.Certificate, error) {
		close(aliceInCA)
		select {
		case <-bobAnswered:
		case <-time.After(20 * time.Second):
		}
		c, err := inner.Issue(ctx, r)
		mu.Lock()
		aliceCert = c
		mu.Unlock()
		return c, err
	})
	if pending { // held after its issue phase (PENDING), before its record is written
		a.RP.Checks = append(a.RP.Checks, crp.Check{Name: "hold", Phase: crp.PhaseIssue, After: true,
			Func: func(context.Context, *crp.Transaction) error {
				close(aliceInCA)
				select {
				case <-bobAnswered:
				case <-time.After(20 * time.Second):
				}
				return nil
			}})
	}

	aliceKey, bobKey := rsaKeys(t)
	aliceCh, _, err := a.Challenge("alice@example.com", "alice-laptop", 0)
	require.NoError(t, err)
	bobCh, _, err := b.Challenge("bob@example.com", "bob-phone", 0)
	require.NoError(t, err)

	type outcome struct {
		res *crp.Result
		err error
	}
	aliceOut := make(chan outcome, 1)
	go func() {
		res, err := enrollUnder(t, a, aliceKey, "alice@example.com", txID, aliceCh)
		aliceOut <- outcome{res, err}
	}()
	select {
	case <-aliceInCA:
	case o := <-aliceOut:
		t.Fatalf("alice's request ended before it was held: %+v, %v", o.res, o.err)
	case <-time.After(20 * time.Second):
		t.Fatal("alice's request never reached the CA")
	}
	bob, err := enrollUnder(t, b, bobKey, "bob@example.com", txID, bobCh)
	require.NoError(t, err, "bob's request, at the other gateway")
	close(bobAnswered)
	alice := <-aliceOut

	var ce *crp.Error
	require.ErrorAs(t, alice.err, &ce, "alice was answered %+v after bob's record was written", alice.res)
	require.Equal(t, crp.ReasonTransactionConflict, ce.Reason, "%v", alice.err)
	require.Nil(t, alice.res.Certificate)
	// Alice's MDM heard what she got: the failure, never "issued" (nor "pending").
	var told []crp.Outcome
	for _, n := range a.Notifier.Notifications() {
		if n.TransactionID == txID && n.UserID == "alice@example.com" {
			told = append(told, n.Outcome)
			require.Equal(t, crp.ReasonTransactionConflict, n.Reason)
			require.Nil(t, n.Certificate)
		}
	}
	require.Equal(t, []crp.Outcome{crp.OutcomeFailed}, told, "what alice's MDM was told")

	// Bob's record is still his: his resend gets his answer.
	again, err := enrollUnder(t, b, bobKey, "bob@example.com", txID, bobCh)
	require.NoError(t, err, "bob's resend: his record was replaced")
	require.Equal(t, bob.Status, again.Status)
	if !pending {
		require.Equal(t, bob.Certificate.Raw, again.Certificate.Raw)
		// Alice's certificate was signed: it is in the inventory, withheld.
		mu.Lock()
		c := aliceCert
		mu.Unlock()
		require.NotNil(t, c)
		ic, err := a.RP.Certificates.Lookup(ctx, c.SerialNumber)
		require.NoError(t, err, "alice's withheld certificate is not in the inventory")
		require.True(t, ic.Withheld, "alice's certificate is listed as issued")
		require.Equal(t, 2, a.Issuer.Count()+b.Issuer.Count())
		return
	}
	// Alice's pending request was not recorded: her challenge is hers to use again,
	// under a transactionID of her own.
	rec, err := b.RP.Transactions.Get(ctx, txID)
	require.NoError(t, err)
	require.Equal(t, "bob@example.com", rec.UserID)
	require.Equal(t, scep.Pending, rec.Status)
	a.RP.Checks = nil
	res, err := enrollUnder(t, a, aliceKey, "alice@example.com", txID+"-alice", aliceCh)
	require.NoError(t, err, "alice's challenge stayed claimed though nothing was issued")
	require.Equal(t, scep.Pending, res.Status)
}

// TestTransactionIDRaceCAQueued: as TestTransactionIDRaceAcrossGateways, but the CA
// queues alice's request (ErrPending) rather than signing it. Her PENDING record is
// not written (bob's stands), but the CA holds her request and may still sign it:
// her challenge stays claimed, as after any request the CA was asked for, so that it
// cannot buy her a second certificate. (A request pending for an operator's approval
// never reached the CA: its challenge is released, TestTransactionIDRaceAcrossGateways.)
func TestTransactionIDRaceCAQueued(t *testing.T) {
	const txID = "tx-shared-queued"
	m := &crp.MemoryStore{}
	gw := func(first *crptest.Env) *crptest.Env {
		env, err := crptest.New(crptest.Options{Gateway: "gateway.example", Share: first, Store: m})
		require.NoError(t, err)
		return env
	}
	a := gw(nil)
	b := gw(a)
	aliceInCA, bobAnswered := make(chan struct{}), make(chan struct{})
	a.RP.Issuer = crp.IssuerFunc(func(ctx context.Context, r *crp.IssueRequest) (*x509.Certificate, error) {
		close(aliceInCA)
		select {
		case <-bobAnswered:
		case <-time.After(20 * time.Second):
		}
		return nil, crp.ErrPending // queued in the CA
	})
	aliceKey, bobKey := rsaKeys(t)
	aliceCh, _, err := a.Challenge("alice@example.com", "alice-laptop", 0)
	require.NoError(t, err)
	bobCh, _, err := b.Challenge("bob@example.com", "bob-phone", 0)
	require.NoError(t, err)
	aliceErr := make(chan error, 1)
	go func() {
		_, err := enrollUnder(t, a, aliceKey, "alice@example.com", txID, aliceCh)
		aliceErr <- err
	}()
	select {
	case <-aliceInCA:
	case err := <-aliceErr:
		t.Fatalf("alice's request ended before it was held: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("alice's request never reached the CA")
	}
	_, err = enrollUnder(t, b, bobKey, "bob@example.com", txID, bobCh)
	require.NoError(t, err, "bob's request, at the other gateway")
	close(bobAnswered)
	var ce *crp.Error
	require.ErrorAs(t, <-aliceErr, &ce)
	require.Equal(t, crp.ReasonTransactionConflict, ce.Reason)

	a.RP.Issuer = b.RP.Issuer
	_, err = enrollUnder(t, a, aliceKey, "alice@example.com", txID+"-alice", aliceCh)
	require.ErrorAs(t, err, &ce, "alice's challenge was released while the CA holds her request")
	require.Equal(t, crp.ReasonReplayed, ce.Reason, "%v", err)
}

// enrollUnder enrolls user's key at env's gateway under transactionID id with
// challenge ch (in the CSR and beside it).
func enrollUnder(t *testing.T, env *crptest.Env, key *rsa.PrivateKey, user, id, ch string) (*crp.Result, error) {
	t.Helper()
	csr := csrWithChallenge(t, key, user, ch)
	return env.RP.Enroll(context.Background(), &crp.EnrollRequest{TransactionID: id, CSR: csr, Challenge: ch})
}

// csrWithChallenge is user's CSR for key, carrying challenge ch.
func csrWithChallenge(t *testing.T, key *rsa.PrivateKey, user, ch string) *x509.CertificateRequest {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: user}}, key)
	require.NoError(t, err)
	der, err = scep.AddChallengePassword(der, ch, key, nil)
	require.NoError(t, err)
	csr, err := x509.ParseCertificateRequest(der)
	require.NoError(t, err)
	return csr
}
