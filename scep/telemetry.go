package scep

import (
	"context"
	"crypto/x509"
	"net/http"
	"time"

	otelattr "go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/scepkit/scepkit/internal/spanend"
)

// Instrumentation is the name of the OpenTelemetry meter and tracer of this package.
const Instrumentation = "github.com/scepkit/scepkit/scep"

// Metric names of a [Server] with a MeterProvider.
const (
	// MetricRequests counts HTTP requests by scep.operation and, for PKIOperation,
	// scep.message_type (an RFC 8894 name, or "unknown"), scep.status (SUCCESS,
	// PENDING, FAILURE, "overloaded" when refused 503 for want of a turn or of room
	// for its answer to wait (the CertRep built then is not counted), or
	// "rejected" when no CertRep could be addressed) and scep.fail_info. A request
	// refused before its message reaches the Responder (a query or body too long, a
	// body that cannot be read or does not arrive in time, a wrong method, a message
	// that cannot be decoded or parsed) counts as "rejected" with
	// http.response.status_code, the HTTP status it was answered with.
	MetricRequests = "scepkit.scep.requests"
	// MetricCertificateExpiry is the time left, in seconds, before each certificate
	// the server uses expires (negative once expired), by scepkit.certificate.role
	// (ca, ra-signing, ra-encryption, and before a Rollover's switch next-ca,
	// next-ra-signing, next-ra-encryption) and scepkit.certificate.serial (hex).
	// Alert on it: an expired RA certificate stops every enrollment.
	MetricCertificateExpiry = "scepkit.certificate.expiry"
	// MetricRollover is, for a server with a Rollover, the time in seconds from its
	// switch: negative before it, zero or more once the server answers with the next
	// CA and RA. The server also logs "scep: rolled over to the next CA and RA" on
	// the first request it answers with them.
	MetricRollover = "scepkit.scep.rollover"
)

// Attribute keys of the server's metrics and spans.
const (
	AttrOperation   = otelattr.Key("scep.operation")
	AttrMessageType = otelattr.Key("scep.message_type")
	AttrTransaction = otelattr.Key("scep.transaction_id")
	AttrStatus      = otelattr.Key("scep.status")
	AttrFailInfo    = otelattr.Key("scep.fail_info")
	AttrCertRole    = otelattr.Key("scepkit.certificate.role")
	AttrCertSerial  = otelattr.Key("scepkit.certificate.serial")
	// AttrHTTPStatus is the HTTP status code of a request counted as "rejected".
	AttrHTTPStatus = otelattr.Key("http.response.status_code")
)

type serverTelemetry struct {
	tracer   trace.Tracer // nil without a TracerProvider
	requests metric.Int64Counter
	reg      metric.Registration
}

// telemetry returns the server's instruments, made on first use (by Validate or the
// first request).
func (s *Server) telemetry() *serverTelemetry {
	s.telOnce.Do(func() {
		t := &serverTelemetry{}
		if s.TracerProvider != nil {
			t.tracer = s.TracerProvider.Tracer(Instrumentation)
		}
		mp := s.MeterProvider
		if mp == nil {
			mp = metricnoop.NewMeterProvider()
		}
		m := mp.Meter(Instrumentation)
		t.requests, _ = m.Int64Counter(MetricRequests, metric.WithUnit("{request}"),
			metric.WithDescription("SCEP HTTP requests by operation, message type, status and failInfo."))
		if s.MeterProvider != nil {
			expiry, err := m.Float64ObservableGauge(MetricCertificateExpiry, metric.WithUnit("s"),
				metric.WithDescription("Seconds before each CA and RA certificate expires."))
			rollover, rerr := m.Float64ObservableGauge(MetricRollover, metric.WithUnit("s"),
				metric.WithDescription("Seconds since the switch to the next CA and RA (negative before it)."))
			if err == nil && rerr == nil {
				t.reg, _ = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
					now := s.now()
					for _, rc := range s.roleCerts() {
						o.ObserveFloat64(expiry, rc.cert.NotAfter.Sub(now).Seconds(), metric.WithAttributes(
							AttrCertRole.String(rc.role), AttrCertSerial.String(rc.cert.SerialNumber.Text(16))))
					}
					if s.Rollover != nil {
						o.ObserveFloat64(rollover, now.Sub(s.Rollover.At).Seconds())
					}
					return nil
				}, expiry, rollover)
			}
		}
		s.tel = t
	})
	return s.tel
}

