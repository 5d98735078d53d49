package boltstore

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/internal/cputime"
	"github.com/scepkit/scepkit/scep"
)

// BenchmarkEnrollmentWrites: what one enrollment writes, in the order the registration
// point writes it, with 1, 4 and 16 enrollments at once: the challenge claim, then the
// certificate's inventory record and the transaction record in one write
// (RecordIssuance, what crp does with this store: writes=2), or in two (Add then Put,
// what crp does when its certificate and transaction stores differ: writes=3). It
// reports the fsyncs per enrollment (one per journal entry, two per checkpoint,
// the last checkpoint, made by Close, included) and, as
// the floor, the cost of one fdatasync of a file in the same directory measured in the
// same run: without group commit an enrollment would cost 2 or 3 fsyncs, and with a
// bbolt commit per group instead of the journal twice that.
func BenchmarkEnrollmentWrites(b *testing.B) {
	for _, writes := range []int{2, 3} {
		b.Run(fmt.Sprintf("writes=%d", writes), func(b *testing.B) { benchmarkEnrollmentWrites(b, writes) })
	}
}

func benchmarkEnrollmentWrites(b *testing.B, writes int) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	cert, _ := x509.ParseCertificate(der)
	for _, conc := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("concurrent=%d", conc), func(b *testing.B) {
			dir := b.TempDir()
			floor := fsyncCost(b, dir)
			s, err := Open(filepath.Join(dir, "state.db"), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			var next atomic.Int64
			syncs0 := s.syncs.Load()
			b.ResetTimer()
			cpu0 := cputime.Now()
			var wg sync.WaitGroup
			for g := 0; g < conc; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						id := fmt.Sprint("bench-", i)
						c := *cert
						c.SerialNumber = big.NewInt(i)
						if err := s.Claim(ctx, id, time.Now().Add(time.Hour)); err != nil {
							b.Error(err)
							return
						}
						ic := &crp.IssuedCertificate{Certificate: &c, UserID: "u", DeviceID: "d"}
						rec := &crp.Record{TransactionID: id, Status: scep.Success, Certificate: &c,
							Expires: time.Now().Add(time.Hour)}
						if writes == 2 {
							err = s.RecordIssuance(ctx, ic, rec)
						} else if err = s.Add(ctx, ic); err == nil {
							err = s.Put(ctx, rec)
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			// Close makes the last checkpoint: its cost is the enrollments', counted.
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			cpu := cputime.Now() - cpu0
			syncs := s.syncs.Load() - syncs0
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/enrollment")
			b.ReportMetric(float64(syncs)/float64(b.N), "fsyncs/enrollment")
			b.ReportMetric(float64(floor.Microseconds()), "fsync-floor-µs")
		})
	}
}

// fsyncCost measures one write and fdatasync of a 4 KiB page in dir (median of 21).
func fsyncCost(b *testing.B, dir string) time.Duration {
	f, err := os.Create(filepath.Join(dir, "floor"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	page := make([]byte, 4096)
	var d []time.Duration
	for i := 0; i < 21; i++ {
		t0 := time.Now()
		f.WriteAt(page, int64(i%4)*4096)
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		d = append(d, time.Since(t0))
	}
	for i := range d {
		for j := i + 1; j < len(d); j++ {
			if d[j] < d[i] {
				d[i], d[j] = d[j], d[i]
			}
		}
	}
	return d[len(d)/2]
}

// BenchmarkMigration: OpenDir over a state directory of the earlier layout with 500
// certificates (one op: the copy into state.db and the rename). It reports the time
// and fsyncs per certificate next to the floor, one fdatasync measured in the same
// run: copied one commit at a time, a certificate costs two fsyncs, and a directory
// of 100,000 certificates minutes of startup.
func BenchmarkMigration(b *testing.B) {
	const certs = 500
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	ctx := context.Background()
	var syncs int64
	floor := fsyncCost(b, b.TempDir())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		old, err := crp.OpenCertificateDir(filepath.Join(dir, "issued"))
		if err != nil {
			b.Fatal(err)
		}
		for n := int64(1); n <= certs; n++ {
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(n), Subject: pkix.Name{CommonName: "bench"},
				NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
			der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
			c, _ := x509.ParseCertificate(der)
			if err := old.Add(ctx, &crp.IssuedCertificate{Certificate: c, UserID: "u"}); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		s, n, err := OpenDir(dir, nil)
		if err != nil || n != certs {
			b.Fatal(n, err)
		}
		b.StopTimer()
		s.Close()
		syncs += s.syncs.Load()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*certs), "µs/certificate")
	b.ReportMetric(float64(syncs)/float64(b.N*certs), "fsyncs/certificate")
	b.ReportMetric(float64(floor.Microseconds()), "fsync-floor-µs")
}

// BenchmarkSweepBacklog: the commit loop's cost of deleting expired transaction
// records, as after a busy day (records live a day) or a gateway stopped past their
// expiry. b.N records of an enrollment's size (a 2.5 KB request, a 700-byte CSR, a
// signer key) expire; then claims are written one at a time, one commit each, and
// each commit deletes up to 64 of the records, until none is left. ns/op is per
// record deleted, the claims' own cost included; claim-floor-µs is a claim's cost
// with nothing expired and claim-sweeping-µs while the records are deleted, both
// measured in the same run.
func BenchmarkSweepBacklog(b *testing.B) {
	ctx := context.Background()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s, err := Open(filepath.Join(b.TempDir(), "state.db"), &Options{Now: clock})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				r := &crp.Record{TransactionID: fmt.Sprint("old-", i), SignerKey: make([]byte, 294),
					Request: make([]byte, 2500), CSR: make([]byte, 700), Status: scep.Failure, UserID: "u", DeviceID: "d",
					Expires: now.Add(time.Hour)}
				if err := s.Put(ctx, r); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	claims := b.N/sweepBudget + 1
	claim := func(prefix string) time.Duration {
		t0 := time.Now()
		for i := range claims {
			if err := s.Claim(ctx, fmt.Sprint(prefix, i), now.Add(48*time.Hour)); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(t0)
	}
	floor := claim("floor-")
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	b.ResetTimer()
	d := claim("sweep-")
	b.StopTimer()
	var left bool
	if err := s.view(ctx, func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bTx).Cursor().First()
		left = k != nil
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	if left {
		b.Fatal("expired records left after the sweeping claims")
	}
	b.ReportMetric(float64(floor.Microseconds())/float64(claims), "claim-floor-µs")
	b.ReportMetric(float64(d.Microseconds())/float64(claims), "claim-sweeping-µs")
}
