package crp_test

// A gateway that stops (its process killed) while a required notification is made
// leaves the record it wrote before telling the MDM (FAILURE, ReasonNotifying). The
// gateway that reads that record once the stopped one can no longer end it ends it:
// the record says FAILURE for good, the certificate stays withheld, and the MDM is
// told the failure, once, before the device is answered.

import (
	"context"
	"crypto/x509/pkix"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
)

var errStopped = errors.New("the gateway's process was killed")

// stopping is the store of a gateway that stops: once stopped, none of its writes
// reaches the store, as after a SIGKILL.
type stopping struct {
	crp.Store
	stopped atomic.Bool
}

func (s *stopping) Put(ctx context.Context, r *crp.Record) error {
	if s.stopped.Load() {
		return errStopped
	}
	return s.Store.Put(ctx, r)
}

func (s *stopping) Create(ctx context.Context, r *crp.Record) error {
	if s.stopped.Load() {
		return errStopped
	}
	return s.Store.(crp.TransactionCreator).Create(ctx, r)
}

func (s *stopping) Add(ctx context.Context, c *crp.IssuedCertificate) error {
	if s.stopped.Load() {
		return errStopped
	}
	return s.Store.Add(ctx, c)
}

// stoppingIssuance is stopping for a store that writes a certificate and its record
// in one commit (crp.IssuanceRecorder, crp.IssuanceCreator).
type stoppingIssuance struct{ *stopping }

func (s stoppingIssuance) RecordIssuance(ctx context.Context, c *crp.IssuedCertificate, r *crp.Record) error {
	if s.stopped.Load() {
		return errStopped
	}
	return s.Store.(crp.IssuanceRecorder).RecordIssuance(ctx, c, r)
}

func (s stoppingIssuance) CreateIssuance(ctx context.Context, c *crp.IssuedCertificate, r *crp.Record) error {
	if s.stopped.Load() {
		return errStopped
	}
	return s.Store.(crp.IssuanceCreator).CreateIssuance(ctx, c, r)
}

// stoppedGateway is a gateway whose process is killed while it tells the MDM (mdm)
// of the certificate it issued for the request it answers, with a notification
// required: once the MDM has heard (heard), or before. Nothing it does after reaches
// its store or the MDM.
func stoppedGateway(t *testing.T, opts crptest.Options, mdm crp.Notifier, heard bool) *crptest.Env {
	t.Helper()
	env, err := crptest.New(opts)
	require.NoError(t, err)
	t.Cleanup(func() { env.Close() })
	env.RP.RequireNotification = true
	stop := &stopping{Store: env.Store}
	var s crp.Store = stop
	if _, ok := env.Store.(crp.IssuanceRecorder); ok {
		s = stoppingIssuance{stop}
	}
	env.RP.Transactions, env.RP.Certificates = s, s
	env.RP.Notifier = crp.NotifierFunc(func(ctx context.Context, n *crp.Notification) error {
		switch {
		case stop.stopped.Load():
			return errStopped
		case n.Outcome != crp.OutcomeIssued:
			return mdm.Notify(ctx, n)
		case !heard:
			stop.stopped.Store(true)
			return errStopped
		}
		err := mdm.Notify(ctx, n)
		stop.stopped.Store(true)
		return err
	})
	return env
}

// gatewayBeside is another gateway on env's store (or a restart of env's process),
// telling the same MDM, with the clock now.
func gatewayBeside(t *testing.T, env *crptest.Env, store crp.Store, now func() time.Time) *crptest.Env {
	t.Helper()
	other, err := crptest.New(crptest.Options{Share: env, Store: store, Now: now})
	require.NoError(t, err)
	t.Cleanup(func() { other.Close() })
	other.RP.RequireNotification = true
	other.RP.Notifier = env.Notifier
	return other
}

