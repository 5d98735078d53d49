package crp_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// decideAlice decides a fresh request for alice's laptop.
func decideAlice(t *testing.T, env *crptest.Env, txID string) (*crp.Decision, *x509.CertificateRequest, string) {
	t.Helper()
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	req := csr(t, deviceKey, "alice@example.com", ch)
	d, err := env.RP.Decide(context.Background(), &crp.EnrollRequest{TransactionID: txID, CSR: req, Challenge: ch})
	require.NoError(t, err)
	return d, req, ch
}

// TestDecideThenComplete: a decision says what to issue and issues nothing; the
// certificate the caller's CA made from it completes the transaction: recorded,
// notified, known to GetCert and renewals; a second completion is refused.
func TestDecideThenComplete(t *testing.T) {
	var logs bytes.Buffer
	env := newEnv(t)
	env.RP.Logger = slogTo(&logs)
	env.RP.Transactions = &crp.MemoryTransactions{}
	ctx := context.Background()
	d, req, _ := decideAlice(t, env, "tx-1")

	require.Equal(t, 0, env.Issuer.Count(), "Decide issues nothing")
	require.Equal(t, crptest.TemplateName, d.TemplateName)
	require.Equal(t, "alice@example.com", d.UserID)
	require.Equal(t, "alice-laptop", d.DeviceID)
	require.Equal(t, crptest.ProfileID, d.ProfileID)
	require.Equal(t, x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment, d.Template.KeyUsage)
	require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, d.Template.ExtKeyUsage)
	var subject pkix.RDNSequence
	_, err := asn1.Unmarshal(d.Template.RawSubject, &subject)
	require.NoError(t, err)
	require.Equal(t, "CN=alice@example.com", subject.String())
	require.True(t, d.Template.NotAfter.Sub(d.Template.NotBefore) > 300*24*time.Hour)
	require.NotNil(t, d.Template.PublicKey)
	require.Empty(t, env.Notifier.Notifications(), "nobody is told before the outcome")
	_, err = env.RP.Transactions.Get(ctx, "tx-1")
	require.ErrorIs(t, err, crp.ErrNotFound, "nothing recorded before the outcome")

	// The external CA signs what was decided.
	cert, err := env.CA.Sign(ctx, d.Template, req.PublicKey)
	require.NoError(t, err)
	require.NoError(t, env.RP.Complete(ctx, &crp.Completion{TransactionID: "tx-1", CSR: req, Certificate: cert}))

	n := env.Notifier.Notifications()
	require.Len(t, n, 1)
	require.Equal(t, crp.OutcomeIssued, n[0].Outcome)
	require.Equal(t, cert.SerialNumber, n[0].Serial)
	rec, err := env.RP.Transactions.Get(ctx, "tx-1")
	require.NoError(t, err)
	require.Equal(t, scep.Success, rec.Status)
	require.Equal(t, cert.Raw, rec.Certificate.Raw)
	got, err := env.Certificates.Lookup(ctx, cert.SerialNumber)
	require.NoError(t, err)
	require.Equal(t, "alice-laptop", got.DeviceID)
	tr := d.Trace.Steps
	require.Equal(t, "complete", tr[len(tr)-2].Step)
	require.Equal(t, crp.PhaseNotify, tr[len(tr)-1].Phase)

	// Completed twice: refused and logged, nothing changes.
	err = env.RP.Complete(ctx, &crp.Completion{TransactionID: "tx-1", Certificate: cert})
	require.ErrorIs(t, err, crp.ErrCompleted)
	require.Contains(t, logs.String(), "completed twice")
	require.Len(t, env.Notifier.Notifications(), 1)
	require.ErrorIs(t, env.RP.Complete(ctx, &crp.Completion{TransactionID: "never", Certificate: cert}), crp.ErrNoDecision)
}

// TestDecideRefusals: every refusal of Enroll is Decide's too, in the same phase and
// for the same reason, and nothing is issued.
func TestDecideRefusals(t *testing.T) {
	env := newEnv(t)
	for i, c := range failCases(t, env) {
		if c.phase >= crp.PhaseIssue {
			continue // the CA's own refusals: see TestCompleteFailure
		}
		t.Run(c.name, func(t *testing.T) {
			req, ch := c.setup(t, env)
			if c.cleanup != nil {
				defer c.cleanup(env)
			}
			d, err := env.RP.Decide(context.Background(), &crp.EnrollRequest{
				TransactionID: "refused-" + string(rune('a'+i)), CSR: req, Challenge: ch})
			require.Nil(t, d)
			var e *crp.Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, c.phase, e.Phase)
			require.Equal(t, c.reason, e.Reason)
		})
	}
	require.Equal(t, 0, env.Issuer.Count())
}

