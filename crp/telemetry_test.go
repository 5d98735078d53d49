package crp_test

import (
	"context"
	"crypto"
	"crypto/x509/pkix"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// observed is a gateway with a real OpenTelemetry SDK meter and tracer attached.
type observed struct {
	env    *crptest.Env
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
}

func newObserved(t *testing.T) *observed {
	t.Helper()
	keys(t)
	o := &observed{reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder()}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(o.reader))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(o.spans))
	t.Cleanup(func() { mp.Shutdown(context.Background()); tp.Shutdown(context.Background()) })
	env, err := crptest.New(crptest.Options{MeterProvider: mp, TracerProvider: tp})
	require.NoError(t, err)
	o.env = env
	return o
}

// pkcsReq sends one PKCSReq through the SCEP handler and returns the CertRep.
func (o *observed) pkcsReq(t *testing.T, id, cn, ch string) *scep.PKIMessage {
	t.Helper()
	self, err := scep.SelfSigned(deviceKey, pkix.Name{CommonName: cn}, nil)
	require.NoError(t, err)
	msg, _, err := scep.NewRequest(scep.RequestOptions{Type: scep.PKCSReq, TransactionID: id,
		Payload: csr(t, deviceKey, cn, ch).Raw, Recipient: o.env.RA.EncryptionCertificate,
		Digest: crypto.SHA256, SignerCert: self, Signer: deviceKey})
	require.NoError(t, err)
	rec := serve(o.env.Server, msg)
	require.Equal(t, http.StatusOK, rec.Code)
	rep, err := scep.ParsePKIMessage(rec.Body.Bytes(), scep.ParseOptions{})
	require.NoError(t, err)
	return rep
}

// sums returns the counter points of metric name, keyed by their attributes.
func (o *observed) sums(t *testing.T, name string) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, o.reader.Collect(context.Background(), &rm))
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[attrString(p.Attributes)] += p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out[attrString(p.Attributes)] += int64(p.Count)
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					out[attrString(p.Attributes)] = int64(p.Value)
				}
			}
		}
	}
	return out
}

func attrString(s attribute.Set) string {
	var out string
	for _, kv := range s.ToSlice() {
		out += fmt.Sprintf("%s=%s,", kv.Key, kv.Value.Emit())
	}
	return out
}

// TestMetricsByOutcomeAndPhase: an issued certificate, a replayed challenge (phase
// 2) and an expired one (phase 1) are counted by outcome, phase and reason; each
// phase's latency and the challenge claims are recorded.
func TestMetricsByOutcomeAndPhase(t *testing.T) {
	o := newObserved(t)
	ch := mint(t, o.env, "alice@example.com", "alice-laptop")
	require.Equal(t, scep.Success, o.pkcsReq(t, "tx-ok", "alice@example.com", ch).Status)
	rep := o.pkcsReq(t, "tx-replay", "alice@example.com", ch)
	require.Equal(t, scep.Failure, rep.Status)
	expired := challengeWithExp(t, o.env.Challenges.Key, mint(t, o.env, "alice@example.com", "alice-laptop"), time.Now().Add(-time.Minute))
	rep = o.pkcsReq(t, "tx-expired", "alice@example.com", expired)
	require.Equal(t, scep.BadTime, rep.FailInfo)

	enrolls := o.sums(t, crp.MetricEnrollments)
	require.Equal(t, map[string]int64{
		"scepkit.outcome=issued,scepkit.renewal=false,": 1,
		"scepkit.outcome=failed,scepkit.phase=phase2-genuineness,scepkit.reason=challenge already used,scepkit.renewal=false,": 1,
		"scepkit.outcome=failed,scepkit.phase=phase1-expiry,scepkit.reason=challenge expired,scepkit.renewal=false,":           1,
	}, enrolls)
	require.Equal(t, map[string]int64{"scepkit.result=claimed,": 1, "scepkit.result=replayed,": 1},
		o.sums(t, crp.MetricChallengeClaims))
	phases := o.sums(t, crp.MetricPhaseDuration)
	require.Equal(t, int64(3), phases["scepkit.outcome=ok,scepkit.phase=gateway,"])
	require.Equal(t, int64(1), phases["scepkit.outcome=refused,scepkit.phase=phase1-expiry,"])
	require.Equal(t, int64(1), phases["scepkit.outcome=refused,scepkit.phase=phase2-genuineness,"])
	require.Equal(t, int64(1), phases["scepkit.outcome=ok,scepkit.phase=issue,"])
	require.Equal(t, int64(2), o.sums(t, crp.MetricRequestDuration)["scep.message_type=PKCSReq,scepkit.outcome=FAILURE,"])

	reqs := o.sums(t, scep.MetricRequests)
	require.Equal(t, int64(1), reqs["scep.message_type=PKCSReq,scep.operation=PKIOperation,scep.status=SUCCESS,"])
	require.Equal(t, int64(1), reqs["scep.fail_info=badTime,scep.message_type=PKCSReq,scep.operation=PKIOperation,scep.status=FAILURE,"])
	expiry := o.sums(t, scep.MetricCertificateExpiry)
	caKey := "scepkit.certificate.role=ca,scepkit.certificate.serial=" + o.env.CA.Certificate.SerialNumber.Text(16) + ","
	require.InDelta(t, time.Until(o.env.CA.Certificate.NotAfter).Seconds(), float64(expiry[caKey]), 60)
	require.Len(t, expiry, 3, "CA, RA signing, RA encryption")
}

