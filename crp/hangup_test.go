package crp_test

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"math/big"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/internal/testserver"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// envs are the registration points these tests run on: memory stores, and boltstore.
func hangupEnvs(t *testing.T) map[string]func(t *testing.T) *crptest.Env {
	keys(t)
	return map[string]func(t *testing.T) *crptest.Env{
		"memory": func(t *testing.T) *crptest.Env { return newEnv(t) },
		"boltstore": func(t *testing.T) *crptest.Env {
			env, err := crptest.New(crptest.Options{Dir: t.TempDir()})
			require.NoError(t, err)
			t.Cleanup(func() { env.Close() })
			return env
		},
	}
}

// TestHangUpReleasesChallenge: a client that hangs up while the CA works (the HTTP
// request's context ends; here its deadline passes) gets its challenge back, as the
// Issuer's documentation promises for a context error. Before, the release was made
// with the ended context, which the replay store refused ("crp: releasing challenge
// err=context deadline exceeded"), and the device's retry with the same challenge was
// refused as replayed.
func TestHangUpReleasesChallenge(t *testing.T) {
	for name, newEnv := range hangupEnvs(t) {
		t.Run(name, func(t *testing.T) {
			env := newEnv(t)
			inner := env.RP.Issuer
			env.RP.Issuer = crp.IssuerFunc(func(ctx context.Context, req *crp.IssueRequest) (*x509.Certificate, error) {
				<-ctx.Done() // a slow CA
				return nil, ctx.Err()
			})
			ch := mint(t, env, "alice@example.com", "alice-laptop")
			req := csr(t, deviceKey, "alice@example.com", ch)
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			_, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "hangup-1", CSR: req, Challenge: ch})
			require.ErrorIs(t, err, crp.ErrUnavailable)
			require.Zero(t, env.Issuer.Count())

			env.RP.Issuer = inner
			res, err := env.RP.Enroll(context.Background(), &crp.EnrollRequest{TransactionID: "hangup-2", CSR: req, Challenge: ch})
			require.NoError(t, err, "the retry with the same challenge")
			require.Equal(t, scep.Success, res.Status)
		})
	}
}

// TestHangUpDuringTemplate: a client that hangs up while the template is resolved
// (the resolver sees the ended context), or a template store that cannot be reached,
// leaves the challenge usable: the same request sent again is issued. Before, any
// resolver error but "not published" was the definitive "no template": the challenge
// burnt and recorded, and the device's resend answered FAILURE "as answered before"
// (a crash probe saw 43 of 300 devices that hung up lose their challenge this way).
func TestHangUpDuringTemplate(t *testing.T) {
	for _, c := range []struct {
		name string
		err  func(ctx context.Context) error
	}{
		{"the client hangs up", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }},
		{"the template store is down", func(context.Context) error { return errors.New("template database: connection refused") }},
	} {
		for name, newEnv := range hangupEnvs(t) {
			t.Run(c.name+"/"+name, func(t *testing.T) {
				env := newEnv(t)
				inner := env.RP.Templates
				env.RP.Templates = catemplate.ResolverFunc(func(ctx context.Context, req *catemplate.ResolveRequest) (*catemplate.Template, error) {
					return nil, c.err(ctx)
				})
				ch := mint(t, env, "alice@example.com", "alice-laptop")
				enroll := &crp.EnrollRequest{TransactionID: "template-hangup", CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch}
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
				_, err := env.RP.Enroll(ctx, enroll)
				require.ErrorIs(t, err, crp.ErrUnavailable)
				_, err = env.RP.Transactions.Get(context.Background(), "template-hangup")
				require.ErrorIs(t, err, crp.ErrNotFound, "nothing recorded for a transient failure")

				env.RP.Templates = inner
				res, err := env.RP.Enroll(context.Background(), enroll)
				require.NoError(t, err, "the same request again")
				require.Equal(t, scep.Success, res.Status)
				require.Equal(t, 1, env.Issuer.Count())
			})
		}
	}
}

// TestTemplateVerdictBurnsChallenge: a resolver's *catemplate.TemplateError is a
// verdict on the request: refused, its challenge spent, unlike a hang-up; a resolver's
// verdict on the key too (a template's own settings refusing the key the profile asked
// for are the operator's fault instead: TestTemplateRefusesProfileKey).
func TestTemplateVerdictBurnsChallenge(t *testing.T) {
	env := newEnv(t)
	calls := 0
	env.RP.Templates = catemplate.ResolverFunc(func(context.Context, *catemplate.ResolveRequest) (*catemplate.Template, error) {
		calls++
		return nil, &catemplate.TemplateError{Template: "ou-based", Err: catemplate.ErrKeyType, Detail: "this OU takes ECDSA keys"}
	})
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	req := csr(t, deviceKey, "alice@example.com", ch)
	_, err := env.RP.Enroll(context.Background(), &crp.EnrollRequest{TransactionID: "verdict-1", CSR: req, Challenge: ch})
	var ce *crp.Error
	require.ErrorAs(t, err, &ce)
	require.Equal(t, crp.ReasonKeyRefused, ce.Reason)
	_, err = env.RP.Enroll(context.Background(), &crp.EnrollRequest{TransactionID: "verdict-2", CSR: req, Challenge: ch})
	require.ErrorAs(t, err, &ce)
	require.Equal(t, crp.ReasonReplayed, ce.Reason, "the challenge was spent")
	require.Equal(t, 1, calls)
}

