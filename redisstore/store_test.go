package redisstore_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/internal/redistest"
	"github.com/scepkit/scepkit/redisstore"
	"github.com/scepkit/scepkit/scep"
)

func newStore(t testing.TB) (*redisstore.Store, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	return &redisstore.Store{Client: srv.Client(t), Prefix: "test:"}, srv
}

func TestClaim(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	until := time.Now().Add(time.Hour)

	require.NoError(t, s.Claim(ctx, "jti-1", until))
	require.ErrorIs(t, s.Claim(ctx, "jti-1", until), challenge.ErrReplayed)
	require.ErrorIs(t, s.Claim(ctx, "jti-1", until), challenge.ErrReplayed)
	require.NoError(t, s.Claim(ctx, "jti-2", until), "another id is independent")

	err := s.Claim(ctx, "", until)
	require.ErrorIs(t, err, challenge.ErrMissingClaim, "an empty id is never fresh")
	require.NotErrorIs(t, err, challenge.ErrReplayed)

	// The key lives until until (PX), under the prefix.
	ttl := s.Client.PTTL(ctx, "test:claim:jti-1").Val()
	require.InDelta(t, time.Hour.Seconds(), ttl.Seconds(), 5)

	// A deadline already past is kept one minute, not forgotten.
	require.NoError(t, s.Claim(ctx, "late", time.Now().Add(-time.Hour)))
	require.ErrorIs(t, s.Claim(ctx, "late", until), challenge.ErrReplayed)
	ttl = s.Client.PTTL(ctx, "test:claim:late").Val()
	require.InDelta(t, time.Minute.Seconds(), ttl.Seconds(), 5)

	// Another prefix on the same Redis is another deployment.
	other := &redisstore.Store{Client: s.Client, Prefix: "other:"}
	require.NoError(t, other.Claim(ctx, "jti-1", until))

	// The Store's clock sets the TTL.
	skewed := &redisstore.Store{Client: s.Client, Prefix: "test:",
		Now: func() time.Time { return until.Add(-10 * time.Minute) }}
	require.NoError(t, skewed.Claim(ctx, "clock", until))
	ttl = s.Client.PTTL(ctx, "test:claim:clock").Val()
	require.InDelta(t, (10 * time.Minute).Seconds(), ttl.Seconds(), 5)
}

func TestClaimExpires(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	require.NoError(t, s.Claim(ctx, "jti", time.Now().Add(time.Hour)))
	// Shorten the claim (claims last at least a minute) and let Redis expire it.
	require.True(t, s.Client.PExpire(ctx, "test:claim:jti", 50*time.Millisecond).Val())
	require.Eventually(t, func() bool { return s.Client.Exists(ctx, "test:claim:jti").Val() == 0 },
		5*time.Second, 20*time.Millisecond)
	require.NoError(t, s.Claim(ctx, "jti", time.Now().Add(time.Hour)), "an expired claim is forgotten")
}

func TestRelease(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	until := time.Now().Add(time.Hour)
	require.NoError(t, s.Claim(ctx, "jti", until))
	require.NoError(t, s.Release(ctx, "jti"))
	require.NoError(t, s.Claim(ctx, "jti", until), "a released challenge can be presented again")
	require.ErrorIs(t, s.Claim(ctx, "jti", until), challenge.ErrReplayed)
	require.NoError(t, s.Release(ctx, "never-claimed"))
	require.NoError(t, s.Release(ctx, ""))
}

// Many claimants, over several connections (two Stores stand for two gateways), race
// for each id: exactly one wins.
func TestConcurrentClaims(t *testing.T) {
	ctx := context.Background()
	s1, srv := newStore(t)
	s2 := &redisstore.Store{Client: srv.Client(t), Prefix: "test:"}
	const ids, claimants = 20, 32
	until := time.Now().Add(time.Hour)
	for i := range ids {
		id := fmt.Sprintf("jti-%d", i)
		var wins, replays, others int
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := make(chan struct{})
		for j := range claimants {
			s := s1
			if j%2 == 1 {
				s = s2
			}
			wg.Go(func() {
				<-start
				err := s.Claim(ctx, id, until)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case errors.Is(err, challenge.ErrReplayed):
					replays++
				default:
					others++
					t.Errorf("claim: %v", err)
				}
			})
		}
		close(start)
		wg.Wait()
		require.Equal(t, 1, wins, id)
		require.Equal(t, claimants-1, replays, id)
	}
}