// TestSpanPerRequest: one span per SCEP request with a child per phase; the
// transactionID and the challenge fingerprint are on it, the challenge nowhere.
func TestSpanPerRequest(t *testing.T) {
	o := newObserved(t)
	ch := mint(t, o.env, "alice@example.com", "alice-laptop")
	require.Equal(t, scep.Success, o.pkcsReq(t, "tx-span", "alice@example.com", ch).Status)

	spans := o.spans.Ended()
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byName[s.Name()] = s
		for _, kv := range s.Attributes() {
			require.NotContains(t, kv.Value.Emit(), ch, "span %q attribute %s carries the challenge", s.Name(), kv.Key)
		}
	}
	http, req := byName["scep PKIOperation"], byName["crp PKCSReq"]
	require.NotNil(t, http)
	require.NotNil(t, req)
	require.Equal(t, http.SpanContext().SpanID(), req.Parent().SpanID())
	attrs := map[attribute.Key]string{}
	for _, kv := range req.Attributes() {
		attrs[kv.Key] = kv.Value.Emit()
	}
	require.Equal(t, "tx-span", attrs[scep.AttrTransaction])
	require.Equal(t, challenge.Fingerprint(ch), attrs[crp.AttrChallenge])
	// Each phase span is a child of the request's and keeps its own times, though
	// the phase spans are handed to the processor together at the request's end.
	prevEnd := req.StartTime()
	for _, p := range []crp.Phase{crp.PhaseGateway, crp.PhaseExpiry, crp.PhaseGenuineness, crp.PhaseMapping,
		crp.PhaseTemplate, crp.PhaseIssue, crp.PhaseNotify} {
		s := byName["crp "+p.String()]
		require.NotNil(t, s, p.String())
		require.Equal(t, req.SpanContext().SpanID(), s.Parent().SpanID(), p.String())
		require.False(t, s.StartTime().Before(prevEnd), "%v starts after the phase before it ends", p)
		require.True(t, s.EndTime().After(s.StartTime()), p.String())
		prevEnd = s.EndTime()
	}
	require.True(t, req.EndTime().After(prevEnd))
}

// dropSampler samples nothing and remembers the names of the spans it was asked
// about: the spans started.
type dropSampler struct {
	mu    sync.Mutex
	names []string
}

func (d *dropSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	d.mu.Lock()
	d.names = append(d.names, p.Name)
	d.mu.Unlock()
	return sdktrace.SamplingResult{Decision: sdktrace.Drop}
}

func (d *dropSampler) Description() string { return "drop, remembering names" }

