package pgstore_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/internal/pgtest"
	"github.com/scepkit/scepkit/pgstore"
	"github.com/scepkit/scepkit/scep"
)

// TestTimedOutIssuanceNotAppliedLater: a RecordIssuance that timed out against a hung
// server (its batch sent, no answer) is not applied when the server resumes. crp
// withholds the certificate of an issuance that could not be recorded and logs its
// serial for revocation; before, the batch ran when the server woke up (an implicit
// transaction, committed at its Sync), so the inventory listed the certificate as
// issued, not withheld, and its transaction record gave it to the device's resend (two
// examples/gateway processes under load, PostgreSQL stopped 10 s: both certificates
// logged withheld were in the inventory as issued, their records SUCCESS). Now the
// batch opens a transaction that only a COMMIT sent after its answer ends; a client
// gone before that leaves it to be rolled back.
func TestTimedOutIssuanceNotAppliedLater(t *testing.T) {
	srv := pgtest.Start(t)
	ctx := context.Background()
	// One connection, which has prepared the statements (as a gateway's have): the
	// batch goes out at once, without a round trip to prepare it first.
	s, err := pgstore.Open(ctx, srv.NewDatabase(t)+"&pool_max_conns=1", &pgstore.Options{Timeout: 300 * time.Millisecond})
	require.NoError(t, err)
	defer s.Close()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	issue := func(serial int64, id string) error {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "device"},
			NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		require.NoError(t, err)
		c, err := x509.ParseCertificate(der)
		require.NoError(t, err)
		return s.RecordIssuance(ctx, &crp.IssuedCertificate{Certificate: c},
			&crp.Record{TransactionID: id, Status: scep.Success, Certificate: c})
	}
	require.NoError(t, issue(1, "warm"))

	srv.Freeze()
	thawed := false
	defer func() {
		if !thawed {
			srv.Thaw()
		}
	}()
	require.Error(t, issue(2, "late"), "the server does not answer")
	time.Sleep(time.Second)
	srv.Thaw()
	thawed = true
	require.Eventually(t, func() bool { return s.Ping(ctx) == nil }, 20*time.Second, 50*time.Millisecond)
	time.Sleep(500 * time.Millisecond) // what the woken backend does, it has done

	_, err = s.Lookup(ctx, big.NewInt(2))
	require.ErrorIs(t, err, crp.ErrNotFound, "the certificate of an issuance that failed is in the inventory")
	_, err = s.Get(ctx, "late")
	require.ErrorIs(t, err, crp.ErrNotFound, "the record of an issuance that failed gives the certificate to a resend")
	require.NoError(t, issue(3, "after"), "the store works again")
}