// TestCompleteMismatch: a certificate that is not what was decided (another
// subject, key usage, validity, key, a CA, or not from CACert) is refused and logged,
// and the transaction fails. One our CA signed exists all the same: the inventory
// lists it (by serial, for its user and device) so that an operator, or the embedding
// CA's code, finds it to revoke; one another CA signed is not ours to record.
func TestCompleteMismatch(t *testing.T) {
	other := newEnv(t) // another CA
	keys(t)
	cases := []struct {
		name  string
		alter func(tmpl *x509.Certificate)
		ca    *catemplate.CA
		key   any
	}{
		{name: "subject", alter: func(c *x509.Certificate) { c.RawSubject = mustName(t, "CN=admin@example.com") }},
		{name: "subjectAltName", alter: func(c *x509.Certificate) {
			c.ExtraExtensions = nil
			c.DNSNames = []string{"evil.example.com"}
		}},
		{name: "key usage", alter: func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign }},
		{name: "extended key usage", alter: func(c *x509.Certificate) { c.ExtKeyUsage = append(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth) }},
		{name: "longer validity", alter: func(c *x509.Certificate) { c.NotAfter = c.NotAfter.Add(24 * time.Hour) }},
		{name: "another key", key: &smallKey.PublicKey},
		{name: "another CA", ca: other.CA},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var logs bytes.Buffer
			env := newEnv(t)
			env.RP.Logger = slogTo(&logs)
			env.RP.Transactions = &crp.MemoryTransactions{}
			ctx := context.Background()
			txID := "mismatch-" + string(rune('a'+i))
			d, req, _ := decideAlice(t, env, txID)
			tmpl := *d.Template
			if c.alter != nil {
				c.alter(&tmpl)
			}
			ca, key := env.CA, any(req.PublicKey)
			if c.ca != nil {
				ca = c.ca
			}
			if c.key != nil {
				key = c.key
			}
			cert, err := ca.Sign(ctx, &tmpl, key)
			require.NoError(t, err)
			err = env.RP.Complete(ctx, &crp.Completion{TransactionID: txID, Certificate: cert})
			var e *crp.Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, crp.ReasonCertMismatch, e.Reason)
			require.Contains(t, logs.String(), "level=ERROR")
			ic, err := env.Certificates.Lookup(ctx, cert.SerialNumber)
			if c.ca != nil {
				require.ErrorIs(t, err, crp.ErrNotFound)
			} else {
				require.NoError(t, err, "recorded, to be revoked")
				require.True(t, ic.Certificate.Equal(cert))
				require.Equal(t, "alice@example.com", ic.UserID)
				require.Equal(t, txID, ic.TransactionID)
				require.True(t, ic.Withheld)
				require.Contains(t, logs.String(), "recorded in the inventory")
			}
			rec, err := env.RP.Transactions.Get(ctx, txID)
			require.NoError(t, err)
			require.Equal(t, scep.Failure, rec.Status)
			n := env.Notifier.Notifications()
			require.Len(t, n, 1)
			require.Equal(t, crp.OutcomeFailed, n[0].Outcome)
		})
	}
}

// TestCompleteFailure: the CA's failure releases the challenge when transient and
// burns it otherwise, as with Enroll; the failure is notified.
func TestCompleteFailure(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	d, req, ch := decideAlice(t, env, "fail-1")
	err := env.RP.Complete(ctx, &crp.Completion{TransactionID: d.TransactionID,
		Err: errors.Join(crp.ErrUnavailable, errors.New("CA down"))})
	var e *crp.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, crp.ReasonCAUnavailable, e.Reason)
	n := env.Notifier.Notifications()
	require.Len(t, n, 1)
	require.Equal(t, crp.OutcomeFailed, n[0].Outcome)
	// Released: the same challenge decides again.
	d, err = env.RP.Decide(ctx, &crp.EnrollRequest{TransactionID: "fail-2", CSR: req, Challenge: ch})
	require.NoError(t, err)
	err = env.RP.Complete(ctx, &crp.Completion{TransactionID: d.TransactionID, Err: crp.ErrRefused})
	require.ErrorAs(t, err, &e)
	require.Equal(t, crp.ReasonCARefused, e.Reason)
	// Burnt.
	_, err = env.RP.Decide(ctx, &crp.EnrollRequest{TransactionID: "fail-3", CSR: req, Challenge: ch})
	require.ErrorAs(t, err, &e)
	require.Equal(t, crp.ReasonReplayed, e.Reason)
	require.Equal(t, 0, env.Issuer.Count())
}

