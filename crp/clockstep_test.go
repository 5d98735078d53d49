package crp_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
)

// TestRenewalClaimSurvivesClockStep: a certificate renews once, through a claim in
// the replay store that lasted until the certificate's NotAfter plus the grace, as
// long as a renewal signed by it is accepted. A device renews in the last minutes of
// its certificate; the gateway's clock steps forward two hours (past that end) and
// enrollments in the meantime sweep the claims that are over by it; the clock steps
// back. The same certificate then renewed a second time: two certificates for one.
// Renewal claims now carry challenge.ClaimMargin, as challenge claims do.
func TestRenewalClaimSurvivesClockStep(t *testing.T) {
	keys(t)
	clk := &testClock{now: time.Now()}
	env, err := crptest.New(crptest.Options{Now: clk.Now})
	require.NoError(t, err)
	ts := httptest.NewServer(env.Server)
	defer ts.Close()
	ctx := context.Background()
	client := &scep.Client{URL: ts.URL, CAFingerprint: env.CAFingerprint(), Now: clk.Now}
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	cert, err := client.Enroll(ctx, csr(t, deviceKey, "alice@example.com", ch).Raw, deviceKey)
	require.NoError(t, err)

	clk.Set(cert.NotAfter.Add(-10 * time.Minute))
	_, err = client.Renew(ctx, csr(t, deviceKey, "alice@example.com", "").Raw, cert, deviceKey)
	require.NoError(t, err)
	require.Equal(t, 2, env.Issuer.Count())

	// Two hours ahead: the claims that are over by this clock are swept by later ones.
	clk.Set(cert.NotAfter.Add(2 * time.Hour))
	for i := range 64 * 32 * 4 {
		require.NoError(t, env.Verifier.Replay.Claim(ctx, fmt.Sprint("other-", i), clk.Now().Add(time.Hour)))
	}

	// Back: the certificate is within its validity again, and renewed already.
	clk.Set(cert.NotAfter.Add(-5 * time.Minute))
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	_, err = client.Renew(ctx, csr(t, other, "alice@example.com", "").Raw, cert, deviceKey)
	var fe *scep.FailError
	require.ErrorAs(t, err, &fe, "a second renewal by one certificate")
	require.Equal(t, 2, env.Issuer.Count())
}

// TestDecisionNotGivenBackAfterLeaseWhenClockSteppedBack: a decider gives its claim
// on a pending request back after a transient failure only while its lease holds,
// since past it the claim may be another gateway's. The lease was judged by the wall
// clock alone: a gateway whose clock stepped back an hour during the decision, and
// whose CA answered only after the lease had run out, released the claim another
// gateway had taken meanwhile, and a third decided the same request beside it: two
// certificates for one approval. The lease's end is now also measured on the
// monotonic clock.
func TestDecisionNotGivenBackAfterLeaseWhenClockSteppedBack(t *testing.T) {
	keys(t)
	clk := &testClock{now: time.Now()}
	env, err := crptest.New(crptest.Options{Now: clk.Now})
	require.NoError(t, err)
	ctx := context.Background()
	enrollPending(t, env)
	// The decisions are claimed in a store shared by the gateways, which expires
	// them by its own clock (Redis's), not by this gateway's.
	env.RP.Decisions = &challenge.MemoryReplayStore{}
	env.RP.DecisionTTL = time.Second

	inner := env.RP.Issuer
	firstIn, secondIn, secondGo := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	env.RP.Issuer = crp.IssuerFunc(func(ctx context.Context, req *crp.IssueRequest) (*x509.Certificate, error) {
		switch calls.Add(1) {
		case 1: // this gateway: its clock steps back, its CA answers after the lease
			close(firstIn)
			clk.Set(clk.Now().Add(-30 * time.Second))
			time.Sleep(1500 * time.Millisecond)
			return nil, context.DeadlineExceeded
		case 2: // the gateway that took the request over once the lease ran out
			close(secondIn)
			<-secondGo
		}
		return inner.Issue(ctx, req)
	})
	// The lease ends a second after the claim by this clock, on the store's (real)
	// one: the clock reads the time of the claim, however long the setup took.
	clk.Set(time.Now())
	first := make(chan error, 1)
	go func() { _, err := env.RP.Approve(ctx, "wait"); first <- err }()
	<-firstIn                           // claimed
	time.Sleep(1100 * time.Millisecond) // the first decider's lease has passed, its work has not
	second := make(chan error, 1)
	go func() { _, err := env.RP.Approve(ctx, "wait"); second <- err }()
	select {
	case <-secondIn:
	case err := <-second:
		t.Fatalf("the second decider did not reach the CA: %v", err)
	}
	require.ErrorIs(t, <-first, crp.ErrUnavailable)

	_, err = env.RP.Approve(ctx, "wait")
	close(secondGo)
	require.ErrorIs(t, err, crp.ErrDecided, "the second decider holds the request")
	require.NoError(t, <-second)
	require.Equal(t, 1, env.Issuer.Count())
}

