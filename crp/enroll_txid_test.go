package crp_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/internal/testserver"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// TestEnrollTransactionIDs: through Enroll and Decide a transactionID is what it is
// through SCEP. Before, Enroll looked at no record: the same request sent again got
// "challenge already used" instead of its certificate; another requester (bob, his own
// key and challenge) under alice's transactionID was issued and his record replaced
// hers; with approval required, bob's request replaced alice's pending one, and
// Approve then issued bob's certificate while alice's request vanished.
func TestEnrollTransactionIDs(t *testing.T) {
	keys(t)
	bobKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	ctx := context.Background()
	aliceReq := func(env *crptest.Env, tid string) *crp.EnrollRequest {
		ch := mint(t, env, "alice@example.com", "alice-laptop")
		return &crp.EnrollRequest{TransactionID: tid, CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch}
	}
	bobReq := func(env *crptest.Env, tid string) *crp.EnrollRequest {
		ch := mint(t, env, "bob@example.com", "bob-phone")
		return &crp.EnrollRequest{TransactionID: tid, CSR: csr(t, bobKey, "bob@example.com", ch), Challenge: ch}
	}
	conflict := func(t *testing.T, err error) {
		t.Helper()
		var ce *crp.Error
		require.ErrorAs(t, err, &ce)
		require.Equal(t, crp.ReasonTransactionConflict, ce.Reason, "%v", err)
	}

	t.Run("the same request again gets its certificate", func(t *testing.T) {
		env := newEnv(t)
		req := aliceReq(env, "t1")
		first, err := env.RP.Enroll(ctx, req)
		require.NoError(t, err)
		again, err := env.RP.Enroll(ctx, req)
		require.NoError(t, err)
		require.Equal(t, scep.Success, again.Status)
		require.Equal(t, first.Certificate.Raw, again.Certificate.Raw)
		require.Equal(t, 1, env.Issuer.Count())
	})

	t.Run("another requester cannot take a transactionID over", func(t *testing.T) {
		env := newEnv(t)
		first, err := env.RP.Enroll(ctx, aliceReq(env, "t1"))
		require.NoError(t, err)
		_, err = env.RP.Enroll(ctx, bobReq(env, "t1"))
		conflict(t, err)
		require.Equal(t, 1, env.Issuer.Count(), "nothing issued to bob")
		rec, err := env.RP.Transactions.Get(ctx, "t1")
		require.NoError(t, err)
		require.Equal(t, first.Certificate.Raw, rec.Certificate.Raw, "alice's record kept")
		_, err = env.RP.Decide(ctx, bobReq(env, "t1"))
		conflict(t, err)
	})

	t.Run("a pending request stays its requester's", func(t *testing.T) {
		env := newEnv(t)
		env.Templates[crptest.TemplateName].RequiresApproval = true
		res, err := env.RP.Enroll(ctx, aliceReq(env, "t2"))
		require.NoError(t, err)
		require.Equal(t, scep.Pending, res.Status)
		_, err = env.RP.Enroll(ctx, bobReq(env, "t2"))
		conflict(t, err)
		cert, err := env.RP.Approve(ctx, "t2")
		require.NoError(t, err)
		require.Equal(t, "alice@example.com", cert.Subject.CommonName)
		require.True(t, cert.PublicKey.(*rsa.PublicKey).Equal(deviceKey.Public()))
		require.Equal(t, 1, env.Issuer.Count())
	})

	t.Run("a decided request is not decided twice", func(t *testing.T) {
		env := newEnv(t)
		req := aliceReq(env, "t3")
		_, err := env.RP.Enroll(ctx, req)
		require.NoError(t, err)
		_, err = env.RP.Decide(ctx, req)
		conflict(t, err)
		require.Equal(t, 1, env.Issuer.Count())
	})
}

// unreadableTransactions fails every Get, as a store that does not answer.
type unreadableTransactions struct {
	crp.TransactionStore
	gets atomic.Int32
}

func (u *unreadableTransactions) Get(context.Context, string) (*crp.Record, error) {
	u.gets.Add(1)
	return nil, errors.New("transactions store: i/o timeout")
}

