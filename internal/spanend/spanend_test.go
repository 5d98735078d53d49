package spanend

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestEndedTogetherWithTheirTimes: spans ended under a Batch reach the processor
// only at Flush, each with the time it ended; a nested Start leaves the flush to the
// outer Batch; a span ended after Flush, or without a Batch, ends at once.
func TestEndedTogetherWithTheirTimes(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tr := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("test")
	ctx, batch := Start(context.Background())
	if batch == nil {
		t.Fatal("no Batch")
	}
	inner, nested := Start(ctx)
	if nested != nil || inner != ctx {
		t.Fatal("a nested Start made its own Batch")
	}
	base := time.Now()
	for i := range 3 {
		_, s := tr.Start(ctx, "phase")
		End(ctx, s, base.Add(time.Duration(i)*time.Millisecond))
	}
	if n := len(rec.Ended()); n != 0 {
		t.Fatalf("%d spans ended before Flush", n)
	}
	batch.Flush()
	ended := rec.Ended()
	if len(ended) != 3 {
		t.Fatalf("%d spans ended at Flush, want 3", len(ended))
	}
	for i, s := range ended {
		if want := base.Add(time.Duration(i) * time.Millisecond); !s.EndTime().Equal(want) {
			t.Errorf("span %d ended at %v, want %v", i, s.EndTime(), want)
		}
	}
	_, late := tr.Start(ctx, "late")
	End(ctx, late, time.Now())
	_, alone := tr.Start(context.Background(), "alone")
	End(context.Background(), alone, time.Now())
	if n := len(rec.Ended()); n != 5 {
		t.Fatalf("%d spans ended, want 5: after Flush and without a Batch they end at once", n)
	}
	var none *Batch
	none.Flush()
}
