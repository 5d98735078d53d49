package pgstore_test

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/internal/pgtest"
	"github.com/scepkit/scepkit/pgstore"
	"github.com/scepkit/scepkit/scep"
)

// TestOpensEarlierRelease migrates a database an earlier release wrote (testdata,
// schema version 2, with the commit and steps that made it) and checks that every
// answer given before the upgrade holds: a used challenge is refused as replayed, a
// challenge never sent is taken once, each transaction answered with a certificate
// gets it (the same serial), each pending one is still pending, listed and decided
// once, every certificate is in the inventory and the revoked one stays revoked and
// is listed for the CRL of the CA that issued it (its row has no issuer).
func TestOpensEarlierRelease(t *testing.T) {
	ctx := context.Background()
	b, err := os.ReadFile("testdata/v2-serve/manifest.json")
	require.NoError(t, err)
	var m struct {
		Issued          map[string]string `json:"issued"` // transactionID: serial (hex)
		Pending         []string          `json:"pending"`
		Revoked         []string          `json:"revoked"`
		UsedChallenges  []string          `json:"used_challenges"`
		UnusedChallenge string            `json:"unused_challenge"`
	}
	require.NoError(t, json.Unmarshal(b, &m))
	f, err := os.Open("testdata/v2-serve/dump.sql.gz")
	require.NoError(t, err)
	defer f.Close()
	z, err := gzip.NewReader(f)
	require.NoError(t, err)
	dump, err := io.ReadAll(z)
	require.NoError(t, err)

	srv := pgtest.Start(t)
	dsn := srv.NewDatabase(t)
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, string(dump))
	require.NoError(t, err, "restoring the dump")
	require.NoError(t, conn.Close(ctx))

	// The database was written on 2026-12-06 around 03:43 UTC; its pending records
	// live a day.
	now := time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)
	s, err := pgstore.Open(ctx, dsn, &pgstore.Options{Now: func() time.Time { return now }})
	require.NoError(t, err)
	defer s.Close()
	v, err := s.SchemaVersion(ctx)
	require.NoError(t, err)
	require.Equal(t, len(pgstore.Migrations), v)
	until := now.Add(time.Hour)

	for _, jti := range m.UsedChallenges {
		require.ErrorIs(t, s.Claim(ctx, jti, until), challenge.ErrReplayed, "challenge %s used before the upgrade", jti)
	}
	require.NoError(t, s.Claim(ctx, m.UnusedChallenge, until), "a challenge never sent")
	require.ErrorIs(t, s.Claim(ctx, m.UnusedChallenge, until), challenge.ErrReplayed)

	for tid, serial := range m.Issued {
		r, err := s.Get(ctx, tid)
		require.NoError(t, err, "transaction %s", tid)
		require.Equal(t, scep.Success, r.Status, "transaction %s", tid)
		require.NotNil(t, r.Certificate, "transaction %s", tid)
		require.Equal(t, serial, r.Certificate.SerialNumber.Text(16), "transaction %s", tid)
	}
	pending, err := s.Pending(ctx, "", 0)
	require.NoError(t, err)
	var listed []string
	for _, r := range pending {
		require.Equal(t, scep.Pending, r.Status)
		listed = append(listed, r.TransactionID)
	}
	slices.Sort(listed)
	require.Equal(t, m.Pending, listed)

	certs, err := s.Certificates(ctx, crp.CertificateQuery{Limit: crp.MaxListLimit})
	require.NoError(t, err)
	inventory := map[string]*crp.IssuedCertificate{}
	for _, c := range certs {
		inventory[c.Certificate.SerialNumber.Text(16)] = c
	}
	require.Len(t, inventory, len(m.Issued))
	for tid, serial := range m.Issued {
		c, ok := inventory[serial]
		require.True(t, ok, "certificate %s of transaction %s not in the inventory", serial, tid)
		require.False(t, c.Withheld, "certificate %s", serial)
		revoked, err := s.IsRevoked(ctx, c.Certificate)
		require.NoError(t, err)
		require.Equal(t, slices.Contains(m.Revoked, serial), revoked, "certificate %s", serial)
	}
	revs, err := s.RevokedSince(ctx, time.Time{})
	require.NoError(t, err)
	var revoked []string
	for _, r := range revs {
		revoked = append(revoked, r.Serial.Text(16))
	}
	require.Equal(t, m.Revoked, revoked)

	// A pending request is decided once: the first decision's record wins.
	r, err := s.Get(ctx, m.Pending[0])
	require.NoError(t, err)
	r.Status, r.Reason = scep.Failure, crp.ReasonRejected
	require.NoError(t, s.Put(ctx, r))
	pending, err = s.Pending(ctx, "", 0)
	require.NoError(t, err)
	require.Len(t, pending, len(m.Pending)-1)
}