// TestTransactionStoreUnreadable: a transaction store that cannot be read fails the
// request at once as transient, its challenge unclaimed, logged as the step
// transaction-record. Before, the error was ignored: the request went on as if new
// (a resend could not get its answer, a transactionID could be taken over), and a
// PostgreSQL that stopped answering held the device for two store timeouts instead of
// one, the first one logged nowhere.
func TestTransactionStoreUnreadable(t *testing.T) {
	keys(t)
	logs := &testserver.Output{}
	env, err := crptest.New(crptest.Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	require.NoError(t, err)
	store := &unreadableTransactions{TransactionStore: env.RP.Transactions}
	env.RP.Transactions = store
	ctx := context.Background()
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	req := &crp.EnrollRequest{TransactionID: "t1", CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch}
	_, err = env.RP.Enroll(ctx, req)
	require.ErrorIs(t, err, crp.ErrUnavailable)
	require.Equal(t, int32(1), store.gets.Load())
	require.Zero(t, env.Issuer.Count())
	require.Contains(t, logs.String(), `"step":"transaction-record"`)

	env.RP.Transactions = store.TransactionStore
	res, err := env.RP.Enroll(ctx, req)
	require.NoError(t, err, "the challenge was not claimed")
	require.Equal(t, scep.Success, res.Status)
}

// TestEnrollRetryAfterRefusal: a requester without a signer (Enroll without a Proof,
// Decide) whose request was refused after its challenge was claimed (recorded) may
// send another request under its transactionID with the same key, as a SCEP device
// may. The refusal's record now keeps the CSR, the key that made the request; without
// it, the retry was a "transactionID in use by another requester" for the record's
// whole life.
func TestEnrollRetryAfterRefusal(t *testing.T) {
	keys(t)
	ctx := context.Background()
	for _, via := range []string{"Enroll", "Decide"} {
		t.Run(via, func(t *testing.T) {
			env := newEnv(t)
			send := func(cn string) error {
				ch := mint(t, env, "alice@example.com", "alice-laptop")
				req := &crp.EnrollRequest{TransactionID: "device-0001", CSR: csr(t, deviceKey, cn, ch), Challenge: ch}
				if via == "Decide" {
					_, err := env.RP.Decide(ctx, req)
					return err
				}
				_, err := env.RP.Enroll(ctx, req)
				return err
			}
			var ce *crp.Error
			require.ErrorAs(t, send("not-alice@example.com"), &ce, "refused after the claim: the CSR does not match the profile")
			require.Equal(t, crp.ReasonCSRMismatch, ce.Reason)
			rec, err := env.RP.Transactions.Get(ctx, "device-0001")
			require.NoError(t, err)
			require.Equal(t, scep.Failure, rec.Status)
			require.NoError(t, send("alice@example.com"), "the same key, a fixed CSR, a fresh challenge")
		})
	}
}

// gatedTransactions holds the second Get, once it has read, until release is closed,
// and closes read2 then.
type gatedTransactions struct {
	crp.TransactionStore
	n       atomic.Int32
	read2   chan struct{}
	release chan struct{}
}

func (g *gatedTransactions) Get(ctx context.Context, id string) (*crp.Record, error) {
	rec, err := g.TransactionStore.Get(ctx, id)
	if g.n.Add(1) == 2 {
		close(g.read2)
		<-g.release
	}
	return rec, err
}

// TestEnrollConcurrentResend: the same request sent twice at once through Enroll, the
// second finding no record yet but losing the challenge's claim to the first, gets the
// first's certificate, as a SCEP resend does. It got "challenge already used".
func TestEnrollConcurrentResend(t *testing.T) {
	env := newEnv(t)
	store := &gatedTransactions{TransactionStore: env.RP.Transactions, read2: make(chan struct{}), release: make(chan struct{})}
	env.RP.Transactions = store
	inner := env.RP.Issuer
	inIssue := make(chan struct{})
	env.RP.Issuer = crp.IssuerFunc(func(ctx context.Context, r *crp.IssueRequest) (*x509.Certificate, error) {
		close(inIssue)
		select { // the resend has looked for a record, and found none
		case <-store.read2:
		case <-time.After(10 * time.Second):
			return nil, errors.New("the resend never looked for the record")
		}
		return inner.Issue(ctx, r)
	})
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	req := &crp.EnrollRequest{TransactionID: "tx-1", CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch}
	ctx := context.Background()
	type outcome struct {
		res *crp.Result
		err error
	}
	first, second := make(chan outcome, 1), make(chan outcome, 1)
	go func() {
		res, err := env.RP.Enroll(ctx, req)
		first <- outcome{res, err}
		close(store.release)
	}()
	<-inIssue // the first request holds the challenge, its record not yet written
	go func() {
		res, err := env.RP.Enroll(ctx, req)
		second <- outcome{res, err}
	}()
	a, b := <-first, <-second
	require.NoError(t, a.err)
	require.NoError(t, b.err, "the resend gets the recorded answer")
	require.Equal(t, a.res.Certificate.Raw, b.res.Certificate.Raw)
	require.Equal(t, 1, env.Issuer.Count())
}

// TestConcurrentRequestUnderAnotherKeysTransactionID: bob, with his own key and
// challenge, sends a request under the transactionID of alice's request while hers is
// being signed. He is refused at once, as he would be after it (the transactionID is
// in use by another key): he neither waits for her request nor runs beside it, and
// alice's record stays hers. Before, a request under a running transactionID with
// other content ran beside it: bob was issued a certificate and his record replaced
// alice's, so that her resend was refused ("challenge already used").
func TestConcurrentRequestUnderAnotherKeysTransactionID(t *testing.T) {
	keys(t)
	bobKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	env := newEnv(t)
	inner := env.RP.Issuer
	var calls atomic.Int32
	aliceIssuing, bobReturned, aliceDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
	env.RP.Issuer = crp.IssuerFunc(func(ctx context.Context, r *crp.IssueRequest) (*x509.Certificate, error) {
		if calls.Add(1) == 1 { // alice's: held until bob has had his answer
			close(aliceIssuing)
			select {
			case <-bobReturned:
			case <-time.After(10 * time.Second): // bob's request is held too (below)
			}
		} else { // bob's: held until alice's request has ended, her record written
			<-aliceDone
		}
		return inner.Issue(ctx, r)
	})
	ctx := context.Background()
	aliceCh := mint(t, env, "alice@example.com", "alice-laptop")
	alice := &crp.EnrollRequest{TransactionID: "tx-shared", CSR: csr(t, deviceKey, "alice@example.com", aliceCh), Challenge: aliceCh}
	bobCh := mint(t, env, "bob@example.com", "bob-phone")
	bob := &crp.EnrollRequest{TransactionID: "tx-shared", CSR: csr(t, bobKey, "bob@example.com", bobCh), Challenge: bobCh}
	type outcome struct {
		res *crp.Result
		err error
	}
	aliceOut, bobOut := make(chan outcome, 1), make(chan outcome, 1)
	go func() {
		res, err := env.RP.Enroll(ctx, alice)
		aliceOut <- outcome{res, err}
		close(aliceDone)
	}()
	<-aliceIssuing
	go func() {
		res, err := env.RP.Enroll(ctx, bob)
		bobOut <- outcome{res, err}
	}()
	var a, b outcome
	select {
	case b = <-bobOut: // while alice's request is held in the CA
		// Released only once bob's answer is taken: released by bob's goroutine,
		// both answers could be waiting here, and select would pick one at random.
		close(bobReturned)
	case a = <-aliceOut:
		t.Fatal("bob's request waited for alice's")
	}
	a = <-aliceOut
	require.NoError(t, a.err)
	var ce *crp.Error
	require.ErrorAs(t, b.err, &ce, "bob was answered %+v", b.res)
	require.Equal(t, crp.ReasonTransactionConflict, ce.Reason, "%v", b.err)
	require.Equal(t, 1, env.Issuer.Count(), "a certificate was issued under alice's transactionID for bob")
	again, err := env.RP.Enroll(ctx, alice)
	require.NoError(t, err, "alice's resend")
	require.Equal(t, a.res.Certificate.Raw, again.Certificate.Raw)
}

// TestResendDuringIssue: a device resends its request while the first copy is still
// being signed (a slow HSM or CA), through Enroll and through SCEP. The resend waits
// for the first copy and gets its answer; it got FAILURE ("challenge already used",
// badRequest) while the first copy's certificate went nowhere.
func TestResendDuringIssue(t *testing.T) {
	for _, viaSCEP := range []bool{false, true} {
		t.Run(map[bool]string{false: "Enroll", true: "SCEP"}[viaSCEP], func(t *testing.T) {
			env := newEnv(t)
			inner := env.RP.Issuer
			var calls atomic.Int32
			inIssue := make(chan struct{})
			env.RP.Issuer = crp.IssuerFunc(func(ctx context.Context, r *crp.IssueRequest) (*x509.Certificate, error) {
				if calls.Add(1) == 1 {
					close(inIssue)
					time.Sleep(300 * time.Millisecond) // the resend arrives meanwhile
				}
				return inner.Issue(ctx, r)
			})
			ch := mint(t, env, "alice@example.com", "alice-laptop")
			der := csr(t, deviceKey, "alice@example.com", ch)
			self, err := scep.SelfSigned(deviceKey, pkix.Name{CommonName: "alice@example.com"}, nil)
			require.NoError(t, err)
			send := func() (*x509.Certificate, error) {
				if viaSCEP {
					resp, err := env.RP.Respond(context.Background(), &scep.Request{MessageType: scep.PKCSReq,
						TransactionID: "tx-1", CSR: der, ChallengePassword: ch, Signer: self})
					if err != nil {
						return nil, err
					}
					return resp.Certificate, nil
				}
				res, err := env.RP.Enroll(context.Background(), &crp.EnrollRequest{TransactionID: "tx-1", CSR: der, Challenge: ch})
				return res.Certificate, err
			}
			type outcome struct {
				cert *x509.Certificate
				err  error
			}
			first := make(chan outcome, 1)
			go func() {
				c, err := send()
				first <- outcome{c, err}
			}()
			select {
			case <-inIssue:
			case <-time.After(10 * time.Second):
				t.Fatal("the first copy never reached the CA")
			}
			c2, err2 := send()
			a := <-first
			require.NoError(t, a.err)
			require.NoError(t, err2, "the resend waits for the copy being signed")
			require.NotNil(t, c2)
			require.Equal(t, a.cert.Raw, c2.Raw)
			require.Equal(t, 1, env.Issuer.Count())
		})
	}
}

// TestResendsAfterTransientFailure: two resends wait for a first copy that then fails
// transiently (challenge released, no record). Woken, one runs and the other waits
// for it in turn; both get the certificate. Both ran at once, and one was refused
// "challenge already used" while the other was being signed.
func TestResendsAfterTransientFailure(t *testing.T) {
	env := newEnv(t)
	inner := env.RP.Issuer
	var calls atomic.Int32
	inIssue := make(chan struct{})
	env.RP.Issuer = crp.IssuerFunc(func(ctx context.Context, r *crp.IssueRequest) (*x509.Certificate, error) {
		n := calls.Add(1)
		time.Sleep(300 * time.Millisecond)
		if n == 1 {
			close(inIssue)
			time.Sleep(200 * time.Millisecond)
			return nil, fmt.Errorf("%w: HSM busy", crp.ErrUnavailable)
		}
		return inner.Issue(ctx, r)
	})
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	der := csr(t, deviceKey, "alice@example.com", ch)
	send := func() (*crp.Result, error) {
		return env.RP.Enroll(context.Background(), &crp.EnrollRequest{TransactionID: "tx-1", CSR: der, Challenge: ch})
	}
	first := make(chan error, 1)
	go func() { _, err := send(); first <- err }()
	select {
	case <-inIssue:
	case <-time.After(10 * time.Second):
		t.Fatal("the first copy never reached the CA")
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); _, errs[i] = send() }()
	}
	wg.Wait()
	require.ErrorIs(t, <-first, crp.ErrUnavailable)
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	require.Equal(t, 1, env.Issuer.Count())
}
