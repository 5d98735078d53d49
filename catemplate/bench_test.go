package catemplate

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/scepkit/scepkit/internal/cputime"
)

// rsaFloor measures, in the same run, the CPU cost of one raw RSA-2048 PKCS#1 v1.5
// SHA-256 signature with key: the least any signing path can cost.
func rsaFloor(b *testing.B, key *rsa.PrivateKey) time.Duration {
	b.Helper()
	digest := sha256.Sum256([]byte("scepkit floor"))
	const n = 64
	start := cputime.Now()
	for range n {
		if _, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, digest[:]); err != nil {
			b.Fatal(err)
		}
	}
	return (cputime.Now() - start) / n
}

// reportFloor reports the floor and x-floor: CPU time per operation divided by the
// floor's CPU time per signature. CPU time (getrusage) rather than wall time keeps the
// ratio honest on a loaded machine; cpu-ns/op is reported beside it.
func reportFloor(b *testing.B, floor, cpuStart time.Duration) {
	perOp := float64((cputime.Now() - cpuStart).Nanoseconds()) / float64(b.N)
	b.ReportMetric(float64(floor.Nanoseconds()), "floor-ns/op")
	b.ReportMetric(perOp, "cpu-ns/op")
	b.ReportMetric(perOp/float64(floor.Nanoseconds()), "x-floor")
}

// BenchmarkApply: template application for an RSA-2048 CSR (includes verifying the
// CSR signature and drawing the serial; no signing).
func BenchmarkApply(b *testing.B) {
	keys(b)
	ca := testCA(b, 0)
	r := render(b)
	csr := makeCSR(b, r, rsa2048)
	t := clientTemplate()
	floor := rsaFloor(b, ca.Signer.(*rsa.PrivateKey))
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cputime.Now()
	for b.Loop() {
		if _, err := Apply(t, csr, r, ca.Certificate, testNow, nil); err != nil {
			b.Fatal(err)
		}
	}
	reportFloor(b, floor, cpu)
}

// BenchmarkCASign: issuing one certificate from an applied template with an RSA-2048
// CA key, including crypto/x509's check of the fresh signature and parsing the result.
func BenchmarkCASign(b *testing.B) {
	keys(b)
	ca := testCA(b, 0)
	r := render(b)
	csr := makeCSR(b, r, rsa2048)
	tmpl, err := Apply(clientTemplate(), csr, r, ca.Certificate, testNow, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	floor := rsaFloor(b, ca.Signer.(*rsa.PrivateKey))
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cputime.Now()
	for b.Loop() {
		if _, err := ca.Sign(ctx, tmpl, csr.PublicKey); err != nil {
			b.Fatal(err)
		}
	}
	reportFloor(b, floor, cpu)
}

// BenchmarkCASignParallel: the same from GOMAXPROCS goroutines (Sign takes no lock).
func BenchmarkCASignParallel(b *testing.B) {
	keys(b)
	ca := testCA(b, 0)
	r := render(b)
	csr := makeCSR(b, r, rsa2048)
	tmpl, err := Apply(clientTemplate(), csr, r, ca.Certificate, testNow, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := ca.Sign(ctx, tmpl, csr.PublicKey); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
