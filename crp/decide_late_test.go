package crp_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"math/big"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// clockEnv is an environment whose clock the test moves, with its log in a buffer.
func clockEnv(t *testing.T) (*crptest.Env, *atomic.Int64, *bytes.Buffer) {
	t.Helper()
	keys(t)
	now := new(atomic.Int64)
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	env, err := crptest.New(crptest.Options{Now: clock, Transactions: &crp.MemoryTransactions{Now: clock}})
	require.NoError(t, err)
	var logs bytes.Buffer
	env.RP.Logger = slogTo(&logs)
	return env, now, &logs
}

// signDecided signs what d decided, with serial, as a CA of the caller's would.
func signDecided(t *testing.T, ca *catemplate.CA, d *crp.Decision, serial int64, pub any) *x509.Certificate {
	t.Helper()
	tmpl := *d.Template
	tmpl.SerialNumber = big.NewInt(serial)
	cert, err := ca.Sign(context.Background(), &tmpl, pub)
	require.NoError(t, err)
	return cert
}

// TestLateCertificateInInventory: a certificate the CA issued for a decision that
// lapsed, or for a decision already completed with another certificate, exists: it is
// refused, but recorded in the certificate inventory (so that an operator finds it by
// serial and revokes it) and logged at ERROR as withheld. Completing twice with the
// same certificate is only a warning.
func TestLateCertificateInInventory(t *testing.T) {
	cases := []struct {
		name string
		// ttl is the DecisionTTL, advance how far the clock moves before the late
		// completion.
		ttl, advance time.Duration
		// first completes the decision with a certificate before the late one; same
		// makes the late one that same certificate.
		first, same bool
	}{
		{name: "lapsed, swept at the completion", ttl: time.Minute, advance: 2 * time.Minute},
		// Expired, but too soon after the last sweep for another one.
		{name: "lapsed, found at the completion", ttl: 100 * time.Millisecond, advance: 500 * time.Millisecond},
		{name: "second completion, another certificate", first: true},
		{name: "second completion, the same certificate", first: true, same: true},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env, now, logs := clockEnv(t)
			env.RP.DecisionTTL = c.ttl
			ctx := context.Background()
			d, req, _ := decideAlice(t, env, "late-1")
			issue := func(serial int64) *x509.Certificate { return signDecided(t, env.CA, d, serial, req.PublicKey) }
			late := issue(int64(1000 + 2*i))
			if c.first {
				first := issue(int64(1001 + 2*i))
				if c.same {
					late = first
				}
				require.NoError(t, env.RP.Complete(ctx, &crp.Completion{TransactionID: "late-1", Certificate: first}))
			}
			now.Add(int64(c.advance))
			logs.Reset()

			err := env.RP.Complete(ctx, &crp.Completion{TransactionID: "late-1", Certificate: late})
			require.ErrorIs(t, err, crp.ErrCompleted)

			got, err := env.Certificates.Lookup(ctx, late.SerialNumber)
			require.NoError(t, err, "the CA issued it: the inventory must know it")
			require.Equal(t, late.Raw, got.Certificate.Raw)
			require.Equal(t, "late-1", got.TransactionID)
			require.Equal(t, !c.same, got.Withheld, "a late certificate is marked (GetCert and renewals refuse it); the device's is not")
			require.Equal(t, "alice-laptop", got.DeviceID)
			list, err := env.Certificates.Certificates(ctx, crp.CertificateQuery{DeviceID: "alice-laptop"})
			require.NoError(t, err)
			require.NotEmpty(t, list)

			if c.same {
				require.NotContains(t, logs.String(), "level=ERROR", "the device has that certificate: nothing to revoke")
			} else {
				require.Contains(t, logs.String(), "level=ERROR")
				require.Contains(t, logs.String(), "withheld")
				require.Contains(t, logs.String(), "revoke it")
				require.Contains(t, logs.String(), fmt.Sprintf("serial=%x", late.SerialNumber))
			}
			rec, err := env.RP.Transactions.Get(ctx, "late-1")
			require.NoError(t, err)
			if !c.same && rec.Status == scep.Success {
				require.NotEqual(t, late.Raw, rec.Certificate.Raw, "a late certificate is never the device's answer")
			}
		})
	}
}