// TestNoPhaseSpansUnsampled: a request whose span is not sampled starts no phase
// spans (and its metrics are still recorded).
func TestNoPhaseSpansUnsampled(t *testing.T) {
	keys(t)
	spans := tracetest.NewSpanRecorder()
	sampler := &dropSampler{}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	env, err := crptest.New(crptest.Options{TracerProvider: tp, MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
	require.NoError(t, err)
	t.Cleanup(func() { env.Close() })
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	_, err = env.RP.Enroll(context.Background(), &crp.EnrollRequest{TransactionID: "unsampled",
		CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch})
	require.NoError(t, err)
	require.Empty(t, spans.Started())
	require.Equal(t, []string{"crp Enroll"}, sampler.names, "only the request's span is started")
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	found := false
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			found = found || m.Name == crp.MetricPhaseDuration
		}
	}
	require.True(t, found, "phase durations recorded")
}

// TestServerCloseStopsExpiryGauge: a Server replaced by another (a reload with a new
// RA) and closed no longer reports its certificates' expiry; before Close existed,
// every Server ever made on the MeterProvider kept reporting its own.
func TestServerCloseStopsExpiryGauge(t *testing.T) {
	o := newObserved(t)
	require.NoError(t, o.env.Server.Validate())
	require.Len(t, o.sums(t, scep.MetricCertificateExpiry), 3)
	old := o.env.Server
	ra, err := catemplate.NewRA(o.env.CA, catemplate.RAOptions{})
	require.NoError(t, err)
	next := crp.NewServer(o.env.RP, ra)
	next.MeterProvider = old.MeterProvider
	require.NoError(t, next.Validate())
	require.Len(t, o.sums(t, scep.MetricCertificateExpiry), 5, "both servers report until the old one is closed")
	require.NoError(t, old.Close())
	require.NoError(t, old.Close(), "a second Close does nothing")
	expiry := o.sums(t, scep.MetricCertificateExpiry)
	require.Len(t, expiry, 3, "CA, and the new RA's two certificates")
	require.Contains(t, expiry, "scepkit.certificate.role=ra-signing,scepkit.certificate.serial="+ra.SigningCertificate.SerialNumber.Text(16)+",")
}

// TestDurationBucketsInSeconds: the duration histograms are in seconds, so their
// buckets must be too. With OpenTelemetry's default boundaries (0, 5, 10, ... 10000,
// meant for milliseconds) every request and phase fell in the bucket up to 5 s, and
// a Prometheus quantile of any of them read about 2.5 s.
func TestDurationBucketsInSeconds(t *testing.T) {
	o := newObserved(t)
	ch := mint(t, o.env, "alice@example.com", "alice-laptop")
	require.Equal(t, scep.Success, o.pkcsReq(t, "tx-ok", "alice@example.com", ch).Status)

	var rm metricdata.ResourceMetrics
	require.NoError(t, o.reader.Collect(context.Background(), &rm))
	seen := map[string]int{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != crp.MetricRequestDuration && m.Name != crp.MetricPhaseDuration {
				continue
			}
			for _, p := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				seen[m.Name]++
				require.Positive(t, p.Bounds[0], m.Name)
				require.LessOrEqual(t, p.Bounds[0], 0.001, "%s: the first bucket resolves under a millisecond", m.Name)
				require.LessOrEqual(t, p.Bounds[len(p.Bounds)-1], 300.0, "%s: bounds in seconds", m.Name)
				// Each observation (well under a second here, under 2.5 s on a loaded
				// machine running -race) lands in a bucket that ends by 2.5 s; in
				// OpenTelemetry's default boundaries it would be the one up to 5.
				for i, c := range p.BucketCounts {
					if c > 0 {
						require.Less(t, i, len(p.Bounds), "%s: observed past every bound", m.Name)
						require.LessOrEqual(t, p.Bounds[i], 2.5, "%s %v: %v s observed in the bucket up to %v s",
							m.Name, attrString(p.Attributes), p.Sum, p.Bounds[i])
					}
				}
			}
		}
	}
	require.Positive(t, seen[crp.MetricRequestDuration])
	require.Positive(t, seen[crp.MetricPhaseDuration])
}
