package redisstore_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/internal/redistest"
	"github.com/scepkit/scepkit/redisstore"
	"github.com/scepkit/scepkit/scep"
)

// Device keys are RSA-2048 (the demo template's minimum) and expensive to make, so a
// small pool is made once and reused. scep.Client derives the transactionID from the
// key, so requests with the same key share a transactionID; that is harmless here:
// crp answers a resend from its record only when the whole request (CSR included) is
// the same, and every request below carries its own challenge, so its own CSR.
const keyPool = 8

var (
	poolOnce sync.Once
	pool     []*rsa.PrivateKey
)

func deviceKeys(t testing.TB) []*rsa.PrivateKey {
	t.Helper()
	poolOnce.Do(func() {
		for range keyPool {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			pool = append(pool, k)
		}
	})
	return pool
}

// gateway is one scep.Server + RegistrationPoint on its own port, with its own
// connection pool to the shared Redis (as a separate process would have).
type gateway struct {
	name  string
	env   *crptest.Env
	url   string
	store *redisstore.Store
}

// twoGateways assembles two gateways that share a CA, an RA, the MDM's key and one
// Redis (for challenge claims and transaction records), each behind its own
// httptest server. It returns them and an HTTP client whose idle connections are
// closed at cleanup.
func twoGateways(t *testing.T, srv *redistest.Server) ([2]*gateway, *http.Client) {
	t.Helper()
	var gws [2]*gateway
	var first *crptest.Env
	for i, name := range []string{"gw-a", "gw-b"} {
		// Fail fast when Redis is down (a device is waiting): one retry, one dial
		// attempt per try, short timeouts. go-redis's defaults (3 retries, 5 dial
		// attempts each) take about 1.7 s per command to give up.
		rc := redis.NewClient(&redis.Options{Addr: srv.Addr, DialTimeout: time.Second, ReadTimeout: time.Second,
			WriteTimeout: time.Second, MaxRetries: 1, DialerRetries: 1})
		t.Cleanup(func() { rc.Close() })
		store := &redisstore.Store{Client: rc, Prefix: "scepkit-test:"}
		env, err := crptest.New(crptest.Options{Gateway: "gateway.example", Share: first, Replay: store,
			Transactions: store})
		require.NoError(t, err)
		if first == nil {
			first = env
		}
		ts := httptest.NewServer(env.Server)
		t.Cleanup(ts.Close)
		gws[i] = &gateway{name: name, env: env, url: ts.URL, store: store}
	}
	require.Same(t, gws[0].env.CA, gws[1].env.CA)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return gws, &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// noLeaks fails the test if goroutines started during it are still running after its
// other cleanups (servers closed, Redis clients closed, Redis stopped). Call it first,
// so that its cleanup runs last.
func noLeaks(t *testing.T) {
	before := goroutineIDs()
	t.Cleanup(func() {
		var extra []string
		deadline := time.Now().Add(5 * time.Second)
		for {
			extra = extra[:0]
			for id, stack := range goroutineStacks() {
				if _, ok := before[id]; !ok {
					extra = append(extra, stack)
				}
			}
			if len(extra) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if len(extra) > 0 {
			t.Errorf("%d goroutines still running after shutdown:\n%s", len(extra), strings.Join(extra, "\n\n"))
		}
	})
}

func goroutineStacks() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	m := map[string]string{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		head, _, _ := strings.Cut(g, "\n")
		// "goroutine 123 [running]:"
		f := strings.Fields(head)
		if len(f) >= 2 && f[0] == "goroutine" {
			m[f[1]] = g
		}
	}
	return m
}

func goroutineIDs() map[string]struct{} {
	m := map[string]struct{}{}
	for id := range goroutineStacks() {
		m[id] = struct{}{}
	}
	return m
}

var demoUsers = [][2]string{{"alice@example.com", "alice-laptop"}, {"bob@example.com", "bob-phone"}}

// request is one enrollment to send.
type request struct {
	challenge int // index of its challenge
	gw        int
	key       *rsa.PrivateKey
	csr       []byte

	cert *x509.Certificate
	err  error
}

func csrFor(t testing.TB, key *rsa.PrivateKey, user, challenge string) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: user}}, key)
	require.NoError(t, err)
	der, err = scep.AddChallengePassword(der, challenge, key, nil)
	require.NoError(t, err)
	return der
}

func (r *request) send(ctx context.Context, gws [2]*gateway, hc *http.Client) {
	r.cert, r.err = (&scep.Client{URL: gws[r.gw].url, HTTPClient: hc, CAFingerprint: gws[r.gw].env.CAFingerprint()}).Enroll(ctx, r.csr, r.key)
}