// TestOpenDecisionsCapped: at most MaxOpenDecisions decisions wait for their
// completion; beyond, Decide refuses with a transient *Error before claiming anything
// (the challenge stays usable, nothing is recorded or notified), and takes new
// decisions again once one is completed or has lapsed.
func TestOpenDecisionsCapped(t *testing.T) {
	env, now, _ := clockEnv(t)
	env.RP.MaxOpenDecisions = 2
	ctx := context.Background()
	a, reqA, _ := decideAlice(t, env, "cap-a")
	decideAlice(t, env, "cap-b")

	chC := mint(t, env, "alice@example.com", "alice-laptop")
	reqC := csr(t, deviceKey, "alice@example.com", chC)
	_, err := env.RP.Decide(ctx, &crp.EnrollRequest{TransactionID: "cap-c", CSR: reqC, Challenge: chC})
	var e *crp.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, crp.ReasonTooManyDecisions, e.Reason)
	require.ErrorIs(t, err, crp.ErrUnavailable, "a full registration point is a transient refusal")
	_, err = env.RP.Transactions.Get(ctx, "cap-c")
	require.ErrorIs(t, err, crp.ErrNotFound)
	require.Empty(t, env.Notifier.Notifications())

	// A completion frees a place; the refused request's challenge was not claimed.
	cert, err := env.CA.Sign(ctx, a.Template, reqA.PublicKey)
	require.NoError(t, err)
	require.NoError(t, env.RP.Complete(ctx, &crp.Completion{TransactionID: "cap-a", Certificate: cert}))
	_, err = env.RP.Decide(ctx, &crp.EnrollRequest{TransactionID: "cap-c", CSR: reqC, Challenge: chC})
	require.NoError(t, err)

	// Full again (cap-b, cap-c); lapsed decisions free their places.
	chD := mint(t, env, "alice@example.com", "alice-laptop")
	reqD := csr(t, deviceKey, "alice@example.com", chD)
	_, err = env.RP.Decide(ctx, &crp.EnrollRequest{TransactionID: "cap-d", CSR: reqD, Challenge: chD})
	require.ErrorAs(t, err, &e)
	require.Equal(t, crp.ReasonTooManyDecisions, e.Reason)
	now.Add(int64(crp.DefaultDecisionTTL + time.Minute))
	_, err = env.RP.Decide(ctx, &crp.EnrollRequest{TransactionID: "cap-d", CSR: reqD, Challenge: chD})
	require.NoError(t, err)
	for _, id := range []string{"cap-b", "cap-c"} {
		rec, err := env.RP.Transactions.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, crp.ReasonDecisionLapsed, rec.Reason)
	}
}

// TestSweepDecisions: SweepDecisions lapses the decisions past their time at once
// (recorded and notified), where Decide and Complete sweep at most once a second and
// only when they are called.
func TestSweepDecisions(t *testing.T) {
	env, now, _ := clockEnv(t)
	env.RP.DecisionTTL = 100 * time.Millisecond
	ctx := context.Background()
	decideAlice(t, env, "sweep-1")
	require.Equal(t, 0, env.RP.SweepDecisions(ctx), "not lapsed yet")
	_, err := env.RP.Transactions.Get(ctx, "sweep-1")
	require.ErrorIs(t, err, crp.ErrNotFound)

	now.Add(int64(200 * time.Millisecond))
	require.Equal(t, 1, env.RP.SweepDecisions(ctx))
	rec, err := env.RP.Transactions.Get(ctx, "sweep-1")
	require.NoError(t, err)
	require.Equal(t, scep.Failure, rec.Status)
	require.Equal(t, crp.ReasonDecisionLapsed, rec.Reason)
	n := env.Notifier.Notifications()
	require.Len(t, n, 1)
	require.Equal(t, crp.ReasonDecisionLapsed, n[0].Reason)
	require.Equal(t, 0, env.RP.SweepDecisions(ctx), "a decision lapses once")
}

// TestLateCertificateEdges: a late certificate another CA signed is logged as withheld
// but not recorded (it is not ours); one completed under a transactionID never decided
// here is recorded (our CA signed it: it must be found to be revoked).
func TestLateCertificateEdges(t *testing.T) {
	other := newEnv(t)
	cases := []struct {
		name     string
		txID     string
		ca       func(env *crptest.Env) *crptest.Env
		want     error
		recorded bool
	}{
		{name: "another CA", txID: "late-1", ca: func(*crptest.Env) *crptest.Env { return other },
			want: crp.ErrCompleted, recorded: false},
		{name: "never decided", txID: "unknown", ca: func(env *crptest.Env) *crptest.Env { return env },
			want: crp.ErrNoDecision, recorded: true},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env, now, logs := clockEnv(t)
			env.RP.DecisionTTL = time.Minute
			ctx := context.Background()
			d, req, _ := decideAlice(t, env, "late-1")
			now.Add(int64(2 * time.Minute))
			cert := signDecided(t, c.ca(env).CA, d, int64(2000+i), req.PublicKey)
			logs.Reset()

			err := env.RP.Complete(ctx, &crp.Completion{TransactionID: c.txID, Certificate: cert})
			require.ErrorIs(t, err, c.want)
			_, err = env.Certificates.Lookup(ctx, cert.SerialNumber)
			if c.recorded {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, crp.ErrNotFound)
			}
			require.Contains(t, logs.String(), "level=ERROR")
			require.Contains(t, logs.String(), fmt.Sprintf("serial=%x", cert.SerialNumber))
			require.Contains(t, logs.String(), "revoke it")
		})
	}
}