// aliceRequests is alice's PKCSReq for transaction id at env, with a challenge env
// just minted, and the poll for it, both signed by the device's self-signed
// certificate.
func aliceRequests(t *testing.T, env *crptest.Env, id string) (req, poll *scep.Request) {
	t.Helper()
	self, err := scep.SelfSigned(deviceKey, pkix.Name{CommonName: "alice@example.com"}, nil)
	require.NoError(t, err)
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	req = &scep.Request{MessageType: scep.PKCSReq, TransactionID: id,
		CSR: csr(t, deviceKey, "alice@example.com", ch), ChallengePassword: ch, Signer: self}
	poll = &scep.Request{MessageType: scep.CertPoll, TransactionID: id, Signer: self}
	return req, poll
}

// stoppedAnswering is a gateway made by stoppedGateway (opts, mdm, heard), telling
// mdm, once it was killed answering alice's PKCSReq for transaction id (its answer
// never left the process), with that request and its poll.
func stoppedAnswering(t *testing.T, opts crptest.Options, mdm *crp.MemoryNotifier, heard bool, id string) (env *crptest.Env, req, poll *scep.Request) {
	t.Helper()
	env = stoppedGateway(t, opts, mdm, heard)
	env.Notifier = mdm
	req, poll = aliceRequests(t, env, id)
	_, _ = env.RP.Respond(context.Background(), req)
	return env, req, poll
}

// TestNotifyingEndedAfterGatewayStopped: the gateway telling the MDM of a certificate
// whose notification is required is killed after the MDM accepted it (or before it
// was told), before the record says SUCCESS. The device's poll meanwhile gets
// PENDING; once the stopped gateway could no longer record the outcome, the next
// poll (at a restarted or another gateway sharing the store) ends the transaction: the
// MDM is told the failure, with what the record keeps of the transaction, then the
// device gets FAILURE; its resend gets FAILURE and tells the MDM nothing more. No
// certificate reaches the device and the inventory lists it withheld. Before, the
// MDM went on believing the certificate issued (or was never told anything).
func TestNotifyingEndedAfterGatewayStopped(t *testing.T) {
	for _, tc := range []struct {
		name      string
		oneCommit bool // a boltstore: the certificate written with its record
		heard     bool // the MDM accepted the success notification
		told      []crp.Outcome
	}{
		{"stopped once the MDM heard", false, true, []crp.Outcome{crp.OutcomeIssued, crp.OutcomeFailed}},
		{"stopped once the MDM heard, one commit", true, true, []crp.Outcome{crp.OutcomeIssued, crp.OutcomeFailed}},
		{"stopped before the MDM heard", false, false, []crp.Outcome{crp.OutcomeFailed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys(t)
			clk := &testClock{now: time.Now()}
			opts := crptest.Options{Now: clk.Now}
			if tc.oneCommit {
				opts.Dir = t.TempDir()
			}
			mdm := &crp.MemoryNotifier{}
			env, req, poll := stoppedAnswering(t, opts, mdm, tc.heard, "stopped")
			ctx := context.Background()
			ch := req.ChallengePassword
			before := tc.told[:len(tc.told)-1]
			require.True(t, slices.Equal(before, outcomesTold(mdm)), "told %v", outcomesTold(mdm))

			other := gatewayBeside(t, env, env.Store, clk.Now)
			resp, err := other.RP.Respond(ctx, poll)
			require.NoError(t, err)
			require.Equal(t, scep.Pending, resp.Status, "the stopped gateway could still record the outcome")
			require.True(t, slices.Equal(before, outcomesTold(mdm)), "told %v", outcomesTold(mdm))

			clk.Set(clk.Now().Add(2 * time.Minute))
			for _, r := range []*scep.Request{poll, req, poll} {
				resp, err := other.RP.Respond(ctx, r)
				require.Nil(t, resp, "%v", r.MessageType)
				var e *crp.Error
				require.ErrorAs(t, err, &e)
				require.Equal(t, crp.ReasonNotifyFailed, e.Reason, "%v", err)
				require.Equal(t, scep.BadRequest, scep.FailInfoOf(err))
			}
			require.Equal(t, tc.told, outcomesTold(mdm), "the MDM heard the failure once")
			all := mdm.Notifications()
			n := all[len(all)-1]
			require.Equal(t, crp.ReasonNotifyFailed, n.Reason)
			require.Equal(t, crp.PhaseNotify, n.Phase)
			require.False(t, n.Transient)
			require.Nil(t, n.Certificate)
			require.Equal(t, "stopped", n.TransactionID)
			require.Equal(t, "alice@example.com", n.UserID)
			require.Equal(t, "alice-laptop", n.DeviceID)
			require.Equal(t, crptest.ProfileID, n.ProfileID)
			require.Equal(t, crptest.TemplateName, n.Template)
			require.Equal(t, challenge.Fingerprint(ch), n.ChallengeFingerprint)
			require.NotNil(t, n.CSR)
			require.Equal(t, req.CSR.Raw, n.CSR.Raw)

			rec, err := env.Store.Get(ctx, "stopped")
			require.NoError(t, err)
			require.Equal(t, scep.Failure, rec.Status)
			require.Equal(t, crp.ReasonNotifyFailed, rec.Reason)
			list, err := env.Store.Certificates(ctx, crp.CertificateQuery{DeviceID: "alice-laptop"})
			require.NoError(t, err)
			require.Len(t, list, 1)
			require.True(t, list[0].Withheld, "listed as issued")
			cert := list[0].Certificate
			resp, err = other.RP.Respond(ctx, &scep.Request{MessageType: scep.GetCert, TransactionID: "get", Signer: req.Signer,
				IssuerAndSerial: &scep.IssuerAndSerial{Issuer: cert.RawIssuer, Serial: cert.SerialNumber}})
			require.Nil(t, resp)
			require.Equal(t, scep.BadCertID, scep.FailInfoOf(err), "%v", err)
			require.Equal(t, 1, env.Issuer.Count()+other.Issuer.Count())
		})
	}
}

