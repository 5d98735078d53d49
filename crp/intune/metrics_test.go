package intune_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/intune"
	"github.com/scepkit/scepkit/crp/intune/intunetest"
	"github.com/stretchr/testify/require"
)

// meteredGateway is newGateway whose Intune client (validator and notifier) reports
// its metrics to the reader returned.
func meteredGateway(t *testing.T) (*gateway, *sdkmetric.ManualReader) {
	t.Helper()
	g := newGateway(t, false)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	c := g.Emu.Client("scepkit-test/1.0")
	c.MeterProvider = mp
	g.RP.Validators = []crp.ChallengeValidator{&intune.Validator{Client: c, Profile: g.RP.Validators[0].(*intune.Validator).Profile}}
	g.RP.Notifier = &intune.Notifier{Client: c, Others: g.Notifier}
	return g, reader
}

// TestCallsCounted: each call to Intune is counted by operation and result, a
// service failure as "service".
func TestCallsCounted(t *testing.T) {
	g, reader := meteredGateway(t)
	ctx := context.Background()

	ch := g.Emu.Challenge(intunetest.Verdict{})
	_, err := g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "tx-ok", CSR: csr(t, "d", ch), Challenge: ch})
	require.NoError(t, err)
	g.Emu.SetFault(intunetest.OpValidate, intunetest.Fault{Status: 500, Times: 1})
	ch = g.Emu.Challenge(intunetest.Verdict{})
	_, err = g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "tx-500", CSR: csr(t, "d", ch), Challenge: ch})
	require.ErrorIs(t, err, intune.ErrService)

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(ctx, &rm))
	got := map[[2]string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != intune.MetricCalls {
				continue
			}
			for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
				op, _ := p.Attributes.Value(attribute.Key("scepkit.intune.operation"))
				res, _ := p.Attributes.Value(attribute.Key("scepkit.result"))
				got[[2]string{op.AsString(), res.AsString()}] += p.Value
			}
		}
	}
	ok, failed := int64(0), int64(0)
	for k, v := range got {
		switch k[1] {
		case "ok":
			ok += v
		case "service":
			failed += v
		default:
			t.Errorf("unexpected result %v: %d", k, v)
		}
	}
	require.Positive(t, ok, "%v", got)
	require.Equal(t, int64(1), failed, "%v", got)
	require.Equal(t, int64(1), got[[2]string{"validateRequest", "service"}], "%v", got)
	require.Equal(t, int64(1), got[[2]string{"discovery", "ok"}], "%v", got)
}

// TestCallDurationBucketsInSeconds: the call duration histogram is in seconds, and
// so are its buckets. With OpenTelemetry's default boundaries (0, 5, 10, ... 10000,
// meant for milliseconds) every call under 5 s fell in one bucket.
func TestCallDurationBucketsInSeconds(t *testing.T) {
	g, reader := meteredGateway(t)
	ctx := context.Background()
	ch := g.Emu.Challenge(intunetest.Verdict{})
	_, err := g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "tx-ok", CSR: csr(t, "d", ch), Challenge: ch})
	require.NoError(t, err)

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(ctx, &rm))
	seen := 0
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != intune.MetricCallDuration {
				continue
			}
			for _, p := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				seen++
				require.Positive(t, p.Bounds[0])
				require.LessOrEqual(t, p.Bounds[len(p.Bounds)-1], 300.0, "bounds in seconds")
				for i, n := range p.BucketCounts {
					if n > 0 {
						require.Less(t, i, len(p.Bounds), "observed past every bound")
						require.LessOrEqual(t, p.Bounds[i], 2.5, "%v s observed in the bucket up to %v s", p.Sum, p.Bounds[i])
					}
				}
			}
		}
	}
	require.Positive(t, seen)
}