// TestCRLRefreshedWhenClockStepsBack: a CRLPublisher signs a new CRL once Refresh has
// passed, so that revocations another gateway recorded in the shared store reach its
// CRL. Refresh was measured on the wall clock: after the gateway's clock stepped back
// an hour, the CRL signed before the step looked an hour younger, and it was served
// (revocations missing, and HTTP caches told to keep it an hour longer) until the
// clock had caught up. The CRL's age is now measured on the monotonic clock as well.
func TestCRLRefreshedWhenClockStepsBack(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	clk := &testClock{now: time.Now()}
	const refresh = 300 * time.Millisecond
	store := &crp.MemoryRevocations{}
	pub := &crp.CRLPublisher{CA: env.CA, Revocations: store, Refresh: refresh, Now: clk.Now}
	_, err := pub.CRL(ctx)
	require.NoError(t, err)

	clk.Set(clk.Now().Add(-time.Hour))
	// Revoked through another gateway sharing the store.
	_, err = store.Revoke(ctx, &crp.Revocation{Serial: big.NewInt(4711), Reason: 1, RevokedAt: clk.Now(),
		Issuer: env.CA.Certificate.RawSubject})
	require.NoError(t, err)
	time.Sleep(refresh + 50*time.Millisecond)

	der, err := pub.CRL(ctx)
	require.NoError(t, err)
	crl, err := x509.ParseRevocationList(der)
	require.NoError(t, err)
	require.Len(t, crl.RevokedCertificateEntries, 1, "signed afresh once Refresh has passed")

	ts := httptest.NewServer(pub)
	defer ts.Close()
	resp, _ := getCRL(t, ts.URL, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	maxAge, err := strconv.Atoi(strings.TrimPrefix(resp.Header.Get("Cache-Control"), "public, no-transform, max-age="))
	require.NoError(t, err)
	require.LessOrEqual(t, time.Duration(maxAge)*time.Second, refresh)
}

// TestDecisionsSweptAfterClockStepsBack: Decide and Complete lapse the decisions past
// their time at most once a second. That second was counted on the wall clock: after
// the clock stepped forward an hour (a sweep ran then) and back, no sweep ran until
// the clock had caught up with the step, an hour later. Lapsed decisions kept their
// places meanwhile, and once MaxOpenDecisions of them waited (a CA that stopped
// reporting), Decide refused every request. A second passing on the monotonic clock
// now lets a sweep run too.
func TestDecisionsSweptAfterClockStepsBack(t *testing.T) {
	env, now, _ := clockEnv(t)
	env.RP.MaxOpenDecisions = 2
	ctx := context.Background()

	now.Add(int64(time.Hour))
	require.ErrorIs(t, env.RP.Complete(ctx, &crp.Completion{TransactionID: "unknown"}), crp.ErrNoDecision, "a sweep runs an hour ahead")
	now.Add(-int64(time.Hour))

	decideAlice(t, env, "lapse-a")
	decideAlice(t, env, "lapse-b")
	now.Add(int64(crp.DefaultDecisionTTL + time.Minute)) // both lapsed
	time.Sleep(1100 * time.Millisecond)                  // and a second has passed

	ch := mint(t, env, "alice@example.com", "alice-laptop")
	_, err := env.RP.Decide(ctx, &crp.EnrollRequest{TransactionID: "lapse-c", CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch})
	require.NoError(t, err, "the lapsed decisions were swept")
	for _, id := range []string{"lapse-a", "lapse-b"} {
		rec, err := env.RP.Transactions.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, crp.ReasonDecisionLapsed, rec.Reason)
	}
}

