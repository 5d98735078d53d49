package pgstore_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/internal/pgtest"
	"github.com/scepkit/scepkit/pgstore"
	"github.com/scepkit/scepkit/scep"
)

// gateway is one scep.Server + RegistrationPoint on its own port, with its own
// connection pool to the shared database (as a separate process would have).
type gateway struct {
	env   *crptest.Env
	url   string
	store *pgstore.Store
}

// twoGateways assembles two gateways sharing a CA, an RA, the MDM's key and one
// PostgreSQL database for everything they remember.
func twoGateways(t *testing.T, dsn string) [2]*gateway {
	t.Helper()
	return twoGatewaysWith(t, dsn, func() challenge.ReplayStore { return nil })
}

// twoGatewaysWith is twoGateways with each gateway's challenge claims (and decision
// claims) in the store replay returns, when it returns one; the rest stays in
// PostgreSQL.
func twoGatewaysWith(t *testing.T, dsn string, replay func() challenge.ReplayStore) [2]*gateway {
	t.Helper()
	var gws [2]*gateway
	var first *crptest.Env
	for i := range gws {
		store, err := pgstore.Open(context.Background(), dsn, nil)
		require.NoError(t, err)
		t.Cleanup(store.Close)
		env, err := crptest.New(crptest.Options{Gateway: "gateway.example", Share: first, Store: store, Replay: replay()})
		require.NoError(t, err)
		if first == nil {
			first = env
		}
		ts := httptest.NewServer(env.Server)
		t.Cleanup(ts.Close)
		gws[i] = &gateway{env: env, url: ts.URL, store: store}
	}
	return gws
}

var (
	keysOnce sync.Once
	keys     []*rsa.PrivateKey
)

func deviceKeys() []*rsa.PrivateKey {
	keysOnce.Do(func() {
		for range 8 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			keys = append(keys, k)
		}
	})
	return keys
}

func csrFor(t testing.TB, key *rsa.PrivateKey, user, challenge string) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: user}}, key)
	require.NoError(t, err)
	der, err = scep.AddChallengePassword(der, challenge, key, nil)
	require.NoError(t, err)
	return der
}

type request struct {
	challenge, gw int
	key           *rsa.PrivateKey
	csr           []byte
	cert          *x509.Certificate
	err           error
}

var hc = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 60 * time.Second}

func (r *request) send(ctx context.Context, gws [2]*gateway) {
	r.cert, r.err = (&scep.Client{URL: gws[r.gw].url, HTTPClient: hc, CAFingerprint: gws[r.gw].env.CAFingerprint()}).Enroll(ctx, r.csr, r.key)
}

var demoUsers = [][2]string{{"alice@example.com", "alice-laptop"}, {"bob@example.com", "bob-phone"}}

func TestGatewaysOnePostgres(t *testing.T) {
	srv := pgtest.Start(t)
	keys := deviceKeys()
	ctx := context.Background()

	// 200 enrollments spread over two gateways on one database; 40 challenges are
	// presented twice, at both gateways at once, with different keys (a stolen
	// challenge racing the device): exactly one certificate per challenge, every
	// duplicate FAILURE badRequest, every certificate in the shared inventory.
	t.Run("two-gateways-one-certificate-per-challenge", func(t *testing.T) {
		gws := twoGateways(t, srv.NewDatabase(t))
		raceAtBoth(t, gws, 120, 40)
	})

	// A pending request approved at both gateways at once issues one certificate;
	// the other approval gets ErrDecided; the device's poll at either gateway gets it.
	t.Run("pending-approved-at-both-once", func(t *testing.T) {
		gws := twoGateways(t, srv.NewDatabase(t))
		for _, g := range gws {
			g.env.Templates[crptest.TemplateName].RequiresApproval = true
		}
		u := demoUsers[0]
		ch, _, err := gws[0].env.Challenge(u[0], u[1], 0)
		require.NoError(t, err)
		r := &request{gw: 0, key: keys[0], csr: csrFor(t, keys[0], u[0], ch)}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second) // the client polls until then
		r.send(pctx, gws)
		cancel()
		require.ErrorIs(t, r.err, scep.ErrPending, "the request waits for approval")
		pending, err := gws[1].store.Pending(ctx, "", 0)
		require.NoError(t, err)
		require.Len(t, pending, 1, "the other gateway lists it")
		id := pending[0].TransactionID

		var wg sync.WaitGroup
		results := make([]error, 2)
		certs := make([]*x509.Certificate, 2)
		gate := make(chan struct{})
		for i, g := range gws {
			wg.Go(func() { <-gate; certs[i], results[i] = g.env.RP.Approve(ctx, id) })
		}
		close(gate)
		wg.Wait()
		ok, decided := 0, 0
		for i, err := range results {
			switch {
			case err == nil:
				ok++
				require.NotNil(t, certs[i])
			case errors.Is(err, crp.ErrDecided):
				decided++
			default:
				t.Fatalf("approve: %v", err)
			}
		}
		require.Equal(t, 1, ok)
		require.Equal(t, 1, decided)
		require.Equal(t, 1, gws[0].env.Issuer.Count()+gws[1].env.Issuer.Count(), "one certificate signed")
		pending, err = gws[0].store.Pending(ctx, "", 0)
		require.NoError(t, err)
		require.Empty(t, pending, "decided: no longer pending")
	})

	// PostgreSQL stopped while devices enroll through two gateways: every enrollment
	// that starts and ends while it is down gets a CertRep FAILURE and no certificate
	// is signed for it; when it is back, enrollments succeed again. Every certificate
	// a device received is in the inventory, and no challenge yields two.
	t.Run("postgres-stopped-mid-load", func(t *testing.T) {
		gws := twoGateways(t, srv.NewDatabase(t))
		type attempt struct {
			start, end time.Time
			cert       *x509.Certificate
			err        error
		}
		var mu sync.Mutex
		var attempts []attempt
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					u := demoUsers[w%2]
					ch, _, err := gws[0].env.Challenge(u[0], u[1], 0)
					if err != nil {
						t.Error(err)
						return
					}
					r := &request{gw: (w + i) % 2, key: keys[w], csr: csrFor(t, keys[w], u[0], ch)}
					a := attempt{start: time.Now()}
					rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
					r.send(rctx, gws)
					cancel()
					a.end, a.cert, a.err = time.Now(), r.cert, r.err
					mu.Lock()
					attempts = append(attempts, a)
					mu.Unlock()
				}
			})
		}
		time.Sleep(1500 * time.Millisecond)
		srv.Kill()
		down := time.Now()
		signedBefore := gws[0].env.Issuer.Count() + gws[1].env.Issuer.Count()
		time.Sleep(2 * time.Second)
		signedDown := gws[0].env.Issuer.Count() + gws[1].env.Issuer.Count() - signedBefore
		up := time.Now()
		srv.Restart()
		time.Sleep(3 * time.Second)
		close(stop)
		wg.Wait()

		var during, after, received int
		for _, a := range attempts {
			if a.err == nil {
				received++
				got, err := gws[0].store.Lookup(ctx, a.cert.SerialNumber)
				require.NoError(t, err, "a certificate a device received is not in the inventory")
				require.Equal(t, a.cert.Raw, got.Certificate.Raw)
			}
			switch {
			case a.start.After(down) && a.end.Before(up):
				during++
				var fe *scep.FailError
				require.ErrorAs(t, a.err, &fe, "while PostgreSQL is down: a CertRep FAILURE, not %v", a.err)
			case a.start.After(up.Add(time.Second)) && a.err == nil:
				after++
			}
		}
		require.NotZero(t, during, "no enrollment while PostgreSQL was down: the test proves nothing")
		require.LessOrEqual(t, signedDown, 1, "the CA signed while PostgreSQL was down (one claimed just before may finish)")
		require.NotZero(t, after, "no enrollment succeeded after PostgreSQL came back")
		t.Logf("%d attempts: %d while down (all FAILURE), %d certificates received, %d after recovery",
			len(attempts), during, received, after)
	})
}