func testCert(t testing.TB) *x509.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "alice@example.com"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}

func TestTransactions(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	_, err := s.Get(ctx, "unknown")
	require.ErrorIs(t, err, crp.ErrNotFound)

	expires := time.Now().Add(2 * time.Hour).Truncate(time.Millisecond)
	cert := testCert(t)
	in := &crp.Record{TransactionID: "tid-1", SignerKey: []byte{1, 2}, Request: []byte{3, 4}, CSR: []byte{5, 6},
		Status: scep.Success, Certificate: cert, UserID: "alice@example.com", DeviceID: "alice-laptop",
		ProfileID: "demo-profile", Template: "scepkit-device", Expires: expires}
	require.NoError(t, s.Put(ctx, in))
	out, err := s.Get(ctx, "tid-1")
	require.NoError(t, err)
	require.True(t, out.Certificate.Equal(cert))
	require.True(t, out.Expires.Equal(expires))
	out.Certificate, in.Certificate = nil, nil
	out.Expires, in.Expires = time.Time{}, time.Time{}
	require.Equal(t, in, out)
	ttl := s.Client.PTTL(ctx, "test:tx:tid-1").Val()
	require.InDelta(t, (2 * time.Hour).Seconds(), ttl.Seconds(), 5, "TTL from Record.Expires")

	// Put replaces; a failure keeps its phase and reason.
	fail := &crp.Record{TransactionID: "tid-1", Status: scep.Failure, Phase: crp.PhaseGenuineness,
		Reason: crp.ReasonReplayed, Expires: expires}
	require.NoError(t, s.Put(ctx, fail))
	out, err = s.Get(ctx, "tid-1")
	require.NoError(t, err)
	require.Equal(t, fail, &crp.Record{TransactionID: out.TransactionID, Status: out.Status, Phase: out.Phase,
		Reason: out.Reason, Expires: expires})
	require.Nil(t, out.Certificate)

	// A zero Expires is kept DefaultRecordTTL.
	require.NoError(t, s.Put(ctx, &crp.Record{TransactionID: "forever", Status: scep.Pending}))
	ttl = s.Client.PTTL(ctx, "test:tx:forever").Val()
	require.InDelta(t, redisstore.DefaultRecordTTL.Seconds(), ttl.Seconds(), 5)

	// A record already expired deletes the id.
	require.NoError(t, s.Put(ctx, &crp.Record{TransactionID: "tid-1", Expires: time.Now().Add(-time.Second)}))
	_, err = s.Get(ctx, "tid-1")
	require.ErrorIs(t, err, crp.ErrNotFound)

	// Redis expires records at Expires.
	require.NoError(t, s.Put(ctx, &crp.Record{TransactionID: "short", Status: scep.Pending,
		Expires: time.Now().Add(300 * time.Millisecond)}))
	_, err = s.Get(ctx, "short")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := s.Get(ctx, "short")
		return errors.Is(err, crp.ErrNotFound)
	}, 5*time.Second, 50*time.Millisecond)

	// The Store's clock decides too (a record past Expires by Now is not returned).
	require.NoError(t, s.Put(ctx, &crp.Record{TransactionID: "clock", Expires: time.Now().Add(time.Hour)}))
	late := &redisstore.Store{Client: s.Client, Prefix: "test:", Now: func() time.Time { return time.Now().Add(2 * time.Hour) }}
	_, err = late.Get(ctx, "clock")
	require.ErrorIs(t, err, crp.ErrNotFound)

	// A client-chosen transactionID of any size makes a bounded key.
	long := strings.Repeat("9", 5000)
	require.NoError(t, s.Put(ctx, &crp.Record{TransactionID: long, Status: scep.Pending, Expires: expires}))
	out, err = s.Get(ctx, long)
	require.NoError(t, err)
	require.Equal(t, long, out.TransactionID)
	_, err = s.Get(ctx, long[:4999])
	require.ErrorIs(t, err, crp.ErrNotFound)
	for _, k := range s.Client.Keys(ctx, "*").Val() {
		require.Less(t, len(k), 100, k)
		require.True(t, strings.HasPrefix(k, "test:"), k)
	}

	// A value that is not ours is an error, not a record and not "not found".
	require.NoError(t, s.Client.Set(ctx, "test:tx:junk", "{not json", time.Minute).Err())
	_, err = s.Get(ctx, "junk")
	require.Error(t, err)
	require.NotErrorIs(t, err, crp.ErrNotFound)
}

