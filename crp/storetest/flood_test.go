package storetest_test

// A flood of refused requests that prove nothing (no challenge, a forged, expired,
// foreign or already used one, polls and GetCert for what does not exist, renewals
// signed by strangers, a device's transactionID taken with another key) must not grow
// any store: refusals of unauthenticated requests are never recorded (crp's
// retention rule). Run against every backend, driven through a RegistrationPoint.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/scepkit/scepkit/boltstore"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/internal/pgtest"
	"github.com/scepkit/scepkit/internal/redistest"
	"github.com/scepkit/scepkit/pgstore"
	"github.com/scepkit/scepkit/redisstore"
	"github.com/scepkit/scepkit/scep"
)

// floodSize is how many refused requests each backend takes in process (through
// RegistrationPoint.Respond, as scep.Server hands them over); floodHTTP more go over
// real HTTP through scep.Server.
const (
	floodSize = 5000
	floodHTTP = 40
)

// floodBackend is one backend under the flood. open returns the stores of a gateway
// over the backend's data (the same data at every call); size measures the backend
// while no gateway has it open.
type floodBackend struct {
	name string
	open func(t *testing.T) (store crp.Store, replay challenge.ReplayStore, tx crp.TransactionStore, close func())
	size func(t *testing.T) map[string]int64
	// grow bounds how much each size may grow (bytes of a file or of tables that
	// reuse their free pages); an absent size must not grow at all.
	grow map[string]int64
}

func TestRefusalFloodDoesNotGrowStores(t *testing.T) {
	for _, b := range []func(t *testing.T) floodBackend{memoryFlood, boltFlood, redisFlood, postgresFlood} {
		fb := b(t)
		t.Run(fb.name, func(t *testing.T) { runFlood(t, fb) })
	}
}

func memoryFlood(t *testing.T) floodBackend {
	m := &crp.MemoryStore{}
	return floodBackend{name: "memory",
		open: func(t *testing.T) (crp.Store, challenge.ReplayStore, crp.TransactionStore, func()) {
			return m, nil, nil, func() {}
		},
		size: func(t *testing.T) map[string]int64 {
			revs, err := m.RevokedSince(context.Background(), time.Time{})
			require.NoError(t, err)
			return map[string]int64{"claims": int64(m.MemoryReplayStore.Len()), "records": int64(m.MemoryTransactions.Len()),
				"certificates": int64(m.MemoryCertificates.Len()), "revocations": int64(len(revs))}
		}}
}

func boltFlood(t *testing.T) floodBackend {
	path := filepath.Join(t.TempDir(), "state.db")
	return floodBackend{name: "boltstore",
		open: func(t *testing.T) (crp.Store, challenge.ReplayStore, crp.TransactionStore, func()) {
			s, err := boltstore.Open(path, nil)
			require.NoError(t, err)
			return s, nil, nil, func() { require.NoError(t, s.Close()) }
		},
		size: func(t *testing.T) map[string]int64 {
			// Every key of every bucket, read with bbolt itself (the store is closed).
			db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
			require.NoError(t, err)
			defer db.Close()
			out := map[string]int64{}
			require.NoError(t, db.View(func(tx *bolt.Tx) error {
				return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
					out["keys in "+string(name)] = int64(b.Stats().KeyN)
					return nil
				})
			}))
			st, err := os.Stat(path)
			require.NoError(t, err)
			out["file bytes"] = st.Size()
			return out
		},
		// bbolt writes a transaction that changes nothing too (a claim of a used
		// challenge is decided in a write transaction); its pages are reused.
		grow: map[string]int64{"file bytes": 64 << 10}}
}

func redisFlood(t *testing.T) floodBackend {
	srv := redistest.Start(t)
	rc := srv.Client(t)
	rest := &crp.MemoryStore{} // Redis keeps claims and records only
	return floodBackend{name: "redisstore",
		open: func(t *testing.T) (crp.Store, challenge.ReplayStore, crp.TransactionStore, func()) {
			rs := &redisstore.Store{Client: rc}
			return rest, rs, rs, func() {}
		},
		size: func(t *testing.T) map[string]int64 {
			n, err := rc.DBSize(context.Background()).Result()
			require.NoError(t, err)
			return map[string]int64{"redis keys": n, "certificates": int64(rest.MemoryCertificates.Len()),
				"records in memory": int64(rest.MemoryTransactions.Len())}
		}}
}

