package crp

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/scepkit/scepkit/internal/spanend"
	"github.com/scepkit/scepkit/scep"
)

// Instrumentation is the name of the OpenTelemetry meter and tracer of this package.
const Instrumentation = "github.com/scepkit/scepkit/crp"

// Metric names, for dashboards and alerts. Durations are in seconds. Attributes are
// listed beside each; none carries a challenge, a user or a device.
const (
	// MetricEnrollments counts enrollment requests (PKCSReq, RenewalReq, Enroll) by
	// outcome (issued, pending, failed), phase and reason (failed only), and renewal.
	MetricEnrollments = "scepkit.crp.enrollments"
	// MetricRequestDuration is the time to decide one request, by message type and
	// outcome.
	MetricRequestDuration = "scepkit.crp.request.duration"
	// MetricPhaseDuration is the time one phase took, by phase and outcome (ok,
	// refused).
	MetricPhaseDuration = "scepkit.crp.phase.duration"
	// MetricChallengeClaims counts one-time claims of challenges by result (claimed,
	// replayed, error).
	MetricChallengeClaims = "scepkit.crp.challenge.claims"
	// MetricStoreErrors counts failed store calls by store (transactions,
	// certificates, revocations, replay).
	MetricStoreErrors = "scepkit.crp.store.errors"
	// MetricDecisions counts decisions on pending requests by decision (approve,
	// reject) and result (ok, error).
	MetricDecisions = "scepkit.crp.pending.decisions"
)

// Attribute keys of the metrics and spans, beside scep.AttrMessageType and
// scep.AttrTransaction.
const (
	AttrOutcome   = attribute.Key("scepkit.outcome")
	AttrPhase     = attribute.Key("scepkit.phase")
	AttrReason    = attribute.Key("scepkit.reason")
	AttrRenewal   = attribute.Key("scepkit.renewal")
	AttrChallenge = attribute.Key("scepkit.challenge.fingerprint")
	AttrStore     = attribute.Key("scepkit.store")
	AttrResult    = attribute.Key("scepkit.result")
	AttrDecision  = attribute.Key("scepkit.decision")
)

// durationBuckets are the bucket boundaries of the duration histograms, in seconds:
// from a phase of a few microseconds to a request an external validator holds for
// minutes. OpenTelemetry's default boundaries (0 to 10000) are meant for
// milliseconds: in seconds every request fell in the bucket up to 5 s.
var durationBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
	0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 180}

const numPhases = int(PhaseNotify) + 1

// telemetry holds the instruments, made once from the registration point's
// providers. Attribute sets known in advance are built here, so that recording them
// costs no allocation.
type telemetry struct {
	tracer    trace.Tracer // nil without a TracerProvider: no span work at all
	enrolls   metric.Int64Counter
	reqDur    metric.Float64Histogram
	phaseDur  metric.Float64Histogram
	claims    metric.Int64Counter
	storeErrs metric.Int64Counter
	decisions metric.Int64Counter

	phaseOK, phaseRefused [numPhases]metric.MeasurementOption
	issued, pending       [2]metric.MeasurementOption // [renewal]
	// requestDone holds the attribute sets of MetricRequestDuration by message type
	// and status.
	requestDone map[requestKey]metric.MeasurementOption
	// phaseNames are the phase spans' names.
	phaseNames [numPhases]string
}

type requestKey struct {
	mt     scep.MessageType
	status scep.PKIStatus
}

func (rp *RegistrationPoint) tel() *telemetry {
	rp.telOnce.Do(func() { rp.telemetry = newTelemetry(rp.MeterProvider, rp.TracerProvider) })
	return rp.telemetry
}

