package crp_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
)

// notifyWindow is how long after writing a notifying record its gateway may still
// record the outcome: two of crp's finish timeouts (30 s each).
const notifyWindow = time.Minute

// stoppedWriter is a gateway killed once the MDM heard of the certificate it issued
// for alice's PKCSReq, before the record said SUCCESS, on the memory store, its clock
// clk at written, when it wrote the notifying record.
type stoppedWriter struct {
	env     *crptest.Env
	poll    *scep.Request
	clk     *testClock
	mdm     *crp.MemoryNotifier
	written time.Time
}

// stoppedWithTTL is a stoppedWriter whose RecordTTL is ttl, for transaction id.
func stoppedWithTTL(t *testing.T, ttl time.Duration, id string) *stoppedWriter {
	t.Helper()
	keys(t)
	w := &stoppedWriter{mdm: &crp.MemoryNotifier{}, written: time.Now()}
	w.clk = &testClock{now: w.written}
	w.env = stoppedGateway(t, crptest.Options{Now: w.clk.Now}, w.mdm, true)
	w.env.Notifier = w.mdm
	w.env.RP.RecordTTL = ttl
	req, poll := aliceRequests(t, w.env, id)
	w.poll = poll
	_, _ = w.env.RP.Respond(context.Background(), req)
	require.Equal(t, []crp.Outcome{crp.OutcomeIssued}, outcomesTold(w.mdm))
	return w
}

// requirePolls has the device poll at other at each of pending, then of ended, after
// the write: PENDING, then FAILURE (ReasonNotifyFailed), the transaction ended.
func (w *stoppedWriter) requirePolls(t *testing.T, other *crptest.Env, pending, ended []time.Duration) {
	t.Helper()
	for _, at := range pending {
		w.clk.Set(w.written.Add(at))
		resp, err := other.RP.Respond(context.Background(), w.poll)
		require.NoError(t, err, "%v after the write", at)
		require.Equal(t, scep.Pending, resp.Status, "%v after the write", at)
		require.Equal(t, []crp.Outcome{crp.OutcomeIssued}, outcomesTold(w.mdm), "the MDM was told the failure %v after the write", at)
	}
	for _, at := range ended {
		w.clk.Set(w.written.Add(at))
		resp, err := other.RP.Respond(context.Background(), w.poll)
		require.Nil(t, resp, "%v after the write", at)
		var e *crp.Error
		require.ErrorAs(t, err, &e, "%v after the write", at)
		require.Equal(t, crp.ReasonNotifyFailed, e.Reason, "%v", err)
	}
	require.Equal(t, []crp.Outcome{crp.OutcomeIssued, crp.OutcomeFailed}, outcomesTold(w.mdm))
}

// TestNotifyingWindowWhateverReaderTTL: two gateways share a store, configured with
// different RecordTTLs (a rolling configuration change). The one that wrote the record
// of a certificate whose notification is required (FAILURE, ReasonNotifying) is killed
// once the MDM heard of it. The other answers a poll PENDING while the writer could
// still record the outcome, for two finish timeouts after the write, and ends the
// transaction (FAILURE, the MDM told) once that time has passed, whichever TTL is
// larger. Before, the reader took the write time for the record's Expires less its
// own TTL: with a TTL larger than the writer's it ended the transaction at once (of a
// healthy writer too, telling the MDM FAILURE after it heard "issued"), with a smaller
// one it answered PENDING for up to the TTLs' difference.
func TestNotifyingWindowWhateverReaderTTL(t *testing.T) {
	for _, tc := range []struct {
		name           string
		writer, reader time.Duration
	}{
		{"reader's TTL larger", time.Hour, 24 * time.Hour},
		{"reader's TTL smaller", 24 * time.Hour, time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := stoppedWithTTL(t, tc.writer, "ttl")
			other := gatewayBeside(t, w.env, w.env.Store, w.clk.Now)
			other.RP.RecordTTL = tc.reader
			w.requirePolls(t, other, []time.Duration{0, notifyWindow - time.Second}, []time.Duration{notifyWindow + time.Second})
		})
	}
}

// withoutWritten is a transaction store that keeps no Written, as a store of an
// earlier release, or one that drops it: its records read as an earlier release
// wrote them.
type withoutWritten struct{ crp.Store }

func (s withoutWritten) Get(ctx context.Context, id string) (*crp.Record, error) {
	r, err := s.Store.Get(ctx, id)
	if err == nil {
		r.Written = time.Time{}
	}
	return r, err
}

func (s withoutWritten) Create(ctx context.Context, r *crp.Record) error {
	return s.Store.(crp.TransactionCreator).Create(ctx, r)
}

func (s withoutWritten) Replace(ctx context.Context, old, r *crp.Record) error {
	return s.Store.(crp.TransactionReplacer).Replace(ctx, old, r)
}

// TestNotifyingWindowWithoutWritten: a notifying record that does not say when it was
// written (Written zero: an earlier release wrote it, or the store does not keep it)
// is judged as before, from its Expires less the reader's RecordTTL: with the
// writer's TTL, PENDING for two finish timeouts after the write, then ended; with a
// reader's TTL larger than the writer's, ended at once, which is what such a record
// costs. The records crp writes now say when they were written (Written, the write's
// time), which TestNotifyingWindowWhateverReaderTTL judges.
func TestNotifyingWindowWithoutWritten(t *testing.T) {
	for _, tc := range []struct {
		name           string
		reader         time.Duration
		pending, ended []time.Duration // reads after the write answered PENDING, then ended
	}{
		{"reader's TTL the writer's", time.Hour, []time.Duration{0, notifyWindow - time.Second}, []time.Duration{notifyWindow + time.Second}},
		{"reader's TTL larger", 24 * time.Hour, nil, []time.Duration{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := stoppedWithTTL(t, time.Hour, "old")
			rec, err := w.env.Store.Get(context.Background(), "old")
			require.NoError(t, err)
			require.Equal(t, crp.ReasonNotifying, rec.Reason)
			require.True(t, rec.Written.Equal(w.written), "written %v, want %v", rec.Written, w.written)
			require.True(t, rec.Expires.Equal(w.written.Add(time.Hour)))
			other := gatewayBeside(t, w.env, withoutWritten{w.env.Store}, w.clk.Now)
			other.RP.RecordTTL = tc.reader
			w.requirePolls(t, other, tc.pending, tc.ended)
		})
	}
}
