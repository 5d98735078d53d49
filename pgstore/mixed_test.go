package pgstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/internal/pgtest"
	"github.com/scepkit/scepkit/internal/redistest"
	"github.com/scepkit/scepkit/redisstore"
	"github.com/scepkit/scepkit/scep"
)

// Redis for challenge claims, PostgreSQL for the rest: two gateways whose Verifier
// claims challenges in one Redis and whose transaction records, certificate
// inventory and revocations are in one PostgreSQL database. The backends mix: exactly
// one certificate per challenge (challenges presented at both gateways at once), every
// certificate in the PostgreSQL inventory, every claim in Redis and none in
// PostgreSQL; after both gateways and Redis restart, every challenge used before is
// refused as replayed and nothing more is signed.
func TestMixedRedisClaimsPostgresRest(t *testing.T) {
	pg := pgtest.Start(t)
	rd := redistest.StartWith(t, redistest.Options{Durable: true}) // appendfsync always
	dsn := pg.NewDatabase(t)
	ctx := context.Background()
	const prefix = "scepkit-mixed:"
	claims := func() challenge.ReplayStore {
		// Each gateway has its own connection, as a separate process would.
		c := redis.NewClient(&redis.Options{Addr: rd.Addr, DialTimeout: time.Second, ReadTimeout: time.Second,
			WriteTimeout: time.Second, MaxRetries: 1, DialerRetries: 1})
		t.Cleanup(func() { c.Close() })
		return &redisstore.Store{Client: c, Prefix: prefix}
	}

	const singles, pairs = 60, 20
	gws := twoGatewaysWith(t, dsn, claims)
	certs, challenges := raceAtBoth(t, gws, singles, pairs)

	pool, err := pgxpool.New(ctx, dsn)
	require.NoError(t, err)
	defer pool.Close()
	rows := func(table string) int {
		t.Helper()
		var n int
		require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n))
		return n
	}
	require.Equal(t, len(certs), rows("scepkit_certificates"), "the inventory is PostgreSQL's")
	require.Zero(t, rows("scepkit_claims"), "claims went to Redis, not PostgreSQL")
	rc := rd.Client(t)
	inRedis, err := rc.Keys(ctx, prefix+"claim:*").Result()
	require.NoError(t, err)
	require.Len(t, inRedis, singles+pairs, "one claim per challenge in Redis")
	txInRedis, err := rc.Keys(ctx, prefix+"tx:*").Result()
	require.NoError(t, err)
	require.Empty(t, txInRedis, "transaction records went to PostgreSQL, not Redis")
	// Transaction records are in PostgreSQL (scep.Client derives the transactionID
	// from the key, and there are fewer keys than enrollments: a record per key).
	txIDs := map[string]bool{}
	for _, c := range certs {
		got, err := gws[0].store.Lookup(ctx, c.SerialNumber)
		require.NoError(t, err)
		require.Contains(t, []string{demoUsers[0][0], demoUsers[1][0]}, got.UserID, "the inventory knows the user")
		_, err = gws[1].store.Get(ctx, got.TransactionID)
		require.NoError(t, err, "the transaction record is in PostgreSQL")
		txIDs[got.TransactionID] = true
	}
	require.Equal(t, len(txIDs), rows("scepkit_transactions"))

	// Restart everything that holds state: Redis is killed (as a crash would) and
	// comes back from its append-only file; two new gateways open the same
	// database. Every challenge used before is refused as replayed (phase 2:
	// badRequest) at either gateway, with a new key and CSR (not a resend).
	rd.Kill()
	rd.Restart()
	again := twoGatewaysWith(t, dsn, claims)
	keys := deviceKeys()
	for i, ch := range challenges {
		u := demoUsers[i%2]
		k := keys[(i+3)%len(keys)]
		r := &request{gw: (i + 1) % 2, key: k, csr: csrFor(t, k, u[0], ch)}
		r.send(ctx, again)
		var fe *scep.FailError
		require.ErrorAs(t, r.err, &fe, "challenge %d replayed after the restart", i)
		require.Equal(t, scep.BadRequest, fe.Info)
	}
	require.Zero(t, again[0].env.Issuer.Count()+again[1].env.Issuer.Count(), "signed after the restart")
	require.Equal(t, len(certs), rows("scepkit_certificates"))

	// And the restarted gateways still enroll with a fresh challenge.
	u := demoUsers[0]
	ch, _, err := again[0].env.Challenge(u[0], u[1], 0)
	require.NoError(t, err)
	r := &request{gw: 1, key: keys[0], csr: csrFor(t, keys[0], u[0], ch)}
	r.send(ctx, again)
	require.NoError(t, r.err)
	_, err = again[0].store.Lookup(ctx, r.cert.SerialNumber)
	require.NoError(t, err)
}