// readTogether is a transaction store whose reads of a notifying record, once armed,
// wait for each other: two gateways read it at once.
type readTogether struct {
	*crp.MemoryStore
	armed   atomic.Bool
	readers sync.WaitGroup
}

func (s *readTogether) Get(ctx context.Context, id string) (*crp.Record, error) {
	r, err := s.MemoryStore.Get(ctx, id)
	if err == nil && r.Reason == crp.ReasonNotifying && s.armed.Load() {
		s.readers.Done()
		s.readers.Wait()
	}
	return r, err
}

// noReplace is a shared store without a compare-and-swap (crp.TransactionReplacer).
type noReplace struct{ crp.Store }

func (s noReplace) Create(ctx context.Context, r *crp.Record) error {
	return s.Store.(crp.TransactionCreator).Create(ctx, r)
}

// TestNotifyingEndedOnce: two gateways read at once the record a stopped gateway left
// while it told the MDM of a certificate: with a store that replaces it with a
// compare-and-swap, one ends it and the MDM hears the failure once; both devices'
// requests get FAILURE. A store without one has both gateways end it: the MDM hears
// the failure twice, which is what it costs.
func TestNotifyingEndedOnce(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cas      bool
		failures int
	}{
		{"compare-and-swap", true, 1},
		{"no compare-and-swap", false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys(t)
			clk := &testClock{now: time.Now()}
			clock := clk.Now
			mem := &crp.MemoryStore{}
			mem.MemoryReplayStore.Now, mem.MemoryTransactions.Now = clock, clock
			shared := &readTogether{MemoryStore: mem}
			var store crp.Store = shared
			if !tc.cas {
				store = noReplace{shared}
			}
			mdm := &crp.MemoryNotifier{}
			env, req, _ := stoppedAnswering(t, crptest.Options{Now: clock, Store: store}, mdm, true, "twice")
			ctx := context.Background()
			require.Equal(t, []crp.Outcome{crp.OutcomeIssued}, outcomesTold(mdm))

			gateways := []*crptest.Env{gatewayBeside(t, env, store, clock), gatewayBeside(t, env, store, clock)}
			clk.Set(clk.Now().Add(2 * time.Minute))
			shared.readers.Add(len(gateways))
			shared.armed.Store(true)
			errs := make([]error, len(gateways))
			var wg sync.WaitGroup
			for i, g := range gateways {
				wg.Go(func() {
					_, errs[i] = g.RP.Respond(ctx, &scep.Request{MessageType: scep.CertPoll, TransactionID: "twice", Signer: req.Signer})
				})
			}
			wg.Wait()
			shared.armed.Store(false)
			for _, err := range errs {
				var e *crp.Error
				require.ErrorAs(t, err, &e)
				require.Equal(t, crp.ReasonNotifyFailed, e.Reason, "%v", err)
			}
			failures := 0
			for _, o := range outcomesTold(mdm)[1:] {
				require.Equal(t, crp.OutcomeFailed, o)
				failures++
			}
			require.Equal(t, tc.failures, failures)
		})
	}
}