func postgresFlood(t *testing.T) floodBackend {
	srv := pgtest.Start(t)
	dsn := srv.NewDatabase(t)
	tables := []string{"scepkit_claims", "scepkit_transactions", "scepkit_certificates", "scepkit_revocations"}
	return floodBackend{name: "pgstore",
		open: func(t *testing.T) (crp.Store, challenge.ReplayStore, crp.TransactionStore, func()) {
			s, err := pgstore.Open(context.Background(), dsn, nil)
			require.NoError(t, err)
			return s, nil, nil, s.Close
		},
		size: func(t *testing.T) map[string]int64 {
			ctx := context.Background()
			pool, err := pgxpool.New(ctx, dsn)
			require.NoError(t, err)
			defer pool.Close()
			out := map[string]int64{}
			var total int64
			for _, table := range tables {
				var rows, bytes int64
				// The table names are constants of this test.
				require.NoError(t, pool.QueryRow(ctx, "SELECT count(*), pg_total_relation_size('"+table+"') FROM "+table).
					Scan(&rows, &bytes))
				out["rows in "+table] = rows
				total += bytes
			}
			out["table bytes"] = total
			return out
		},
		// A claim of a used challenge locks its row (INSERT ... ON CONFLICT): no new
		// row, at most a page touched.
		grow: map[string]int64{"table bytes": 64 << 10}}
}

// gatewayOn assembles a gateway over fb's data, with the CA, RA and MDM key of first
// when it is not nil.
func gatewayOn(t *testing.T, fb floodBackend, first *crptest.Env) (*crptest.Env, func()) {
	store, replay, tx, closeStore := fb.open(t)
	env, err := crptest.New(crptest.Options{Gateway: "gateway.example", Share: first, Store: store, Replay: replay,
		Transactions: tx})
	require.NoError(t, err)
	return env, closeStore
}

// hostile is what a flooding sender holds.
type hostile struct {
	rsaKey          *rsa.PrivateKey
	self            *x509.Certificate // self-signed
	stranger        *x509.Certificate // a certificate of another CA, for renewals
	csr             *x509.CertificateRequest
	used, expired   string // a challenge a device used; one that expired
	forged, foreign string // signed by the sender's key; the MDM's, for another gateway
	legitTx         string // the device's transactionID
	caSubject       []byte // the gateway's CA
}

func runFlood(t *testing.T, fb floodBackend) {
	ctx := context.Background()
	h := &hostile{legitTx: "device-tx-1"}

	// A device enrolls once (a genuine challenge, used), then the gateway stops.
	env, closeStore := gatewayOn(t, fb, nil)
	devKey, senderKey := rsaKeys(t)
	devSelf, err := scep.SelfSigned(devKey, pkix.Name{CommonName: "alice@example.com"}, nil)
	require.NoError(t, err)
	h.used, _, err = env.Challenge("alice@example.com", "alice-laptop", 0)
	require.NoError(t, err)
	resp, err := env.RP.Respond(ctx, &scep.Request{MessageType: scep.PKCSReq, TransactionID: h.legitTx,
		CSR: csrOf(t, devKey, "alice@example.com"), ChallengePassword: h.used, Signer: devSelf})
	require.NoError(t, err)
	require.NotNil(t, resp.Certificate)
	deviceSerial := resp.Certificate.SerialNumber
	h.caSubject = env.CA.Certificate.RawSubject
	closeStore()
	before := fb.size(t)

	// The sender's material: its own keys, a challenge it signed itself, a genuine
	// one minted for another gateway, a genuine one that expired.
	h.rsaKey = senderKey
	h.self, err = scep.SelfSigned(h.rsaKey, pkix.Name{CommonName: "flood"}, nil)
	require.NoError(t, err)
	h.csr = csrOf(t, h.rsaKey, "alice@example.com")
	attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	req := challenge.Request{UserID: "alice@example.com", DeviceID: "alice-laptop", ProfileID: crptest.ProfileID,
		Audience: "gateway.example"}
	h.forged, _, err = (&challenge.Issuer{Name: env.Challenges.Name, Key: attacker}).Issue(req)
	require.NoError(t, err)
	other := req
	other.Audience = "another-gateway.example"
	h.foreign, _, err = env.Challenges.Issue(other)
	require.NoError(t, err)
	past := func() time.Time { return time.Now().Add(-2 * time.Hour) }
	h.expired, _, err = (&challenge.Issuer{Name: env.Challenges.Name, Key: env.Challenges.Key, Now: past}).Issue(req)
	require.NoError(t, err)
	h.stranger = strangerCertificate(t, h.rsaKey)

	// The gateway restarts on the same data and takes the flood.
	env2, closeStore2 := gatewayOn(t, fb, env)
	signed := env2.Issuer.Count()
	kinds := floodKinds(h)
	refusedBy := make([]map[scep.FailInfo]int, len(kinds))
	for i := range refusedBy {
		refusedBy[i] = map[scep.FailInfo]int{}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	jobs := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range jobs {
				k := i % len(kinds)
				_, err := env2.RP.Respond(ctx, kinds[k].request(fmt.Sprintf("flood-%d", i)))
				var fe *scep.FailError
				if !errors.As(err, &fe) {
					t.Errorf("%s: %v, want a CertRep FAILURE", kinds[k].name, err)
					continue
				}
				mu.Lock()
				refusedBy[k][fe.Info]++
				mu.Unlock()
			}
		})
	}
	for i := range floodSize {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	inProcess := time.Since(start)

	// Some of the same over real HTTP, through scep.Server and scep.Client.
	ts := httptest.NewServer(env2.Server)
	defer ts.Close()
	client := &scep.Client{URL: ts.URL, CAFingerprint: env2.CAFingerprint()}
	for i := range floodHTTP {
		ch := []string{"", "not a challenge", h.forged, h.foreign, h.used, h.expired}[i%6]
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: "alice@example.com"}}, h.rsaKey)
		require.NoError(t, err)
		if ch != "" {
			der, err = scep.AddChallengePassword(der, ch, h.rsaKey, nil)
			require.NoError(t, err)
		}
		_, err = client.Enroll(ctx, der, h.rsaKey)
		var fe *scep.FailError
		require.ErrorAs(t, err, &fe, "over HTTP, challenge kind %d: a CertRep FAILURE", i%6)
	}
	require.Equal(t, signed, env2.Issuer.Count(), "the flood got a certificate signed")
	// The device's record is still its own: its poll still gets its certificate.
	resp, err = env2.RP.Respond(ctx, &scep.Request{MessageType: scep.CertPoll, TransactionID: h.legitTx, Signer: devSelf})
	require.NoError(t, err)
	require.Equal(t, 0, resp.Certificate.SerialNumber.Cmp(deviceSerial))
	closeStore2()

	after := fb.size(t)
	for i, k := range kinds {
		t.Logf("%-28s refused: %v", k.name, refusedBy[i])
		require.NotEmpty(t, refusedBy[i], k.name)
	}
	t.Logf("%d refused requests in process in %v (8 at a time; shared machine), %d over HTTP", floodSize,
		inProcess.Round(time.Millisecond), floodHTTP)
	t.Logf("size before: %v", before)
	t.Logf("size after:  %v", after)
	require.Equal(t, slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(after)), "the same quantities are measured")
	for name, b := range before {
		if limit, ok := fb.grow[name]; ok {
			require.LessOrEqual(t, after[name], b+limit, "%s grew by more than %d", name, limit)
			continue
		}
		require.Equal(t, b, after[name], "%s changed under a flood of refused requests", name)
	}
}