// TestTwoGatewaysOneRedis: 200 enrollments spread over two gateways sharing one
// Redis; 40 challenges are presented twice, at both gateways at once, with different
// keys (a stolen challenge racing the device). Exactly one certificate per challenge;
// every duplicate gets FAILURE badRequest on the wire, reason "challenge already used".
// Then one challenge is presented 8 times at once across both gateways.
func TestTwoGatewaysOneRedis(t *testing.T) {
	noLeaks(t)
	srv := redistest.Start(t)
	gws, hc := twoGateways(t, srv)
	keys := deviceKeys(t)
	ctx := context.Background()

	const singles, pairs = 120, 40
	var jobs [][]*request // a job's requests are sent at the same instant
	challenges := 0
	for i := range singles + pairs {
		u := demoUsers[i%2]
		ch, _, err := gws[i%2].env.Challenge(u[0], u[1], 0) // either gateway's MDM mints for both
		require.NoError(t, err)
		k := keys[i%keyPool]
		job := []*request{{challenge: challenges, gw: i % 2, key: k, csr: csrFor(t, k, u[0], ch)}}
		if i >= singles {
			k2 := keys[(i+1)%keyPool]
			job = append(job, &request{challenge: challenges, gw: 1 - i%2, key: k2, csr: csrFor(t, k2, u[0], ch)})
		}
		jobs = append(jobs, job)
		challenges++
	}
	// Interleave singles and pairs.
	rng := make([]int, len(jobs))
	for i := range rng {
		rng[i] = i
	}
	for i := len(rng) - 1; i > 0; i-- {
		j := int(randUint(uint64(i + 1)))
		rng[i], rng[j] = rng[j], rng[i]
	}

	start := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16) // jobs in flight: enough to race, modest on 2 cores
	for _, ji := range rng {
		job := jobs[ji]
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			var inner sync.WaitGroup
			gate := make(chan struct{})
			for _, r := range job {
				inner.Go(func() { <-gate; r.send(ctx, gws, hc) })
			}
			close(gate)
			inner.Wait()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	var all []*request
	for _, job := range jobs {
		all = append(all, job...)
	}
	require.Len(t, all, singles+2*pairs)
	wins := make([]int, challenges)
	serials := map[string]bool{}
	refused := 0
	for _, r := range all {
		if r.err == nil {
			wins[r.challenge]++
			require.NoError(t, r.cert.CheckSignatureFrom(gws[0].env.CA.Certificate))
			serials[r.cert.SerialNumber.String()] = true
			continue
		}
		var fe *scep.FailError
		require.ErrorAs(t, r.err, &fe, "a refusal is a CertRep FAILURE, not a transport error")
		require.Equal(t, scep.BadRequest, fe.Info)
		refused++
	}
	for i, n := range wins {
		require.Equal(t, 1, n, "challenge %d: certificates issued", i)
	}
	require.Equal(t, pairs, refused)
	require.Len(t, serials, challenges)
	issued := gws[0].env.Issuer.Count() + gws[1].env.Issuer.Count()
	require.Equal(t, challenges, issued, "certificates the CA signed")
	require.NotZero(t, gws[0].env.Issuer.Count())
	require.NotZero(t, gws[1].env.Issuer.Count())
	// Each refusal was the replay check, at either gateway.
	replayed := 0
	for _, g := range gws {
		for _, n := range g.env.Notifier.Notifications() {
			if n.Outcome == crp.OutcomeFailed {
				require.Equal(t, crp.ReasonReplayed, n.Reason)
				replayed++
			}
		}
	}
	require.Equal(t, pairs, replayed)
	claims, err := gws[0].store.Client.Keys(ctx, "scepkit-test:claim:*").Result()
	require.NoError(t, err)
	require.Len(t, claims, challenges)
	t.Logf("%d enrollments (%d challenges, %d presented twice at both gateways at once) in %v: "+
		"%d certificates (gw-a %d, gw-b %d), %d refused as replayed",
		len(all), challenges, pairs, elapsed.Round(time.Millisecond), issued,
		gws[0].env.Issuer.Count(), gws[1].env.Issuer.Count(), refused)

	// One challenge, 8 presentations at once, 4 per gateway, 8 keys.
	u := demoUsers[0]
	ch, _, err := gws[0].env.Challenge(u[0], u[1], 0)
	require.NoError(t, err)
	var burst []*request
	for i := range 8 {
		burst = append(burst, &request{gw: i % 2, key: keys[i], csr: csrFor(t, keys[i], u[0], ch)})
	}
	before := issued
	gate := make(chan struct{})
	for _, r := range burst {
		wg.Go(func() { <-gate; r.send(ctx, gws, hc) })
	}
	close(gate)
	wg.Wait()
	ok := 0
	for _, r := range burst {
		if r.err == nil {
			ok++
			continue
		}
		require.Equal(t, scep.BadRequest, scep.FailInfoOf(r.err), "%v", r.err)
	}
	require.Equal(t, 1, ok)
	require.Equal(t, before+1, gws[0].env.Issuer.Count()+gws[1].env.Issuer.Count())
}

