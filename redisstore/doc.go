// Package redisstore keeps the state that scepkit gateways running side by side must
// share, in Redis (github.com/redis/go-redis/v9): one-time use of challenges and the
// transaction records that let polls and resends get the same answer. It is its own
// package so that programs without Redis do not import a Redis client.
//
// A [Store] is a [challenge.ReplayStore] (with [challenge.Releaser]), a
// [crp.TransactionStore] and a [crp.PendingLister]. Give the same Store, or Stores with the same Prefix on the
// same Redis, to every gateway: set it as the challenge.Verifier's Replay and the
// crp.RegistrationPoint's Transactions. The gateways must also share the challenge
// issuer's public keys, the gateway identity (the challenges' audience) and, behind a
// load balancer, the RA certificate and key. A gateway holds no other state.
//
// # Claims
//
// A challenge's jti is claimed with one command, SET prefix+"claim:"+jti token NX PX
// ttl, where ttl runs to the challenge's expiry plus the verifier's leeway: of any
// number of concurrent claims, at any number of gateways, exactly one succeeds; there
// is no read-then-write. The token, random per call, makes the claim safe to retry (a
// go-redis retry after a lost reply finds its own token and succeeds rather than
// calling itself a replay). Release is a plain DEL (see [Store.Release]).
//
// # Redis down
//
// When Redis cannot be asked, Claim returns an error that is not
// [challenge.ErrReplayed]; crp then answers CertRep FAILURE (badRequest) and issues
// nothing, and the device retries with the same challenge, which was never claimed.
// Nothing else a gateway serves needs Redis: GetCACaps, GetCACert and GetCRL keep
// answering. go-redis reconnects by itself when Redis is back.
//
// Measured here (TestRedisOutageUnderLoad: two gateways, four devices enrolling in a
// loop, Redis killed for 4 s, go-redis with MaxRetries 1 and DialerRetries 1; 2-core
// machine shared with other jobs, -race; five runs): 79-92 requests sent and answered during
// the outage, all FAILURE, no certificate; GetCACaps answered every probe; first
// certificate 0.24-0.56 s after Redis answered PING again. With go-redis's default
// retries (3 retries of 5 dial attempts) a command takes about 1.7 s to give up, so a
// request needing two commands waits about 3.4 s for its FAILURE. After PoolSize
// consecutive dial errors the go-redis pool answers with the last dial error without
// dialing and probes once a second, so a few requests still fail in the first second
// after Redis is back.
//
// Beyond its maxclients, Redis closes each new connection as it opens it; the client
// reads "ERR max number of clients reached" or, mostly, finds the connection closed
// as it writes ("write: broken pipe"), which go-redis does not retry. A command that
// meets either waits, up to [ClientsWait], for one of the pool's own connections
// (sending the command again on it), so that gateways whose pools could open more
// connections than Redis grants them fail nothing while those connections are merely
// busy (at a gateway, a certificate the CA has signed is withheld when its record
// meets a refused connection). A client that holds no connection at all
// while others hold every one Redis grants still fails, after ClientsWait: set
// maxclients above the sum of the gateways' PoolSize.
//
// # Durability
//
// A claim lives only in Redis: a Redis that restarts empty forgets every claim, and a
// challenge used before the restart could be used again within its hour. Run Redis
// with the append-only file and appendfsync always (or replicate and wait for the
// replica) when that matters. With appendfsync always, the outage test re-presents
// every challenge used before the kill after the restart: all are refused as
// replayed. If Redis applied a claim but its reply never arrived, the challenge stays
// claimed and the device needs a new one from the MDM.
//
// # Transaction records
//
// A [crp.Record] is stored as JSON (certificate as DER) under prefix+"tx:"+id with a
// TTL ending at Record.Expires. Client-chosen transaction ids longer than 128 bytes are
// replaced in the key by their SHA-256, under prefix+"tx#sha256:", a namespace no
// literal id reaches.
//
// The ids of PENDING records are also members of the sorted set prefix+"pending",
// scored by their record's expiry, so that an operator can list them
// ([Store.Pending]). A PENDING record is indexed before it is written and a decided
// one removed after, each one command on one key: a failure in between leaves an id
// whose record is not pending, which Pending skips and removes. Every PENDING write
// drops the ids whose records have expired, so the set holds the live pending
// requests and no more (a pending request has passed the challenge checks: an
// anonymous client cannot add to it). Releases before the index wrote pending records
// without it: the first Pending on a Redis and prefix indexes those it finds (reading
// every record once) and sets prefix+"pending-indexed"; a gateway of such a release
// still running after that writes pending records Pending does not list, so upgrade
// every gateway before deciding requests by the list.
//
// # Cost
//
// BenchmarkRedisClaim (Claim of fresh ids, RunParallel, loopback redis-server 7.0 on
// the same 2-core machine): 23-42 µs per claim, 432 B and 14 allocations; a replayed
// claim (two round trips) 41-76 µs. An enrollment spends milliseconds in RSA alone.
package redisstore