// floodKind is one kind of refused request; request makes one with transactionID id.
type floodKind struct {
	name    string
	request func(id string) *scep.Request
}

func floodKinds(h *hostile) []floodKind {
	enroll := func(challenge string) func(string) *scep.Request {
		return func(id string) *scep.Request {
			return &scep.Request{MessageType: scep.PKCSReq, TransactionID: id, CSR: h.csr, ChallengePassword: challenge,
				Signer: h.self}
		}
	}
	return []floodKind{
		{"no challenge", enroll("")},
		{"garbage challenge", enroll("not a challenge at all")},
		{"forged challenge", enroll(h.forged)},
		{"challenge for another gateway", enroll(h.foreign)},
		{"used challenge", enroll(h.used)},
		{"expired challenge", enroll(h.expired)},
		{"the device's transactionID", func(string) *scep.Request {
			return &scep.Request{MessageType: scep.PKCSReq, TransactionID: h.legitTx, CSR: h.csr, Signer: h.self}
		}},
		{"poll of an unknown transaction", func(id string) *scep.Request {
			return &scep.Request{MessageType: scep.CertPoll, TransactionID: id, Signer: h.self}
		}},
		{"renewal by a stranger", func(id string) *scep.Request {
			return &scep.Request{MessageType: scep.RenewalReq, TransactionID: id, CSR: h.csr, Signer: h.stranger}
		}},
		{"GetCert of an unknown serial", func(id string) *scep.Request {
			serial := new(big.Int).SetBytes([]byte(id))
			return &scep.Request{MessageType: scep.GetCert, TransactionID: id, Signer: h.self,
				IssuerAndSerial: &scep.IssuerAndSerial{Issuer: h.caSubject, Serial: serial}}
		}},
	}
}

var (
	keysOnce sync.Once
	keys     [2]*rsa.PrivateKey
)

// rsaKeys returns a device's key and a flooding sender's (RSA-2048, as the demo
// profile wants; made once).
func rsaKeys(t *testing.T) (device, sender *rsa.PrivateKey) {
	keysOnce.Do(func() {
		for i := range keys {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			keys[i] = k
		}
	})
	return keys[0], keys[1]
}

func csrOf(t *testing.T, key crypto.Signer, cn string) *x509.CertificateRequest {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	require.NoError(t, err)
	csr, err := x509.ParseCertificateRequest(der)
	require.NoError(t, err)
	return csr
}

// strangerCertificate is a certificate for key from a CA the gateway does not know.
func strangerCertificate(t *testing.T, key *rsa.PrivateKey) *x509.Certificate {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "another CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "alice@example.com"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}