func randUint(n uint64) uint64 {
	var b [8]byte
	rand.Read(b[:])
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v % n
}

// outcome is one enrollment attempt in the fault test.
type outcome struct {
	worker, challenge int
	start, end        time.Time
	cert              *x509.Certificate
	err               error
}

// TestRedisOutageUnderLoad: Redis (durable: appendfsync always) is killed while four
// devices enroll through two gateways, and restarted 3 s later. While it is down,
// every enrollment gets a CertRep FAILURE (never a certificate without a recorded
// claim) and both gateways keep answering GetCACaps; after the restart enrollments
// succeed again within seconds, no challenge ever yields two certificates, and every
// challenge used before the crash is still refused as replayed.
func TestRedisOutageUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("outage test takes ~15 s")
	}
	noLeaks(t)
	srv := redistest.StartWith(t, redistest.Options{Durable: true})
	gws, hc := twoGateways(t, srv)
	keys := deviceKeys(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Probe GetCACaps at both gateways all along.
	var probes, probeFails int
	var probeErr error
	var probeWG sync.WaitGroup
	probeWG.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for _, g := range gws {
				pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
				caps, err := (&scep.Client{URL: g.url, HTTPClient: hc}).GetCACaps(pctx)
				pcancel()
				if ctx.Err() != nil {
					return
				}
				probes++
				if err != nil || len(caps) == 0 {
					probeFails++
					probeErr = err
				}
			}
		}
	})

	type challengeInfo struct {
		user, device, value, jti string
	}
	var mu sync.Mutex
	var outcomes []outcome
	var chs []challengeInfo
	mint := func(worker int) int {
		u := demoUsers[worker%2]
		v, claims, err := gws[0].env.Challenge(u[0], u[1], 0)
		if err != nil {
			panic(err)
		}
		mu.Lock()
		defer mu.Unlock()
		chs = append(chs, challengeInfo{u[0], u[1], v, claims.ID})
		return len(chs) - 1
	}

	// Each worker is a device with its own key (so its own transactionID): it keeps
	// its challenge until it gets a certificate or a definitive refusal, as a device
	// retries, and sends to the gateways in turn.
	const workers = 4
	stop := make(chan struct{})
	var loadWG sync.WaitGroup
	for w := range workers {
		loadWG.Go(func() {
			key := keys[w]
			ci := mint(w)
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				c := chs[ci]
				mu.Unlock()
				csr := csrFor(t, key, c.user, c.value)
				o := outcome{worker: w, challenge: ci, start: time.Now()}
				o.cert, o.err = (&scep.Client{URL: gws[(w+n)%2].url, HTTPClient: hc, CAFingerprint: gws[0].env.CAFingerprint()}).Enroll(ctx, csr, key)
				o.end = time.Now()
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
				var ce *scep.FailError
				switch {
				case o.err == nil:
					ci = mint(w)
				case errors.As(o.err, &ce):
					// FAILURE: retry the same challenge (a transient failure releases
					// it or never claimed it); a replayed one is gone, take a new one.
					if replayed(gws, key, o) {
						ci = mint(w)
					}
					time.Sleep(100 * time.Millisecond)
				default:
					if ctx.Err() == nil {
						t.Errorf("worker %d: not a CertRep: %v", w, o.err)
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}

	time.Sleep(2 * time.Second)
	killed := time.Now()
	srv.Kill()
	time.Sleep(4 * time.Second)
	restarting := time.Now()
	srv.Restart()
	restarted := time.Now()
	// Run until a few enrollments succeeded after the restart (at most 20 s).
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := 0
		for _, o := range outcomes {
			if o.err == nil && o.start.After(restarted) {
				n++
			}
		}
		mu.Unlock()
		if n >= 2*workers {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	loadWG.Wait()
	cancel()
	probeWG.Wait()

	mu.Lock()
	defer mu.Unlock()
	var (
		during, duringFail, before, beforeOK, after, afterOK int
		straddle, straddleOK, cut, cutOK                     int
		firstOK                                              time.Time
		certsPer                                             = make([]int, len(chs))
		okBefore                                             []int
	)
	for _, o := range outcomes {
		if o.err == nil {
			certsPer[o.challenge]++
			require.NoError(t, o.cert.CheckSignatureFrom(gws[0].env.CA.Certificate))
		} else {
			var fe *scep.FailError
			require.ErrorAs(t, o.err, &fe, "every refusal is a CertRep FAILURE")
		}
		switch {
		case o.start.Before(killed) && o.end.Before(killed):
			before++
			if o.err == nil {
				beforeOK++
				okBefore = append(okBefore, o.challenge)
			}
		case o.start.Before(killed):
			cut++ // in flight when Redis was killed
			if o.err == nil {
				cutOK++
			}
		case o.end.Before(restarting):
			during++
			if o.err != nil {
				duringFail++
			}
		case o.start.Before(restarted):
			// Sent during the outage, answered after the restart: it may have
			// claimed its challenge once Redis was back.
			straddle++
			if o.err == nil {
				straddleOK++
			}
		case o.start.After(restarted):
			after++
			if o.err == nil {
				afterOK++
				if firstOK.IsZero() || o.end.Before(firstOK) {
					firstOK = o.end
				}
			}
		}
	}
	require.NotZero(t, beforeOK, "enrollments succeeded before the outage")
	require.NotZero(t, during, "requests were sent during the outage")
	require.Equal(t, during, duringFail, "no certificate while the claim cannot be recorded")
	require.NotZero(t, afterOK, "enrollments succeed again after the restart")
	for i, n := range certsPer {
		require.LessOrEqual(t, n, 1, "challenge %d got %d certificates", i, n)
	}
	total := 0
	for _, n := range certsPer {
		total += n
	}
	// A certificate reaches a device only once its records are written. One signed
	// while Redis went away cannot be recorded and is withheld (the device gets
	// FAILURE and the gateway logs it for revocation), so only a request in flight
	// across the kill or the restart may leave a signed certificate undelivered.
	signed := gws[0].env.Issuer.Count() + gws[1].env.Issuer.Count()
	require.LessOrEqual(t, total, signed, "every certificate a device received was signed by the CA")
	require.LessOrEqual(t, signed-total, (cut-cutOK)+(straddle-straddleOK),
		"a certificate was withheld from a request that was not in flight across the outage")
	// Never a certificate without a recorded claim: every challenge that got one is
	// claimed in Redis (which kept its data across the crash).
	rc := gws[0].store.Client
	// Redis's errors are checked, not read as "no such key": a command that fails
	// (a read timeout on a loaded machine) is not a lost claim.
	claimKeys, err := rc.Keys(context.Background(), "scepkit-test:claim:*").Result()
	require.NoError(t, err, "listing the claims after the restart")
	for i, n := range certsPer {
		if n > 0 {
			exists, err := rc.Exists(context.Background(), "scepkit-test:claim:"+chs[i].jti).Result()
			require.NoError(t, err, "looking up the claim of challenge %d", i)
			require.Equal(t, int64(1), exists, "challenge %d has a certificate but no claim (%d claims in Redis, %d challenges minted)",
				i, len(claimKeys), len(chs))
		}
	}
	require.Zero(t, probeFails, "GetCACaps failed %d/%d times: %v", probeFails, probes, probeErr)

	// The claims survived the crash (appendfsync always): every challenge used before
	// it is refused as replayed, at either gateway, with another key.
	issued := signed // the replays below must make the CA sign nothing more
	for i, ci := range okBefore {
		c := chs[ci]
		k := keys[(i+workers)%keyPool]
		_, err := (&scep.Client{URL: gws[i%2].url, HTTPClient: hc, CAFingerprint: gws[0].env.CAFingerprint()}).Enroll(context.Background(),
			csrFor(t, k, c.user, c.value), k)
		require.Equal(t, scep.BadRequest, scep.FailInfoOf(err), "challenge %d after restart: %v", ci, err)
	}
	require.Equal(t, issued, gws[0].env.Issuer.Count()+gws[1].env.Issuer.Count(), "a replayed challenge made the CA sign")

	t.Logf("outage %v: %d requests sent and answered during it, %d FAILURE, 0 certificates; "+
		"%d sent during it and answered after the restart (%d certificates); %d in flight at the kill (%d certificates); "+
		"before: %d requests, %d certificates; after restart: %d requests, %d certificates; "+
		"first success %.2f s after restart was begun (%.2f s after Redis answered PING); "+
		"GetCACaps %d/%d answered; %d challenges used before the crash all still refused",
		restarting.Sub(killed).Round(time.Millisecond), during, duringFail, straddle, straddleOK, cut, cutOK, before, beforeOK, after, afterOK,
		firstOK.Sub(restarting).Seconds(), firstOK.Sub(restarted).Seconds(), probes-probeFails, probes, len(okBefore))
}

// replayed reports whether a gateway refused o (sent with key) as replayed, from its
// notifications: the wire only says badRequest.
func replayed(gws [2]*gateway, key *rsa.PrivateKey, o outcome) bool {
	for _, g := range gws {
		for _, n := range g.env.Notifier.Notifications() {
			if n.Outcome == crp.OutcomeFailed && n.Reason == crp.ReasonReplayed && n.CSR != nil &&
				key.PublicKey.Equal(n.CSR.PublicKey) && !n.IssuedAt.Before(o.start) && !n.IssuedAt.After(o.end) {
				return true
			}
		}
	}
	return false
}