// TestDecisionLapses: a decision not completed in time lapses: the failure is
// recorded and notified, the challenge stays claimed, a late certificate is refused
// (and kept in the inventory, for its revocation).
func TestDecisionLapses(t *testing.T) {
	keys(t)
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	env, err := crptest.New(crptest.Options{Now: clock, Transactions: &crp.MemoryTransactions{Now: clock}})
	require.NoError(t, err)
	env.RP.DecisionTTL = time.Minute
	ctx := context.Background()
	d, req, ch := decideAlice(t, env, "lapse-1")
	cert, err := env.CA.Sign(ctx, d.Template, req.PublicKey)
	require.NoError(t, err)

	now.Add(int64(2 * time.Minute))
	// Any later call sweeps it.
	_, err = env.RP.Decide(ctx, &crp.EnrollRequest{TransactionID: "lapse-2", CSR: req, Challenge: ch})
	var e *crp.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, crp.ReasonReplayed, e.Reason, "the lapsed decision's challenge stays claimed")
	rec, err := env.RP.Transactions.Get(ctx, "lapse-1")
	require.NoError(t, err)
	require.Equal(t, scep.Failure, rec.Status)
	require.Equal(t, crp.ReasonDecisionLapsed, rec.Reason)
	n := env.Notifier.Notifications()
	require.Len(t, n, 2)
	require.Equal(t, "lapse-1", n[0].TransactionID)
	require.Equal(t, crp.ReasonDecisionLapsed, n[0].Reason)

	require.ErrorIs(t, env.RP.Complete(ctx, &crp.Completion{TransactionID: "lapse-1", Certificate: cert}), crp.ErrCompleted)
	// The late certificate exists: the inventory knows it, for its revocation (see
	// TestLateCertificateInInventory); the device's answer stays the failure.
	_, err = env.Certificates.Lookup(ctx, cert.SerialNumber)
	require.NoError(t, err)
	rec, err = env.RP.Transactions.Get(ctx, "lapse-1")
	require.NoError(t, err)
	require.Equal(t, scep.Failure, rec.Status)
}

// TestDecisionOpenOnce: one open decision per transactionID; a completion naming
// another CSR is refused and leaves the decision open.
func TestDecisionOpenOnce(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	d, req, _ := decideAlice(t, env, "once")
	ch2 := mint(t, env, "alice@example.com", "alice-laptop")
	_, err := env.RP.Decide(ctx, &crp.EnrollRequest{TransactionID: "once", CSR: csr(t, deviceKey, "alice@example.com", ch2), Challenge: ch2})
	var e *crp.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, crp.ReasonTransactionConflict, e.Reason)

	cert, err := env.CA.Sign(ctx, d.Template, req.PublicKey)
	require.NoError(t, err)
	otherCSR := csr(t, deviceKey, "alice@example.com", "")
	err = env.RP.Complete(ctx, &crp.Completion{TransactionID: "once", CSR: otherCSR, Certificate: cert})
	require.ErrorIs(t, err, crp.ErrOtherRequest)
	require.NotErrorIs(t, err, crp.ErrNoDecision, "a decision is open")
	_, err = env.RP.Transactions.Get(ctx, "once")
	require.ErrorIs(t, err, crp.ErrNotFound, "nothing recorded")
	require.Empty(t, env.Notifier.Notifications(), "nothing notified")
	require.NoError(t, env.RP.Complete(ctx, &crp.Completion{TransactionID: "once", CSR: req, Certificate: cert}))
}

