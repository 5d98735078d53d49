package redisstore_test

import (
	"context"
	"fmt"
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

// TestMaxClientsReached: Redis refuses a gateway's new connections beyond its
// maxclients ("ERR max number of clients reached") while the go-redis pool would open
// more; the client mostly sees the connection closed as it writes ("write: broken
// pipe"), which go-redis does not retry. A command then waits for one of the pool's
// own connections, up to redisstore.ClientsWait, rather than failing while they are
// merely busy: before, calls failed at once, and at two gateways under load a
// certificate the CA had signed was withheld, its challenge spent, when its record
// could not be written (67 of 3,178 signed with maxclients 3).
// With no connection to be had at all, a call fails after ClientsWait (not as a
// replay), and works once one is free.
func TestMaxClientsReached(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	// Two gateways, each with a client as cmd/scepkit configures it, and a
	// connection from the start (as a gateway's readiness check gives it). Redis
	// grants them one more.
	var stores [2]*redisstore.Store
	for i := range stores {
		rc := redis.NewClient(&redis.Options{Addr: srv.Addr, DialTimeout: time.Second, ReadTimeout: time.Second,
			WriteTimeout: time.Second, MaxRetries: 1})
		defer rc.Close()
		stores[i] = &redisstore.Store{Client: rc, Prefix: "test:"}
		require.NoError(t, stores[i].Ping(ctx))
	}
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	require.NoError(t, admin.ConfigSet(ctx, "maxclients", "3").Err())
	require.NoError(t, admin.Close())
	until := time.Now().Add(time.Hour)

	t.Run("busy", func(t *testing.T) {
		const n = 64
		errs := make([]error, 3*n)
		var wg sync.WaitGroup
		for round := range 4 {
			gate := make(chan struct{})
			for i := range n {
				s := stores[i%2]
				wg.Go(func() { <-gate; errs[3*i] = s.Claim(ctx, fmt.Sprintf("jti-%d-%d", round, i), until) })
				wg.Go(func() {
					<-gate
					errs[3*i+1] = s.Put(ctx, &crp.Record{TransactionID: fmt.Sprintf("tx-%d", i), Status: scep.Success, Expires: until})
				})
				wg.Go(func() { <-gate; _, errs[3*i+2] = s.Pending(ctx, "", 1) })
			}
			close(gate)
			wg.Wait()
			for i, err := range errs {
				require.NoError(t, err, "round %d, call %d", round, i)
			}
		}
	})

	t.Run("no-connection-at-all", func(t *testing.T) {
		// Others hold every connection Redis grants, and this client has none.
		fresh := redis.NewClient(&redis.Options{Addr: srv.Addr, DialTimeout: time.Second, ReadTimeout: time.Second,
			WriteTimeout: time.Second, MaxRetries: 1})
		defer fresh.Close()
		s := &redisstore.Store{Client: fresh, Prefix: "test:"}
		for _, s := range stores {
			s.Client.Close() // the gateways' connections are given back to Redis
		}
		var others []*redis.Client
		for range 3 {
			o := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
			require.NoError(t, o.Ping(ctx).Err())
			others = append(others, o)
		}
		start := time.Now()
		err := s.Claim(ctx, "jti-waiting", until)
		require.Error(t, err)
		require.NotErrorIs(t, err, challenge.ErrReplayed)
		require.Less(t, time.Since(start), redisstore.ClientsWait+2*time.Second)
		for _, o := range others {
			o.Close()
		}
		require.Eventually(t, func() bool { return s.Claim(ctx, "jti-waiting", until) == nil }, 5*time.Second,
			50*time.Millisecond, "a connection is free again")
	})
}