// replaceFailsOnce is a shared store whose first compare-and-swap fails, as a store
// that cannot be reached for a moment.
type replaceFailsOnce struct {
	crp.Store
	failed atomic.Bool
}

func (s *replaceFailsOnce) Create(ctx context.Context, r *crp.Record) error {
	return s.Store.(crp.TransactionCreator).Create(ctx, r)
}

func (s *replaceFailsOnce) Replace(ctx context.Context, old, r *crp.Record) error {
	if !s.failed.Swap(true) {
		return errDiskFull
	}
	return s.Store.(crp.TransactionReplacer).Replace(ctx, old, r)
}

// TestNotifyingEndedRetries: what the gateway ending the transaction of a stopped one
// does when it fails. A record it cannot replace fails the request as transient
// (ErrUnavailable), and the MDM is told nothing yet: the next read ends it and tells
// the MDM. A failure notification that fails is not made again: the record says
// FAILURE already, and the next read answers it without a word to the MDM, as after
// any notification that fails.
func TestNotifyingEndedRetries(t *testing.T) {
	for _, tc := range []struct {
		name        string
		storeFails  bool
		notifyFails bool
		firstErr    error // what the first read after the window matches
		attempts    []int // failure notifications attempted after each read
	}{
		{"record not replaced: the next read ends it", true, false, crp.ErrUnavailable, []int{0, 1, 1}},
		{"failure notification fails: not made again", false, true, nil, []int{1, 1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys(t)
			clk := &testClock{now: time.Now()}
			mdm := &crp.MemoryNotifier{}
			env, _, poll := stoppedAnswering(t, crptest.Options{Now: clk.Now}, mdm, true, "retry")
			ctx := context.Background()

			var store crp.Store = env.Store
			if tc.storeFails {
				store = &replaceFailsOnce{Store: env.Store}
			}
			other := gatewayBeside(t, env, store, clk.Now)
			var attempts atomic.Int32
			other.RP.Notifier = crp.NotifierFunc(func(ctx context.Context, n *crp.Notification) error {
				attempts.Add(1)
				if tc.notifyFails {
					return errors.New("MDM down")
				}
				return mdm.Notify(ctx, n)
			})
			clk.Set(clk.Now().Add(2 * time.Minute))
			for i, want := range tc.attempts {
				resp, err := other.RP.Respond(ctx, poll)
				require.Nil(t, resp)
				var e *crp.Error
				require.ErrorAs(t, err, &e)
				if i == 0 && tc.firstErr != nil {
					require.ErrorIs(t, err, tc.firstErr)
				} else {
					require.Equal(t, crp.ReasonNotifyFailed, e.Reason, "read %d: %v", i, err)
				}
				require.Equal(t, want, int(attempts.Load()), "failure notifications after read %d", i)
			}
			rec, err := env.Store.Get(ctx, "retry")
			require.NoError(t, err)
			require.Equal(t, crp.ReasonNotifyFailed, rec.Reason)
			want := []crp.Outcome{crp.OutcomeIssued}
			if !tc.notifyFails {
				want = append(want, crp.OutcomeFailed)
			}
			require.Equal(t, want, outcomesTold(mdm))
		})
	}
}
