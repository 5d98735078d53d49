package crp_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
)

// Whole-stack benchmarks: a PKCSReq through scep.Server's HTTP handler, the envelope,
// the challenge, the CRP's three phases, the template, the built-in CA and the CertRep.
// Each reports the unavoidable private-key operations timed alternately in the same run
// as "floor-ns/op" and the ratio as "x-floor".

var (
	benchKeysOnce sync.Once
	benchKeys     []*rsa.PrivateKey
)

// devicePool returns RSA-2048 device keys, made once.
func devicePool(b testing.TB) []*rsa.PrivateKey {
	benchKeysOnce.Do(func() {
		for i := 0; i < 8; i++ {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			benchKeys = append(benchKeys, k)
		}
	})
	return benchKeys
}

// prebuild makes n distinct PKCSReqs, each with its own challenge and transactionID,
// so that the timed loop does only the gateway's work.
func prebuild(b testing.TB, env *crptest.Env, n int, c scep.Cipher) [][]byte {
	b.Helper()
	keys := devicePool(b)
	selfs := make([]*x509.Certificate, len(keys))
	for i, k := range keys {
		s, err := scep.SelfSigned(k, pkix.Name{CommonName: "alice@example.com"}, nil)
		if err != nil {
			b.Fatal(err)
		}
		selfs[i] = s
	}
	out := make([][]byte, n)
	for i := range out {
		k := keys[i%len(keys)]
		ch := mint(b, env, "alice@example.com", "alice-laptop")
		der := csr(b, k, "alice@example.com", ch).Raw
		msg, _, err := scep.NewRequest(scep.RequestOptions{Type: scep.PKCSReq, TransactionID: fmt.Sprintf("bench-%d", i),
			Payload: der, Recipient: env.RA.EncryptionCertificate, Cipher: c, Digest: crypto.SHA256,
			SignerCert: selfs[i%len(keys)], Signer: k})
		if err != nil {
			b.Fatal(err)
		}
		out[i] = msg
	}
	return out
}

// serveOne runs one PKIOperation POST through h and checks the reply.
func serveOne(b *testing.B, h http.Handler, msg []byte) {
	checkReply(b, serve(h, msg))
}

// serve is the gateway's part of one enrollment: the HTTP request handled, the CertRep
// written.
func serve(h http.Handler, msg []byte) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/scep?operation=PKIOperation", bytes.NewReader(msg)))
	return rec
}

// checkReply is the device's part: the CertRep parsed and its status checked. The
// whole-stack benchmark keeps it out of the gateway's timing.
func checkReply(b *testing.B, rec *httptest.ResponseRecorder) {
	if rec.Code != http.StatusOK {
		b.Fatalf("HTTP %d", rec.Code)
	}
	rep, err := scep.ParsePKIMessage(rec.Body.Bytes(), scep.ParseOptions{})
	if err != nil || rep.Status != scep.Success {
		b.Fatalf("CertRep %v %v (%v)", rep.Status, rep.FailInfo, err)
	}
}

// floorOnce runs the private-key operations no gateway can avoid: one RSA decrypt of a
// content key with the RA encryption key, one signature with the CA key (the
// certificate), one with the RA signing key (the CertRep).
func floorOnce(b *testing.B, env *crptest.Env, ek []byte, keyLen int, digest []byte) {
	if _, err := env.RA.Decrypter.Decrypt(rand.Reader, ek, &rsa.PKCS1v15DecryptOptions{SessionKeyLen: keyLen}); err != nil {
		b.Fatal(err)
	}
	for _, s := range []crypto.Signer{env.CA.Signer, env.RA.Signer} {
		if _, err := s.Sign(rand.Reader, digest, crypto.SHA256); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEnroll(b *testing.B) {
	cases := []struct {
		name   string
		ecdsa  bool
		cipher scep.Cipher
		keyLen int
	}{
		{"RSA2048-AES256-SHA256", false, scep.AES256CBC, 32},
		{"ECDSAP256-AES256-SHA256", true, scep.AES256CBC, 32},
		{"RSA2048-3DES-SHA256", false, scep.DES3CBC, 24},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			keys(b)
			env, err := crptest.New(crptest.Options{ECDSA: tc.ecdsa})
			if err != nil {
				b.Fatal(err)
			}
			env.RP.Notifier = nil
			msgs := prebuild(b, env, b.N, tc.cipher)
			ek, err := rsa.EncryptPKCS1v15(rand.Reader, env.RA.EncryptionCertificate.PublicKey.(*rsa.PublicKey), make([]byte, tc.keyLen))
			if err != nil {
				b.Fatal(err)
			}
			digest := sha256.Sum256([]byte("floor"))
			var full, floor time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				rec := serve(env.Server, msgs[i])
				t1 := time.Now()
				floorOnce(b, env, ek, tc.keyLen, digest[:])
				t2 := time.Now()
				checkReply(b, rec)
				full += t1.Sub(t0)
				floor += t2.Sub(t1)
			}
			b.StopTimer()
			if env.Issuer.Count() != b.N {
				b.Fatalf("%d certificates for %d requests", env.Issuer.Count(), b.N)
			}
			b.ReportMetric(float64(full.Nanoseconds())/float64(b.N), "enroll-ns/op")
			b.ReportMetric(float64(floor.Nanoseconds())/float64(b.N), "floor-ns/op")
			b.ReportMetric(float64(full)/float64(floor), "x-floor")
		})
	}
}

