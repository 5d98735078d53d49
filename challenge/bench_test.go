package challenge

import (
	"context"
	"crypto/ed25519"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkVerify measures Check on a default challenge (Ed25519, the
// three GUID claims) and, in the same run, the floor: raw ed25519.Verify
// on the same bytes. x-floor is their ratio (target <= 1.3).
func BenchmarkVerify(b *testing.B) {
	ch, _, err := testIssuer(edKey).Issue(stdRequest)
	if err != nil {
		b.Fatal(err)
	}
	raw, _ := decode(ch)
	dot := strings.LastIndexByte(raw, '.')
	msg := []byte(raw[:dot])
	sig, err := b64.DecodeString(raw[dot+1:])
	if err != nil {
		b.Fatal(err)
	}
	pub := edKey.Public().(ed25519.PublicKey)
	v := benchVerifier(b)
	ctx := context.Background()
	// The floor is timed in the same loop: after each check (timed by b
	// and by hand), one raw verify outside the benchmark timer. The ratio
	// is of the medians, so that bursts of load from other processes
	// (this runs on shared machines) weigh on neither side.
	const maxSamples = 1 << 20
	checks := make([]time.Duration, 0, 1024)
	floors := make([]time.Duration, 0, 1024)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if _, err := v.Check(ctx, ch); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		b.StopTimer()
		ok := ed25519.Verify(pub, msg, sig)
		end := time.Now()
		if !ok {
			b.Fatal("floor: bad signature")
		}
		if len(checks) < maxSamples {
			checks = append(checks, mid.Sub(start))
			floors = append(floors, end.Sub(mid))
		}
		b.StartTimer()
	}
	b.StopTimer()
	check, floor := float64(median(checks)), float64(median(floors))
	b.ReportMetric(check, "check-median-ns")
	b.ReportMetric(floor, "floor-median-ns")
	b.ReportMetric(check/floor, "x-floor")
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

// BenchmarkCheckAllocs reports Check's allocations (BenchmarkVerify stops
// its timer every iteration, which would blur them).
func BenchmarkCheckAllocs(b *testing.B) {
	ch, _, err := testIssuer(edKey).Issue(stdRequest)
	if err != nil {
		b.Fatal(err)
	}
	v := benchVerifier(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Check(ctx, ch); err != nil {
			b.Fatal(err)
		}
	}
}

func benchVerifier(b *testing.B) *Verifier {
	ks := NewKeySet()
	if _, err := ks.AddKey(edKey.Public()); err != nil {
		b.Fatal(err)
	}
	return &Verifier{Keys: ks, Issuer: "mdm.example", Audience: "gw-a.example", Now: fixedClock(t0)}

}

// BenchmarkReplayClaim claims distinct ids from parallel goroutines. The
// clock advances 10 ms per claim and each claim lives one hour, so the
// store holds a steady ~360,000 live entries and evicts as it goes.
func BenchmarkReplayClaim(b *testing.B) {
	var tick atomic.Int64
	s := &MemoryReplayStore{Now: func() time.Time { return t0.Add(time.Duration(tick.Add(1)) * 10 * time.Millisecond) }}
	var seq atomic.Uint64
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var id [16]byte
		base := seq.Add(1) << 40
		n := uint64(0)
		for pb.Next() {
			n++
			x := base + n
			for i := range 8 {
				id[i] = byte(x >> (8 * i))
			}
			id[8] = byte(x * 131) // spread over shards
			until := t0.Add(time.Duration(tick.Load())*10*time.Millisecond + time.Hour)
			if err := s.Claim(ctx, b64.EncodeToString(id[:]), until); err != nil {
				b.Fatal(err)
			}
		}
	})
}
