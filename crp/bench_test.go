package crp_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"testing"
	"time"

	"github.com/scepkit/scepkit/crp"
)

// BenchmarkCRP measures the registration point's own work for one enrollment: CSR
// proof of possession, challenge verification and claim, directory, registry, profile
// render and check, template resolution and application, records and trace. The CA's
// signature is left out (the Issuer returns a ready certificate) and so is the SCEP
// envelope. Beside it, in the same run, one RSA-2048 signature: metric "sig-fraction"
// is the CRP's cost as a fraction of it (target < 0.10).
func BenchmarkCRP(b *testing.B) {
	env := newEnv(b)
	ready, err := env.CA.Sign(context.Background(), &x509.Certificate{SerialNumber: bigOne(),
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}, deviceKey.Public())
	if err != nil {
		b.Fatal(err)
	}
	env.Issuer.Next = crp.IssuerFunc(func(context.Context, *crp.IssueRequest) (*x509.Certificate, error) {
		return ready, nil
	})
	env.RP.Notifier = nil
	req := csr(b, deviceKey, "alice@example.com", "")
	challenges := make([]string, b.N)
	ids := make([]string, b.N)
	for i := range challenges {
		challenges[i] = mint(b, env, "alice@example.com", "alice-laptop")
		ids[i] = fmt.Sprintf("bench-%d", i)
	}
	ctx := context.Background()
	digest := sha256.Sum256([]byte("floor"))
	// The CRP's work and the RSA signature alternate, so that both see the same load.
	var work, sig time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: ids[i], CSR: req, Challenge: challenges[i]}); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := env.CA.Signer.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
		work += t1.Sub(t0)
		sig += time.Since(t1)
	}
	b.StopTimer()
	b.ReportMetric(float64(work.Nanoseconds())/float64(b.N), "crp-ns/op")
	b.ReportMetric(float64(sig.Nanoseconds())/float64(b.N), "rsa-sign-ns/op")
	b.ReportMetric(float64(work)/float64(sig), "sig-fraction")
}