// slowClaims is a shared decision store whose Claim answers only after delay (a
// store far away, or loaded), and which counts the claims given back.
type slowClaims struct {
	challenge.MemoryReplayStore
	delay    time.Duration
	claimed  atomic.Int64 // when the last Claim was sent, in unix nanoseconds
	released atomic.Int32
}

func (s *slowClaims) Claim(ctx context.Context, id string, until time.Time) error {
	s.claimed.Store(time.Now().UnixNano())
	err := s.MemoryReplayStore.Claim(ctx, id, until)
	time.Sleep(s.delay)
	return err
}

func (s *slowClaims) Release(ctx context.Context, id string) error {
	s.released.Add(1)
	return s.MemoryReplayStore.Release(ctx, id)
}

// TestDecisionLeaseTimedFromItsClaim: the lease of a decision runs from when it was
// claimed, so a decider whose wall clock stepped back gives it back only while it
// holds by the monotonic clock measured from the claim. It was measured from after
// the claim's answer and the record's reading: with a store slow to answer, a decider
// whose CA answered after the lease had run out still gave back a claim that may by
// then be another gateway's.
func TestDecisionLeaseTimedFromItsClaim(t *testing.T) {
	keys(t)
	clk := &testClock{now: time.Now()}
	env, err := crptest.New(crptest.Options{Now: clk.Now})
	require.NoError(t, err)
	enrollPending(t, env)
	const lease = time.Second
	store := &slowClaims{delay: 500 * time.Millisecond}
	env.RP.Decisions = store
	env.RP.DecisionTTL = lease
	env.RP.Issuer = crp.IssuerFunc(func(ctx context.Context, req *crp.IssueRequest) (*x509.Certificate, error) {
		clk.Set(clk.Now().Add(-30 * time.Second)) // the wall clock steps back
		// The CA answers once the lease has run out, counted from the claim.
		time.Sleep(time.Until(time.Unix(0, store.claimed.Load()).Add(lease + 200*time.Millisecond)))
		return nil, context.DeadlineExceeded
	})
	_, err = env.RP.Approve(context.Background(), "wait")
	require.ErrorIs(t, err, crp.ErrUnavailable)
	require.Zero(t, store.released.Load(), "the claim was given back after its lease")
}

// TestDecisionsClaimIsALease: what Approve claims in the Decisions store is a lease of
// DecisionTTL from the claim, not the pending record's lifetime (a day): a gateway that
// died while deciding leaves the request decidable again once DecisionTTL has passed.
func TestDecisionsClaimIsALease(t *testing.T) {
	keys(t)
	clk := &testClock{now: time.Now()}
	env, err := crptest.New(crptest.Options{Now: clk.Now})
	require.NoError(t, err)
	enrollPending(t, env)
	var until time.Time
	env.RP.Decisions = challenge.ReplayFunc(func(_ context.Context, id string, u time.Time) error {
		require.True(t, strings.HasPrefix(id, "decide:"), id)
		until = u
		return nil
	})
	_, err = env.RP.Approve(context.Background(), "wait")
	require.NoError(t, err)
	require.Equal(t, clk.Now().Add(crp.DefaultDecisionTTL), until)
}