func newTelemetry(mp metric.MeterProvider, tp trace.TracerProvider) *telemetry {
	t := &telemetry{}
	if tp != nil {
		t.tracer = tp.Tracer(Instrumentation)
	}
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	m := mp.Meter(Instrumentation)
	// An instrument that cannot be made is still returned (a no-op), so errors are
	// ignored: metrics never stop a request.
	t.enrolls, _ = m.Int64Counter(MetricEnrollments, metric.WithUnit("{request}"),
		metric.WithDescription("Enrollment requests by outcome, phase and reason."))
	t.reqDur, _ = m.Float64Histogram(MetricRequestDuration, metric.WithUnit("s"),
		metric.WithDescription("Time to decide one SCEP request."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	t.phaseDur, _ = m.Float64Histogram(MetricPhaseDuration, metric.WithUnit("s"),
		metric.WithDescription("Time one phase of the registration point took."),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	t.claims, _ = m.Int64Counter(MetricChallengeClaims, metric.WithUnit("{claim}"),
		metric.WithDescription("One-time claims of challenges by result."))
	t.storeErrs, _ = m.Int64Counter(MetricStoreErrors, metric.WithUnit("{error}"),
		metric.WithDescription("Failed store calls by store."))
	t.decisions, _ = m.Int64Counter(MetricDecisions, metric.WithUnit("{decision}"),
		metric.WithDescription("Decisions on pending requests."))
	for p := range numPhases {
		name := AttrPhase.String(Phase(p).String())
		t.phaseOK[p] = metric.WithAttributeSet(attribute.NewSet(name, AttrOutcome.String("ok")))
		t.phaseRefused[p] = metric.WithAttributeSet(attribute.NewSet(name, AttrOutcome.String("refused")))
	}
	t.requestDone = map[requestKey]metric.MeasurementOption{}
	for _, mt := range []scep.MessageType{scep.PKCSReq, scep.RenewalReq, scep.CertPoll, scep.GetCert, scep.GetCRL} {
		for _, st := range []scep.PKIStatus{scep.Success, scep.Failure, scep.Pending} {
			t.requestDone[requestKey{mt, st}] = metric.WithAttributeSet(attribute.NewSet(
				scep.AttrMessageType.String(mt.String()), AttrOutcome.String(st.String())))
		}
	}
	for p := range numPhases {
		t.phaseNames[p] = "crp " + Phase(p).String()
	}
	for i, r := range []bool{false, true} {
		t.issued[i] = metric.WithAttributeSet(attribute.NewSet(AttrOutcome.String(string(OutcomeIssued)), AttrRenewal.Bool(r)))
		t.pending[i] = metric.WithAttributeSet(attribute.NewSet(AttrOutcome.String(string(OutcomePending)), AttrRenewal.Bool(r)))
	}
	return t
}

// startRequest starts the span of one request and returns its context and the
// function that ends it (and records the request's duration).
//
// The request's span and its phase spans are ended together (see package
// internal/spanend): when the request's, or with a scep.Server the HTTP request's,
// span ends, each with the time it really ended.
func (t *telemetry) startRequest(ctx context.Context, name string, mt scep.MessageType, id string) (context.Context, func(status scep.PKIStatus, e *Error)) {
	start := time.Now()
	var span trace.Span
	var batch *spanend.Batch
	if t.tracer != nil {
		ctx, span = t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindInternal),
			trace.WithAttributes(scep.AttrMessageType.String(mt.String()), scep.AttrTransaction.String(id)))
		if span.IsRecording() {
			ctx, batch = spanend.Start(ctx)
		}
	}
	return ctx, func(status scep.PKIStatus, e *Error) {
		now := time.Now()
		opt, ok := t.requestDone[requestKey{mt, status}]
		if !ok {
			opt = metric.WithAttributes(scep.AttrMessageType.String(mt.String()), AttrOutcome.String(status.String()))
		}
		t.reqDur.Record(ctx, now.Sub(start).Seconds(), opt)
		if span == nil {
			return
		}
		if span.IsRecording() {
			span.SetAttributes(AttrOutcome.String(status.String()))
			if e != nil {
				span.SetAttributes(AttrPhase.String(e.Phase.String()), AttrReason.String(string(e.Reason)))
				span.SetStatus(codes.Error, string(e.Reason))
			}
		}
		spanend.End(ctx, span, now)
		batch.Flush()
	}
}

// startPhase starts the span of one phase, a child of the request's.
func (t *telemetry) startPhase(ctx context.Context, p Phase) (context.Context, func(e *Error)) {
	start := time.Now()
	i := int(p)
	if i < 0 || i >= numPhases {
		i = int(PhaseGateway)
	}
	var span trace.Span
	if parent := trace.SpanFromContext(ctx); t.tracer != nil && (parent.IsRecording() || !parent.SpanContext().IsValid()) {
		// A phase of a request whose span is not sampled gets no span.
		ctx, span = t.tracer.Start(ctx, t.phaseNames[i])
	}
	return ctx, func(e *Error) {
		now := time.Now()
		opt := t.phaseOK[i]
		if e != nil {
			opt = t.phaseRefused[i]
		}
		t.phaseDur.Record(ctx, now.Sub(start).Seconds(), opt)
		if span == nil {
			return
		}
		if e != nil {
			span.SetAttributes(AttrReason.String(string(e.Reason)))
			span.SetStatus(codes.Error, string(e.Reason))
		}
		spanend.End(ctx, span, now)
	}
}

// enrollment counts the outcome of one enrollment request.
func (t *telemetry) enrollment(ctx context.Context, renewal bool, status scep.PKIStatus, e *Error) {
	r := 0
	if renewal {
		r = 1
	}
	switch {
	case e != nil:
		t.enrolls.Add(ctx, 1, metric.WithAttributes(AttrOutcome.String(string(OutcomeFailed)),
			AttrPhase.String(e.Phase.String()), AttrReason.String(string(e.Reason)), AttrRenewal.Bool(renewal)))
	case status == scep.Pending:
		t.enrolls.Add(ctx, 1, t.pending[r])
	default:
		t.enrolls.Add(ctx, 1, t.issued[r])
	}
}

// challengeFingerprint puts the challenge's fingerprint (never the challenge) on the
// request's span.
func (t *telemetry) challengeFingerprint(ctx context.Context, fp string) {
	if t.tracer != nil && fp != "" {
		trace.SpanFromContext(ctx).SetAttributes(AttrChallenge.String(fp))
	}
}

func (t *telemetry) claim(ctx context.Context, result string) {
	t.claims.Add(ctx, 1, metric.WithAttributes(AttrResult.String(result)))
}

func (t *telemetry) storeError(ctx context.Context, store string) {
	t.storeErrs.Add(ctx, 1, metric.WithAttributes(AttrStore.String(store)))
}

func (t *telemetry) decision(ctx context.Context, decision string, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	t.decisions.Add(ctx, 1, metric.WithAttributes(AttrDecision.String(decision), AttrResult.String(result)))
}