// Close unregisters what the server registered with its MeterProvider (the
// callback that reports its certificates' expiry), so that a Server replaced by
// another (a reload with a new RA, say) stops reporting certificates no longer in use.
// It does not stop the server from answering requests, which go on being counted;
// call it once the Server is out of service. Close on a Server without a
// MeterProvider, or a second Close, does nothing.
func (s *Server) Close() error {
	t := s.telemetry()
	s.telMu.Lock()
	defer s.telMu.Unlock()
	if t.reg == nil {
		return nil
	}
	err := t.reg.Unregister()
	t.reg = nil
	return err
}

type roleCert struct {
	role string
	cert *x509.Certificate
}

// roleCerts lists the certificates the server depends on, each once, with its role.
func (s *Server) roleCerts() []roleCert {
	var out []roleCert
	seen := map[string]bool{}
	add := func(role string, c *x509.Certificate) {
		if c == nil || seen[role+string(c.Raw)] {
			return
		}
		seen[role+string(c.Raw)] = true
		out = append(out, roleCert{role, c})
	}
	now := s.now()
	cur, _ := s.sets(now)
	for _, c := range cur.caCerts {
		add("ca", c)
	}
	add("ra-signing", cur.signerCert)
	for _, r := range cur.recipients {
		add("ra-encryption", r.Certificate)
	}
	if s.Rollover != nil && !s.RolledOver(now) {
		next := s.Rollover.set()
		for _, c := range next.caCerts {
			add("next-ca", c)
		}
		add("next-ra-signing", next.signerCert)
		for _, r := range next.recipients {
			add("next-ra-encryption", r.Certificate)
		}
	}
	for _, c := range s.NextCACerts {
		add("next-ca", c)
	}
	return out
}

// startSpan starts the span of one HTTP request when tracing, and returns r with its
// context and the function that ends the span. A PKIOperation's span ends together
// with the Responder's spans under it (see package internal/spanend).
func (t *serverTelemetry) startSpan(r *http.Request, op string) (*http.Request, func()) {
	if t.tracer == nil {
		return r, nil
	}
	name := "scep " + op
	switch op {
	case "PKIOperation":
		name = "scep PKIOperation"
	case "GetCACaps":
		name = "scep GetCACaps"
	case "GetCACert":
		name = "scep GetCACert"
	}
	ctx, span := t.tracer.Start(r.Context(), name, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(AttrOperation.String(op)))
	if op != "PKIOperation" || !span.IsRecording() {
		return r.WithContext(ctx), func() { span.End() }
	}
	ctx, batch := spanend.Start(ctx)
	return r.WithContext(ctx), func() {
		spanend.End(ctx, span, time.Now())
		batch.Flush()
	}
}

// pkiOperation records one PKIOperation's outcome on the span and the counter.
func (t *serverTelemetry) pkiOperation(ctx context.Context, msg *PKIMessage, status string, info string) {
	attrs := []otelattr.KeyValue{AttrOperation.String("PKIOperation"), AttrStatus.String(status)}
	if msg != nil {
		attrs = append(attrs, AttrMessageType.String(messageTypeLabel(msg.MessageType)))
	}
	if info != "" {
		attrs = append(attrs, AttrFailInfo.String(info))
	}
	t.requests.Add(ctx, 1, metric.WithAttributes(attrs...))
	if t.tracer == nil {
		return
	}
	span := trace.SpanFromContext(ctx)
	if msg != nil {
		span.SetAttributes(AttrTransaction.String(msg.TransactionID))
	}
	span.SetAttributes(attrs[1:]...)
	if status == "FAILURE" {
		span.SetStatus(codes.Error, status+" "+info)
	}
}

// rejected counts a request refused before its message reached the Responder, by
// operation (a label from a fixed set) and the HTTP status code it was answered with,
// and marks its span, if any, as failed.
func (t *serverTelemetry) rejected(ctx context.Context, op string, code int) {
	attrs := []otelattr.KeyValue{AttrOperation.String(op), AttrStatus.String("rejected"), AttrHTTPStatus.Int(code)}
	t.requests.Add(ctx, 1, metric.WithAttributes(attrs...))
	if t.tracer == nil {
		return
	}
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(attrs[1:]...)
	span.SetStatus(codes.Error, "rejected "+http.StatusText(code))
}

// operation counts a request other than PKIOperation.
func (t *serverTelemetry) operation(ctx context.Context, op string) {
	t.requests.Add(ctx, 1, metric.WithAttributes(AttrOperation.String(op)))
}

// messageTypeLabel names t from a fixed set, "unknown" for any number that is no RFC 8894
// message type: the requester chooses it, and each label value is a time series.
func messageTypeLabel(t MessageType) string {
	if t.known() || t == UpdateReq {
		return t.String()
	}
	return "unknown"
}
