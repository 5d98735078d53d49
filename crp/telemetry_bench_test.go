package crp_test

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/internal/cputime"
	"github.com/scepkit/scepkit/scep"
)

// BenchmarkEnrollTelemetry is BenchmarkEnroll's RSA2048-AES256-SHA256 case on three
// gateways sharing one CA and RA: two without telemetry and one with a real
// OpenTelemetry SDK meter (every instrument aggregated, as a Prometheus or OTLP
// reader collects them) and tracer (every span sampled and handed to a batch
// processor: "batch" as an OTLP exporter is usually set up, or "sync", a simple
// processor that hands each span to the exporter as it ends). Each iteration sends
// one request to each, in rotating order, so that all three see the same machine load. It reports wall and CPU time (getrusage: every
// thread, the span processor's included) per request, the telemetry overhead in
// percent (target: under 3) and, as the noise floor of the same run, the difference
// between the two gateways without telemetry ("aa-").
//
// The batch processor wakes its goroutine when it is handed a span; on a loaded
// machine those wake-ups, not the instrumentation, were most of the "batch" overhead
// (compare "sync"). The spans of one SCEP request are therefore handed over together
// when the request ends (package internal/spanend): one wake-up per request instead of
// one per span. Eight runs of each build side by side, 200 requests per gateway each,
// on the 2-core machine shared with other jobs: cpu-overhead-% of "batch" went from a
// median of 5.8 (3.7 to 7.6) to 2.5 (1.8 to 5.4), of "sync" from 2.5 to 1.5, with
// aa-cpu-% (the floor) within ±2.6 in both; wall-time overhead stays noisy there.
func BenchmarkEnrollTelemetry(b *testing.B) {
	for _, tc := range []struct {
		name string
		proc func() sdktrace.SpanProcessor
	}{
		{"batch", func() sdktrace.SpanProcessor { return sdktrace.NewBatchSpanProcessor(tracetest.NewNoopExporter()) }},
		{"sync", func() sdktrace.SpanProcessor { return sdktrace.NewSimpleSpanProcessor(tracetest.NewNoopExporter()) }},
	} {
		b.Run(tc.name, func(b *testing.B) { benchTelemetry(b, tc.proc()) })
	}
}

func benchTelemetry(b *testing.B, proc sdktrace.SpanProcessor) {
	keys(b)
	plain, err := crptest.New(crptest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	control, err := crptest.New(crptest.Options{Share: plain})
	if err != nil {
		b.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSpanProcessor(proc))
	defer mp.Shutdown(context.Background())
	defer tp.Shutdown(context.Background())
	otel, err := crptest.New(crptest.Options{Share: plain, MeterProvider: mp, TracerProvider: tp})
	if err != nil {
		b.Fatal(err)
	}
	envs := []*crptest.Env{plain, control, otel}
	msgs := make([][][]byte, len(envs))
	for i, e := range envs {
		e.RP.Notifier = nil
		msgs[i] = prebuild(b, e, b.N, scep.AES256CBC)
	}
	wall := make([]time.Duration, len(envs))
	cpu := make([]time.Duration, len(envs))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k := range envs {
			j := (i + k) % len(envs)
			c0, t0 := cputime.Now(), time.Now()
			rec := serve(envs[j].Server, msgs[j][i])
			cpu[j] += cputime.Now() - c0
			wall[j] += time.Since(t0)
			checkReply(b, rec)
		}
	}
	b.StopTimer()
	for _, e := range envs {
		if e.Issuer.Count() != b.N {
			b.Fatalf("%d certificates for %d requests", e.Issuer.Count(), b.N)
		}
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) }
	pct := func(a, base time.Duration) float64 { return 100 * (float64(a)/float64(base) - 1) }
	b.ReportMetric(per(wall[0]), "plain-ns/op")
	b.ReportMetric(per(wall[2]), "otel-ns/op")
	b.ReportMetric(per(cpu[0]), "plain-cpu-ns/op")
	b.ReportMetric(per(cpu[2]), "otel-cpu-ns/op")
	b.ReportMetric(pct(wall[2], wall[0]), "overhead-%")
	b.ReportMetric(pct(cpu[2], cpu[0]), "cpu-overhead-%")
	b.ReportMetric(pct(wall[1], wall[0]), "aa-%")
	b.ReportMetric(pct(cpu[1], cpu[0]), "aa-cpu-%")
}
