package crp_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"testing"
	"time"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
)

// BenchmarkCRP measures the registration point's own work for one enrollment: CSR
// proof of possession, challenge verification and claim, directory, registry, profile
// render and check, template resolution and application, records and trace. The CA's
// signature is left out (the Issuer returns a ready certificate) and so is the SCEP
// envelope.
//
// Timed alternately in the same run, so that all see the same load: one RSA-2048
// signature, and the two signature verifications the CRP cannot skip (the challenge's,
// the CSR's), made bare with crypto/ed25519 (or crypto/hmac) and crypto/x509. Metrics:
// "sig-fraction" is the CRP's cost as a fraction of the RSA signature (target < 0.10);
// "verify-fraction" is the part of it those bare verifications account for;
// "own-fraction" is the rest, the CRP's cost above its unavoidable verifications.
//
// Two challenge algorithms: EdDSA, the default (the MDM signs, the gateway holds only
// a public key), and HS256 (the MDM and the gateway share a secret).
func BenchmarkCRP(b *testing.B) {
	for _, alg := range []string{challenge.EdDSA, challenge.HS256} {
		b.Run(alg, func(b *testing.B) { benchCRP(b, alg) })
	}
}

func benchCRP(b *testing.B, alg string) {
	env := newEnv(b)
	ready := readyCertificate(b, env)
	env.Issuer.Next = crp.IssuerFunc(func(context.Context, *crp.IssueRequest) (*x509.Certificate, error) {
		return ready, nil
	})
	env.RP.Notifier = nil

	// The bare verification of a challenge-sized message, as the verifier makes it.
	msg := make([]byte, 300)
	var bareVerify func() bool
	switch alg {
	case challenge.EdDSA:
		key, ok := env.Challenges.Key.(ed25519.PrivateKey)
		if !ok {
			b.Fatalf("MDM key is %T", env.Challenges.Key)
		}
		sig := ed25519.Sign(key, msg)
		pub := key.Public().(ed25519.PublicKey)
		bareVerify = func() bool { return ed25519.Verify(pub, msg, sig) }
	case challenge.HS256:
		secret := make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			b.Fatal(err)
		}
		if err := env.Verifier.Keys.AddSecret("bench-hs256", secret); err != nil {
			b.Fatal(err)
		}
		env.Verifier.Algorithms = []string{challenge.HS256}
		env.Challenges = &challenge.Issuer{Name: env.Challenges.Name, Secret: secret, KeyID: "bench-hs256", Now: env.Challenges.Now}
		m := hmac.New(sha256.New, secret)
		m.Write(msg)
		sum := m.Sum(nil)
		bareVerify = func() bool {
			m := hmac.New(sha256.New, secret)
			m.Write(msg)
			return hmac.Equal(m.Sum(nil), sum)
		}
	}

	req := csr(b, deviceKey, "alice@example.com", "")
	challenges := make([]string, b.N)
	ids := make([]string, b.N)
	for i := range challenges {
		challenges[i] = mint(b, env, "alice@example.com", "alice-laptop")
		ids[i] = fmt.Sprintf("bench-%d", i)
	}
	ctx := context.Background()
	digest := sha256.Sum256([]byte("floor"))
	var work, sig, verify time.Duration
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
		t2 := time.Now()
		if !bareVerify() || req.CheckSignature() != nil {
			b.Fatal("bare verification failed")
		}
		work += t1.Sub(t0)
		sig += t2.Sub(t1)
		verify += time.Since(t2)
	}
	b.StopTimer()
	b.ReportMetric(float64(work.Nanoseconds())/float64(b.N), "crp-ns/op")
	b.ReportMetric(float64(sig.Nanoseconds())/float64(b.N), "rsa-sign-ns/op")
	b.ReportMetric(float64(work)/float64(sig), "sig-fraction")
	b.ReportMetric(float64(verify)/float64(sig), "verify-fraction")
	b.ReportMetric(float64(work-verify)/float64(sig), "own-fraction")
}

// readyCertificate is a certificate every enrollment of alice's laptop in the
// benchmark accepts as its Issuer's: what a decision says (subject, key usages, key),
// valid from an hour after now for 300 days, inside the validity of any decision made
// during the run. Its completion checks it.
func readyCertificate(b *testing.B, env *crptest.Env) *x509.Certificate {
	b.Helper()
	ctx := context.Background()
	ch := mint(b, env, "alice@example.com", "alice-laptop")
	d, err := env.RP.Decide(ctx, &crp.EnrollRequest{TransactionID: "bench-template",
		CSR: csr(b, deviceKey, "alice@example.com", ch), Challenge: ch})
	if err != nil {
		b.Fatal(err)
	}
	tmpl := *d.Template
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(time.Hour), time.Now().Add(300*24*time.Hour)
	ready, err := env.CA.Sign(ctx, &tmpl, deviceKey.Public())
	if err != nil {
		b.Fatal(err)
	}
	if err := env.RP.Complete(ctx, &crp.Completion{TransactionID: d.TransactionID, Certificate: ready}); err != nil {
		b.Fatal(err)
	}
	return ready
}