// raceAtBoth enrolls singles+pairs challenges over two gateways (alternating users and
// gateways, 16 at a time); the last pairs challenges are presented twice, at both
// gateways at once, with different keys (a stolen challenge racing the device). It
// requires exactly one certificate per challenge, every duplicate refused with a
// CertRep FAILURE badRequest, both gateways signing, and every certificate in the
// inventory gws[1] reads. It returns the certificates and the challenges.
func raceAtBoth(t *testing.T, gws [2]*gateway, singles, pairs int) ([]*x509.Certificate, []string) {
	t.Helper()
	ctx := context.Background()
	keys := deviceKeys()
	var jobs [][]*request
	var challenges []string
	for i := range singles + pairs {
		u := demoUsers[i%2]
		ch, _, err := gws[i%2].env.Challenge(u[0], u[1], 0)
		require.NoError(t, err)
		challenges = append(challenges, ch)
		k := keys[i%len(keys)]
		job := []*request{{challenge: i, gw: i % 2, key: k, csr: csrFor(t, k, u[0], ch)}}
		if i >= singles {
			k2 := keys[(i+1)%len(keys)]
			job = append(job, &request{challenge: i, gw: 1 - i%2, key: k2, csr: csrFor(t, k2, u[0], ch)})
		}
		jobs = append(jobs, job)
	}
	signed0, signed1 := gws[0].env.Issuer.Count(), gws[1].env.Issuer.Count()
	start := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, job := range jobs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			var inner sync.WaitGroup
			gate := make(chan struct{})
			for _, r := range job {
				inner.Go(func() { <-gate; r.send(ctx, gws) })
			}
			close(gate)
			inner.Wait()
		})
	}
	wg.Wait()
	wins := make([]int, singles+pairs)
	refused := 0
	var certs []*x509.Certificate
	for _, job := range jobs {
		for _, r := range job {
			if r.err == nil {
				wins[r.challenge]++
				certs = append(certs, r.cert)
				continue
			}
			var fe *scep.FailError
			require.ErrorAs(t, r.err, &fe, "a refusal is a CertRep FAILURE, not a transport error")
			require.Equal(t, scep.BadRequest, fe.Info)
			refused++
		}
	}
	for i, n := range wins {
		require.Equal(t, 1, n, "challenge %d: certificates issued", i)
	}
	require.Equal(t, pairs, refused)
	by0, by1 := gws[0].env.Issuer.Count()-signed0, gws[1].env.Issuer.Count()-signed1
	require.Equal(t, singles+pairs, by0+by1, "certificates the CA signed")
	require.NotZero(t, by0)
	require.NotZero(t, by1)
	for _, c := range certs {
		got, err := gws[1].store.Lookup(ctx, c.SerialNumber)
		require.NoError(t, err, "every certificate is in the shared inventory")
		require.Equal(t, c.Raw, got.Certificate.Raw)
	}
	t.Logf("%d enrollments (%d challenges, %d presented at both gateways at once) in %v: %d certificates (%d + %d), %d refused",
		singles+2*pairs, singles+pairs, pairs, time.Since(start).Round(time.Millisecond), by0+by1, by0, by1, refused)
	return certs, challenges
}