// TestHangUpAfterSigning: when the client hangs up just after the CA signed, the
// certificate is still recorded, in the inventory and in the transaction's record, so
// that a resend gets it and an operator finds it by serial. Before, both writes were
// made with the ended context and failed: the certificate was withheld and known only
// from a log line.
func TestHangUpAfterSigning(t *testing.T) {
	for name, newEnv := range hangupEnvs(t) {
		t.Run(name, func(t *testing.T) {
			env := newEnv(t)
			inner := env.RP.Issuer
			ctx, cancel := context.WithCancel(context.Background())
			var serial atomic.Pointer[big.Int]
			env.RP.Issuer = crp.IssuerFunc(func(ictx context.Context, req *crp.IssueRequest) (*x509.Certificate, error) {
				c, err := inner.Issue(ictx, req)
				if err == nil {
					serial.Store(c.SerialNumber)
				}
				cancel() // the client hangs up
				return c, err
			})
			ch := mint(t, env, "alice@example.com", "alice-laptop")
			enroll := &crp.EnrollRequest{TransactionID: "signed", CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch}
			_, err := env.RP.Enroll(ctx, enroll)
			require.NoError(t, err)
			require.NotNil(t, serial.Load())
			require.Equal(t, 1, env.Issuer.Count())

			ic, err := env.RP.Certificates.Lookup(context.Background(), serial.Load())
			require.NoError(t, err, "the signed certificate is in the inventory")
			require.Equal(t, "signed", ic.TransactionID)
			rec, err := env.RP.Transactions.Get(context.Background(), "signed")
			require.NoError(t, err, "and in the transaction's record, for resends and polls")
			require.Equal(t, scep.Success, rec.Status)
			require.Zero(t, rec.Certificate.SerialNumber.Cmp(serial.Load()))
			require.Equal(t, 1, env.Issuer.Count())
		})
	}
}

// enrollPending enrolls alice's laptop under the transactionID "wait" with a template
// that requires approval: the request is left PENDING.
func enrollPending(t *testing.T, env *crptest.Env) {
	t.Helper()
	env.Templates[crptest.TemplateName].RequiresApproval = true
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	res, err := env.RP.Enroll(context.Background(), &crp.EnrollRequest{TransactionID: "wait",
		CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch})
	require.NoError(t, err)
	require.Equal(t, scep.Pending, res.Status)
}

// flakyTransactions fails every Put while down.
type flakyTransactions struct {
	crp.TransactionStore
	down atomic.Bool
}

func (f *flakyTransactions) Put(ctx context.Context, r *crp.Record) error {
	if f.down.Load() {
		return errors.New("database down")
	}
	return f.TransactionStore.Put(ctx, r)
}

// TestDecisionNotRecorded: a decision the store could not record is an error, and the
// request stays pending and can be decided again. Before, Reject returned nil with the
// record still PENDING (the device polled PENDING until the record expired), and after
// either decision had failed to be recorded every later Approve or Reject returned
// ErrDecided for a request Pending still listed. A rejection is given back at once; an
// approval whose certificate the CA signed is not (another Approve would sign again
// at each try): the request waits for the decision's lease, the certificate withheld.
func TestDecisionNotRecorded(t *testing.T) {
	for _, decision := range []string{"reject", "approve"} {
		t.Run(decision, func(t *testing.T) {
			env := newEnv(t)
			env.RP.DecisionTTL = time.Second
			ctx := context.Background()
			enrollPending(t, env)
			flaky := &flakyTransactions{TransactionStore: env.RP.Transactions}
			env.RP.Transactions = flaky

			decide := func() error {
				if decision == "reject" {
					return env.RP.Reject(ctx, "wait", errors.New("no"))
				}
				_, err := env.RP.Approve(ctx, "wait")
				return err
			}
			flaky.down.Store(true)
			err := decide()
			require.Error(t, err, "a decision not recorded is not a success")
			rec, gerr := flaky.Get(ctx, "wait")
			require.NoError(t, gerr)
			require.Equal(t, scep.Pending, rec.Status)
			if decision == "reject" {
				require.NotErrorIs(t, decide(), crp.ErrDecided, "given back: decided again, still failing while the store is down")
			} else {
				require.Equal(t, 1, env.Issuer.Count())
				require.ErrorIs(t, decide(), crp.ErrDecided, "signed: not given back")
				require.Equal(t, 1, env.Issuer.Count(), "no second certificate at once")
				time.Sleep(1100 * time.Millisecond) // the lease passes
			}

			flaky.down.Store(false)
			require.NoError(t, decide(), "decided once the store is back")
			rec, err = flaky.Get(ctx, "wait")
			require.NoError(t, err)
			want := scep.Failure
			if decision == "approve" {
				want = scep.Success
			}
			require.Equal(t, want, rec.Status)
			require.ErrorIs(t, decide(), crp.ErrDecided, "and only once")
		})
	}
}

