package storetest_test

import (
	"context"
	"errors"
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

var errKilled = errors.New("the gateway's process was killed")

// killableRecords and killableInventory are a gateway's stores whose writes, once it
// is killed, no longer reach them.
type killableRecords struct {
	crp.TransactionStore
	killed *atomic.Bool
}

func (s killableRecords) Put(ctx context.Context, r *crp.Record) error {
	if s.killed.Load() {
		return errKilled
	}
	return s.TransactionStore.Put(ctx, r)
}

func (s killableRecords) Create(ctx context.Context, r *crp.Record) error {
	if s.killed.Load() {
		return errKilled
	}
	return s.TransactionStore.(crp.TransactionCreator).Create(ctx, r)
}

type killableInventory struct {
	crp.CertificateStore
	killed *atomic.Bool
}

func (s killableInventory) Add(ctx context.Context, c *crp.IssuedCertificate) error {
	if s.killed.Load() {
		return errKilled
	}
	return s.CertificateStore.Add(ctx, c)
}

// readAtOnce is a gateway's transaction store whose first reads of a notifying record,
// at all the gateways sharing barrier, wait for each other: they read it at once.
type readAtOnce struct {
	crp.TransactionStore
	barrier *barrier
}

type barrier struct {
	parties atomic.Int32
	wg      sync.WaitGroup
}

func (s readAtOnce) Get(ctx context.Context, id string) (*crp.Record, error) {
	r, err := s.TransactionStore.Get(ctx, id)
	if err == nil && r.Reason == crp.ReasonNotifying && s.barrier.parties.Add(-1) >= 0 {
		s.barrier.wg.Done()
		s.barrier.wg.Wait()
	}
	return r, err
}

func (s readAtOnce) Create(ctx context.Context, r *crp.Record) error {
	return s.TransactionStore.(crp.TransactionCreator).Create(ctx, r)
}

// readAtOnceCAS is readAtOnce for a store with a compare-and-swap.
type readAtOnceCAS struct{ readAtOnce }

func (s readAtOnceCAS) Replace(ctx context.Context, old, r *crp.Record) error {
	return s.TransactionStore.(crp.TransactionReplacer).Replace(ctx, old, r)
}

// readingAtOnce is tx, its first reads of a notifying record waiting at b.
func readingAtOnce(tx crp.TransactionStore, b *barrier) crp.TransactionStore {
	if _, ok := tx.(crp.TransactionReplacer); ok {
		return readAtOnceCAS{readAtOnce{tx, b}}
	}
	return readAtOnce{tx, b}
}

// TestNotifyingEndedOnceAcrossGateways: a gateway is killed once the MDM accepted the
// notification of a certificate that is required, before the record says SUCCESS.
// Once its time is over, the device's resend reaches two other gateways on the same
// store at once (each its own connection, as separate processes), which both read
// the record it left: one ends the transaction, and the MDM hears the failure once;
// both answer FAILURE, and no certificate reaches the device. For every backend that
// gateways can share, and boltstore (one process, several registration points).
func TestNotifyingEndedOnceAcrossGateways(t *testing.T) {
	for _, b := range []func(t *testing.T) floodBackend{memoryFlood, boltFlood, redisFlood, postgresFlood} {
		fb := b(t)
		t.Run(fb.name, func(t *testing.T) { runNotifyingEndedOnce(t, fb) })
	}
}

func runNotifyingEndedOnce(t *testing.T, fb floodBackend) {
	ctx := context.Background()
	txID := "tx-notifying-" + t.Name()
	open := fb.open
	if fb.name == "boltstore" { // one process holds the file: the gateways share the Store
		store, replay, tx, closeStore := fb.open(t)
		t.Cleanup(closeStore)
		open = func(t *testing.T) (crp.Store, challenge.ReplayStore, crp.TransactionStore, func()) {
			return store, replay, tx, func() {}
		}
	}
	mdm := &crp.MemoryNotifier{}
	gw := func(first *crptest.Env, now func() time.Time, records func(crp.TransactionStore) crp.TransactionStore) *crptest.Env {
		store, replay, tx, closeStore := open(t)
		t.Cleanup(closeStore)
		if tx == nil {
			tx = store
		}
		env, err := crptest.New(crptest.Options{Gateway: "gateway.example", Share: first, Store: store, Replay: replay,
			Transactions: records(tx), Now: now})
		require.NoError(t, err)
		env.RP.RequireNotification = true
		env.RP.Notifier = mdm
		return env
	}

	var killed atomic.Bool
	a := gw(nil, nil, func(tx crp.TransactionStore) crp.TransactionStore { return killableRecords{tx, &killed} })
	a.RP.Certificates = killableInventory{a.RP.Certificates, &killed}
	a.RP.Notifier = crp.NotifierFunc(func(ctx context.Context, n *crp.Notification) error {
		if killed.Load() {
			return errKilled
		}
		err := mdm.Notify(ctx, n)
		if n.Outcome == crp.OutcomeIssued {
			killed.Store(true) // once the MDM accepted it
		}
		return err
	})
	key, _ := rsaKeys(t)
	ch, _, err := a.Challenge("alice@example.com", "alice-laptop", 0)
	require.NoError(t, err)
	req := &crp.EnrollRequest{TransactionID: txID, CSR: csrWithChallenge(t, key, "alice@example.com", ch), Challenge: ch}
	_, _ = a.RP.Enroll(ctx, req) // its answer never left the killed process
	require.True(t, killed.Load())

	later := func() time.Time { return time.Now().Add(2 * time.Minute) }
	at := &barrier{}
	others := make([]*crptest.Env, 2)
	for i := range others {
		others[i] = gw(a, later, func(tx crp.TransactionStore) crp.TransactionStore { return readingAtOnce(tx, at) })
	}
	at.parties.Store(int32(len(others)))
	at.wg.Add(len(others))
	results := make([]*crp.Result, len(others))
	errs := make([]error, len(others))
	var wg sync.WaitGroup
	for i, g := range others {
		wg.Go(func() { results[i], errs[i] = g.RP.Enroll(ctx, req) })
	}
	wg.Wait()
	for i, err := range errs {
		var e *crp.Error
		require.ErrorAs(t, err, &e, "the resend at gateway %d was answered %+v", i, results[i])
		require.Equal(t, crp.ReasonNotifyFailed, e.Reason, "%v", err)
		require.Nil(t, results[i].Certificate)
	}
	var told []crp.Outcome
	for _, n := range mdm.Notifications() {
		if n.TransactionID == txID {
			told = append(told, n.Outcome)
		}
	}
	require.Equal(t, []crp.Outcome{crp.OutcomeIssued, crp.OutcomeFailed}, told, "what the MDM heard")
	require.Equal(t, 1, a.Issuer.Count()+others[0].Issuer.Count()+others[1].Issuer.Count())
}

// TestNotifiedIssuanceAcrossBackends: a certificate whose notification is required is
// issued on every backend: the record of the MDM's notification in progress is
// replaced by SUCCESS (a compare-and-swap of the version the gateway wrote, whatever
// precision the backend keeps its expiry at), and the inventory lists it issued.
func TestNotifiedIssuanceAcrossBackends(t *testing.T) {
	for _, b := range []func(t *testing.T) floodBackend{memoryFlood, boltFlood, redisFlood, postgresFlood} {
		fb := b(t)
		t.Run(fb.name, func(t *testing.T) {
			ctx := context.Background()
			store, replay, tx, closeStore := fb.open(t)
			t.Cleanup(closeStore)
			if tx == nil {
				tx = store
			}
			env, err := crptest.New(crptest.Options{Gateway: "gateway.example", Store: store, Replay: replay, Transactions: tx})
			require.NoError(t, err)
			mdm := &crp.MemoryNotifier{}
			env.RP.RequireNotification = true
			env.RP.Notifier = mdm
			key, _ := rsaKeys(t)
			ch, _, err := env.Challenge("alice@example.com", "alice-laptop", 0)
			require.NoError(t, err)
			txID := "tx-notified-" + t.Name()
			res, err := enrollUnder(t, env, key, "alice@example.com", txID, ch)
			require.NoError(t, err)
			require.NotNil(t, res.Certificate)
			rec, err := tx.Get(ctx, txID)
			require.NoError(t, err)
			require.Equal(t, scep.Success, rec.Status)
			ic, err := env.RP.Certificates.Lookup(ctx, res.Certificate.SerialNumber)
			require.NoError(t, err)
			require.False(t, ic.Withheld)
		})
	}
}