// TestEnrollChecksTheIssuer: Enroll runs the same completion, so an Issuer that signs
// something else than the template is refused as well, and what it signed is listed in
// the inventory to be revoked.
func TestEnrollChecksTheIssuer(t *testing.T) {
	env := newEnv(t)
	env.Issuer.Next = crp.IssuerFunc(func(ctx context.Context, r *crp.IssueRequest) (*x509.Certificate, error) {
		tmpl := *r.Template
		tmpl.SerialNumber = big.NewInt(7)
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		return env.CA.Sign(ctx, &tmpl, r.PublicKey)
	})
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	_, err := env.RP.Enroll(context.Background(), &crp.EnrollRequest{TransactionID: "enroll-check",
		CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch})
	var e *crp.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, crp.ReasonCertMismatch, e.Reason)
	ic, err := env.Certificates.Lookup(context.Background(), big.NewInt(7))
	require.NoError(t, err, "the withheld certificate is in the inventory")
	require.Equal(t, "enroll-check", ic.TransactionID)
	require.Equal(t, "alice-laptop", ic.DeviceID)
}

func mustName(t *testing.T, dn string) []byte {
	t.Helper()
	der, err := asn1.Marshal(pkix.Name{CommonName: dn[len("CN="):]}.ToRDNSequence())
	require.NoError(t, err)
	return der
}

// BenchmarkMatches measures the check of an issued certificate against its decision,
// which every completion (and every Enroll) now makes, next to one RSA-2048 signature
// timed alternately in the same run ("sig-fraction").
func BenchmarkMatches(b *testing.B) {
	keys(b)
	env := newEnv(b)
	ctx := context.Background()
	ch := mint(b, env, "alice@example.com", "alice-laptop")
	d, err := env.RP.Decide(ctx, &crp.EnrollRequest{TransactionID: "bench-matches",
		CSR: csr(b, deviceKey, "alice@example.com", ch), Challenge: ch})
	if err != nil {
		b.Fatal(err)
	}
	cert, err := env.CA.Sign(ctx, d.Template, &deviceKey.PublicKey)
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("floor"))
	var check, sig time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := crp.Matches(d.Template, cert); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := env.CA.Signer.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
		check += t1.Sub(t0)
		sig += time.Since(t1)
	}
	b.StopTimer()
	b.ReportMetric(float64(check.Nanoseconds())/float64(b.N), "matches-ns/op")
	b.ReportMetric(float64(sig.Nanoseconds())/float64(b.N), "rsa-sign-ns/op")
	b.ReportMetric(float64(check)/float64(sig), "sig-fraction")
}

// TestDecideAndCompleteConcurrently: of many concurrent decisions on one challenge,
// one is made; of many concurrent completions of it, one is accepted and notified.
func TestDecideAndCompleteConcurrently(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	req := csr(t, deviceKey, "alice@example.com", ch)
	const n = 8
	decisions := make(chan *crp.Decision, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			d, err := env.RP.Decide(ctx, &crp.EnrollRequest{TransactionID: fmt.Sprintf("race-%d", i), CSR: req, Challenge: ch})
			if err == nil {
				decisions <- d
			}
		}(i)
	}
	wg.Wait()
	close(decisions)
	require.Len(t, decisions, 1, "one decision per challenge")
	d := <-decisions
	cert, err := env.CA.Sign(ctx, d.Template, req.PublicKey)
	require.NoError(t, err)
	var accepted atomic.Int32
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if env.RP.Complete(ctx, &crp.Completion{TransactionID: d.TransactionID, Certificate: cert}) == nil {
				accepted.Add(1)
			}
		}()
	}
	wg.Wait()
	require.Equal(t, int32(1), accepted.Load())
	issued := 0
	for _, x := range env.Notifier.Notifications() {
		if x.Outcome == crp.OutcomeIssued {
			issued++
		}
	}
	require.Equal(t, 1, issued)
}

// TestMatchesNil: a CA of the embedder's that returns no certificate, or a decision
// not kept, is a difference Matches reports, not a panic.
func TestMatchesNil(t *testing.T) {
	some := &x509.Certificate{}
	for _, tc := range []struct {
		name          string
		decided, cert *x509.Certificate
	}{
		{"no certificate", some, nil},
		{"no decision", nil, some},
		{"neither", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.NotPanics(t, func() {
				require.Error(t, crp.Matches(tc.decided, tc.cert))
			})
		})
	}
}