// TestDecisionLeaseAfterDeath: a gateway that dies while approving (killed between
// its claim on the decision and its record) leaves the request decidable again once
// DecisionTTL has passed. Before, the claim lasted until the record expired (24 hours
// by default): Pending listed the request, its device polled PENDING, and every
// Approve or Reject answered ErrDecided. A decider whose work outlives its lease
// neither finishes it nor gives back a claim that may be another's.
func TestDecisionLeaseAfterDeath(t *testing.T) {
	keys(t)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	env, err := crptest.New(crptest.Options{Now: clock, Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { env.Close() })
	env.RP.DecisionTTL = 2 * time.Second
	ctx := context.Background()
	enrollPending(t, env)

	inner := env.RP.Issuer
	entered := make(chan struct{})
	var calls atomic.Int32
	env.RP.Issuer = crp.IssuerFunc(func(ctx context.Context, req *crp.IssueRequest) (*x509.Certificate, error) {
		if calls.Add(1) == 1 { // the gateway that dies: it never gets past its CA
			close(entered)
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return inner.Issue(ctx, req)
	})
	first := make(chan error, 1)
	go func() { _, err := env.RP.Approve(ctx, "wait"); first <- err }()
	<-entered
	_, err = env.RP.Approve(ctx, "wait")
	require.ErrorIs(t, err, crp.ErrDecided, "the lease holds")

	mu.Lock()
	now = now.Add(time.Minute) // past the lease
	mu.Unlock()
	cert, err := env.RP.Approve(ctx, "wait")
	require.NoError(t, err, "decidable again once the lease has passed")
	require.NotNil(t, cert)

	require.ErrorIs(t, <-first, crp.ErrUnavailable, "the first decider's work ends with its lease")
	rec, err := env.RP.Transactions.Get(ctx, "wait")
	require.NoError(t, err)
	require.Equal(t, scep.Success, rec.Status)
	require.Zero(t, rec.Certificate.SerialNumber.Cmp(cert.SerialNumber))
	require.Equal(t, 1, env.Issuer.Count())
	require.ErrorIs(t, env.RP.Reject(ctx, "wait", errors.New("late")), crp.ErrDecided)
}

// TestRejectLogsWhy: the operator's reason for a rejection is in the log, with the
// transaction, user and device (it was nowhere: not in the audit line, not in the
// device's later FAILURE line); and the issue step of a request queued for approval
// is logged as pending (it said "ok", as if a certificate had been issued).
func TestRejectLogsWhy(t *testing.T) {
	keys(t)
	var logs testserver.Output
	env, err := crptest.New(crptest.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	require.NoError(t, err)
	ctx := context.Background()
	enrollPending(t, env)
	require.Contains(t, logs.String(), `"step":"issue"`)
	require.Contains(t, logs.String(), `"outcome":"pending"`, "queued for approval, not issued")
	require.NoError(t, env.RP.Reject(ctx, "wait", errors.New("laptop reported stolen")))
	require.Contains(t, logs.String(), `"msg":"crp: pending request rejected","transactionID":"wait","why":"laptop reported stolen"`)
}

// TestDecisionLeaseOverrun: a decider whose work outlasts its lease does not write its
// outcome: another gateway may have taken the request since, and the late record
// would overwrite its decision. Before, the record was written under a fresh 30 s
// whatever the lease, and the first decider's record replaced the second's (the
// device then polled a certificate the record no longer named). The late decider's
// certificate is withheld (logged, to be revoked) and its Approve fails. (The work
// that outlasts the lease is the CA's: the notification follows the record, which
// holds the decision once written.)
func TestDecisionLeaseOverrun(t *testing.T) {
	env := newEnv(t)
	env.RP.DecisionTTL = 2 * time.Second
	ctx := context.Background()
	enrollPending(t, env)

	entered := make(chan struct{})
	var calls atomic.Int32
	ca := env.RP.Issuer
	env.RP.Issuer = crp.IssuerFunc(func(ctx context.Context, r *crp.IssueRequest) (*x509.Certificate, error) {
		if calls.Add(1) == 1 {
			close(entered)
			time.Sleep(2500 * time.Millisecond) // a slow CA that ignores its context
		}
		return ca.Issue(ctx, r)
	})
	first := make(chan error, 1)
	go func() { _, err := env.RP.Approve(ctx, "wait"); first <- err }()
	<-entered
	time.Sleep(2100 * time.Millisecond) // the first decider's lease has passed, its work has not
	second, err := env.RP.Approve(ctx, "wait")
	require.NoError(t, err, "another gateway decides once the lease has passed")
	require.Error(t, <-first, "the late decider's outcome is not recorded")
	rec, err := env.RP.Transactions.Get(ctx, "wait")
	require.NoError(t, err)
	require.Equal(t, scep.Success, rec.Status)
	require.Zero(t, rec.Certificate.SerialNumber.Cmp(second.SerialNumber), "the record names the certificate of the decider that held the lease")
}
