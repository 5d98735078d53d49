package pgstore_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/internal/pgtest"
	"github.com/scepkit/scepkit/pgstore"
	"github.com/scepkit/scepkit/scep"
)

// limitedDatabase creates a role that may hold at most limit connections and a
// database it owns, and returns the database's DSN for that role. (The superuser
// pgtest connects as is exempt from connection limits.)
func limitedDatabase(t *testing.T, srv *pgtest.Server, role string, limit int) string {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, srv.DSN("postgres"))
	require.NoError(t, err)
	defer c.Close(ctx)
	for _, sql := range []string{
		fmt.Sprintf("CREATE ROLE %s LOGIN CONNECTION LIMIT %d", role, limit),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", role, role),
	} {
		_, err := c.Exec(ctx, sql)
		require.NoError(t, err)
	}
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable&connect_timeout=2", role, srv.Addr, role)
}

// TestConnectionSlotsExhausted: the server refuses a gateway more connections than
// its limit (max_connections, or a role's or database's CONNECTION LIMIT: SQLSTATE
// 53300) while the pool would open more. A call then waits, within Options.Timeout,
// for one of the pool's own connections rather than failing: before, every call that
// found the pool's connections busy failed at once with "too many connections", and
// at a gateway a certificate the CA had signed was withheld (and its challenge spent)
// because its record could not get a connection (36 of 770 in a probe of three
// gateways under load with max_connections = 8). With no slot at all, a call fails
// after Options.Timeout with the server's reason, and works once one is free.
func TestConnectionSlotsExhausted(t *testing.T) {
	srv := pgtest.Start(t)
	ctx := context.Background()
	dsn := limitedDatabase(t, srv, "limited", 2)
	const timeout = 2 * time.Second
	s, err := pgstore.Open(ctx, dsn+"&pool_max_conns=8", &pgstore.Options{Timeout: timeout})
	require.NoError(t, err)
	defer s.Close()

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	cert := func(serial int64) *x509.Certificate {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "device"},
			NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		require.NoError(t, err)
		c, err := x509.ParseCertificate(der)
		require.NoError(t, err)
		return c
	}

	t.Run("busy", func(t *testing.T) {
		const n = 32
		certs := make([]*x509.Certificate, n)
		for i := range certs {
			certs[i] = cert(int64(1000 + i))
		}
		errs := make([]error, 3*n)
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-gate
				errs[3*i] = s.Claim(ctx, fmt.Sprintf("jti-%d", i), time.Now().Add(time.Hour))
			})
			wg.Go(func() {
				<-gate
				c := certs[i]
				errs[3*i+1] = s.RecordIssuance(ctx, &crp.IssuedCertificate{Certificate: c},
					&crp.Record{TransactionID: fmt.Sprintf("tx-%d", i), Status: scep.Success, Certificate: c})
			})
			wg.Go(func() {
				<-gate
				_, errs[3*i+2] = s.Pending(ctx, "", 1)
			})
		}
		close(gate)
		wg.Wait()
		for i, err := range errs {
			require.NoError(t, err, "call %d", i)
		}
	})

	t.Run("no-slot-at-all", func(t *testing.T) {
		// Another client of the role holds both slots, and the pool's own connections
		// are gone (a restart of the server, say).
		var others []*pgx.Conn
		s.WaitSweep() // one the writes before started holds a connection
		s.Reset()
		for range 2 {
			// The backends of the pool's connections end a moment after Reset closed
			// them (more than a moment on a loaded machine): until then the role's
			// slots are still theirs.
			var c *pgx.Conn
			require.Eventually(t, func() bool {
				var err error
				c, err = pgx.Connect(ctx, dsn)
				return err == nil
			}, 10*time.Second, 20*time.Millisecond, "a slot freed by Reset")
			others = append(others, c)
		}
		start := time.Now()
		err := s.Claim(ctx, "jti-waiting", time.Now().Add(time.Hour))
		require.Error(t, err)
		require.Contains(t, err.Error(), "53300", "the server's reason")
		require.Less(t, time.Since(start), timeout+time.Second)
		for _, c := range others {
			c.Close(ctx)
		}
		require.NoError(t, s.Claim(ctx, "jti-waiting", time.Now().Add(time.Hour)), "a slot is free again")
	})

	// Two gateways whose pools (4 connections each) could open more than the 3 the
	// server grants them: every enrollment gets its certificate, none is withheld.
	t.Run("two-gateways", func(t *testing.T) {
		gws := twoGateways(t, limitedDatabase(t, srv, "gateways", 3))
		raceAtBoth(t, gws, 48, 0)
	})
}