// With Redis down, every operation fails with an error that is neither a replay nor
// "not found" (crp then refuses for now), fast; after a restart the same Store works
// again.
func TestRedisDown(t *testing.T) {
	ctx := context.Background()
	s, srv := newStore(t)
	until := time.Now().Add(time.Hour)
	require.NoError(t, s.Claim(ctx, "before", until))
	srv.Kill()

	start := time.Now()
	err := s.Claim(ctx, "during", until)
	require.Error(t, err)
	require.NotErrorIs(t, err, challenge.ErrReplayed)
	require.NotErrorIs(t, err, challenge.ErrMissingClaim)
	require.Less(t, time.Since(start), 5*time.Second)
	t.Logf("Claim with Redis down failed in %v: %v", time.Since(start).Round(time.Millisecond), err)

	_, err = s.Get(ctx, "tid")
	require.Error(t, err)
	require.NotErrorIs(t, err, crp.ErrNotFound)
	require.Error(t, s.Put(ctx, &crp.Record{TransactionID: "tid", Expires: until}))
	require.Error(t, s.Release(ctx, "before"))

	srv.Restart() // empty: persistence is off
	require.NoError(t, s.Claim(ctx, "during", until))
	require.ErrorIs(t, s.Claim(ctx, "during", until), challenge.ErrReplayed)

	// A cancelled context decides nothing either.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	err = s.Claim(cctx, "cancelled", until)
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, challenge.ErrReplayed)
	require.Equal(t, int64(0), s.Client.Exists(ctx, "test:claim:cancelled").Val())
}

func TestNoClient(t *testing.T) {
	s := &redisstore.Store{}
	require.Error(t, s.Claim(context.Background(), "x", time.Now()))
	require.NotErrorIs(t, s.Claim(context.Background(), "x", time.Now()), challenge.ErrReplayed)
	_, err := s.Get(context.Background(), "x")
	require.NotErrorIs(t, err, crp.ErrNotFound)
}

var _ redis.UniversalClient = (*redis.ClusterClient)(nil)

// TestPendingIndexBounded: the pending index holds the live pending requests only:
// expired ones are dropped by the next pending write, decided ones when decided, and
// an id left behind by a half-done write is skipped and removed by Pending.
func TestPendingIndexBounded(t *testing.T) {
	srv := redistest.Start(t)
	rc := srv.Client(t)
	ctx := context.Background()
	now := time.Now()
	s := &redisstore.Store{Client: rc, Prefix: "bounded:", Now: func() time.Time { return now }}
	for i := range 200 {
		require.NoError(t, s.Put(ctx, &crp.Record{TransactionID: fmt.Sprintf("old-%03d", i), Status: scep.Pending,
			Expires: now.Add(time.Minute)}))
	}
	require.Equal(t, int64(200), rc.ZCard(ctx, "bounded:pending").Val())
	now = now.Add(2 * time.Minute) // they have all expired
	require.NoError(t, s.Put(ctx, &crp.Record{TransactionID: "live", Status: scep.Pending, Expires: now.Add(time.Hour)}))
	require.Equal(t, int64(1), rc.ZCard(ctx, "bounded:pending").Val())

	require.NoError(t, s.Put(ctx, &crp.Record{TransactionID: "live", Status: scep.Failure, Expires: now.Add(time.Hour)}))
	require.Zero(t, rc.ZCard(ctx, "bounded:pending").Val(), "decided")

	// An index entry whose record was never written (a Put that failed after
	// indexing): not listed, and removed.
	require.NoError(t, rc.ZAdd(ctx, "bounded:pending", redis.Z{Score: float64(now.Add(time.Hour).UnixMilli()), Member: "ghost"}).Err())
	list, err := s.Pending(ctx, "", 0)
	require.NoError(t, err)
	require.Empty(t, list)
	require.Zero(t, rc.ZCard(ctx, "bounded:pending").Val())
}

// TestPing: Ping (crp.Pinger) answers while Redis does, and fails once it stops.
func TestPing(t *testing.T) {
	s, srv := newStore(t)
	require.NoError(t, s.Ping(context.Background()))
	srv.Stop()
	require.Error(t, s.Ping(context.Background()))
}