// BenchmarkEnrollParallel runs enrollments from GOMAXPROCS goroutines (use -cpu 1,2 to
// see scaling): no global lock on the path.
func BenchmarkEnrollParallel(b *testing.B) {
	keys(b)
	env, err := crptest.New(crptest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	env.RP.Notifier = nil
	msgs := prebuild(b, env, b.N, scep.AES256CBC)
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			serveOne(b, env.Server, msgs[next.Add(1)-1])
		}
	})
}

// TestMemoryPerInFlightEnrollment holds many enrollments open at once inside the CRP
// (a check that blocks in phase 3) and measures the heap they hold: target ≤ 64 KiB
// each.
func TestMemoryPerInFlightEnrollment(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	keys(t)
	env, err := crptest.New(crptest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	msgs := prebuild(t, env, n, scep.AES256CBC)
	arrived := make(chan struct{}, n)
	release := make(chan struct{})
	env.RP.Checks = append(env.RP.Checks, crpHold(arrived, release))
	runtime.GC()
	var before, during runtime.MemStats
	runtime.ReadMemStats(&before)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(m []byte) {
			defer wg.Done()
			rec := httptest.NewRecorder()
			env.Server.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/scep?operation=PKIOperation", bytes.NewReader(m)))
		}(msgs[i])
	}
	for i := 0; i < n; i++ {
		<-arrived
	}
	runtime.GC()
	runtime.ReadMemStats(&during)
	close(release)
	wg.Wait()
	per := (int64(during.HeapAlloc) - int64(before.HeapAlloc)) / n
	t.Logf("heap held per in-flight enrollment: %d bytes (%d requests held at once)", per, n)
	if per > 64<<10 {
		t.Errorf("%d bytes per in-flight enrollment, target ≤ 64 KiB", per)
	}
	if env.Issuer.Count() != n {
		t.Fatalf("%d certificates for %d requests", env.Issuer.Count(), n)
	}
}

// crpHold is a check that reports its arrival and waits for release: it keeps a request
// in flight, its state allocated, in the middle of the CRP.
func crpHold(arrived chan<- struct{}, release <-chan struct{}) crp.Check {
	return crp.Check{Name: "hold", Phase: crp.PhaseMapping, Func: func(ctx context.Context, _ *crp.Transaction) error {
		arrived <- struct{}{}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
}

// BenchmarkEnrollStages times each stage of one enrollment on its own, so that the one
// that dominates the overhead above the floor is visible.
func BenchmarkEnrollStages(b *testing.B) {
	keys(b)
	env, err := crptest.New(crptest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	msg := prebuild(b, env, 1, scep.AES256CBC)[0]
	parsed, err := scep.ParsePKIMessage(msg, scep.ParseOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ra := scep.Recipient{Certificate: env.RA.EncryptionCertificate, Key: env.RA.Decrypter}
	if err := parsed.Decrypt(ra); err != nil {
		b.Fatal(err)
	}
	rendered, err := env.Rendered(ctx, "alice@example.com", "alice-laptop")
	if err != nil {
		b.Fatal(err)
	}
	tmpl := env.Templates[crptest.TemplateName]
	certTmpl, err := catemplateApply(tmpl, parsed.CSR, rendered, env)
	if err != nil {
		b.Fatal(err)
	}
	issued, err := env.CA.Sign(ctx, certTmpl, parsed.CSR.PublicKey)
	if err != nil {
		b.Fatal(err)
	}
	replier := &scep.Replier{Cert: env.RA.SigningCertificate, Key: env.RA.Signer}
	stages := []struct {
		name string
		run  func() error
	}{
		{"parse+verify-signature", func() error { _, err := scep.ParsePKIMessage(msg, scep.ParseOptions{}); return err }},
		{"decrypt", func() error {
			m, err := scep.ParsePKIMessage(msg, scep.ParseOptions{})
			if err != nil {
				return err
			}
			return m.Decrypt(ra)
		}},
		{"csr-proof-of-possession", func() error { return parsed.CSR.CheckSignature() }},
		{"challenge-verify", func() error { _, err := env.Verifier.Check(ctx, parsed.ChallengePassword); return err }},
		{"profile-render+check", func() error { return checkProfile(env, parsed.CSR) }},
		{"template-apply", func() error { _, err := catemplateApply(tmpl, parsed.CSR, rendered, env); return err }},
		{"sign-certificate", func() error { _, err := env.CA.Sign(ctx, certTmpl, parsed.CSR.PublicKey); return err }},
		{"build-certrep", func() error { _, err := replier.Success(parsed, issued); return err }},
	}
	for _, s := range stages {
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if err := s.run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
