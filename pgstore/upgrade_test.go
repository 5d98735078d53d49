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

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/storetest"
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
	var m storetest.Release
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

	pending, err := s.Pending(ctx, "", 0)
	require.NoError(t, err)
	var listed []string
	for _, r := range pending {
		require.Equal(t, scep.Pending, r.Status)
		listed = append(listed, r.TransactionID)
	}
	slices.Sort(listed)
	require.Equal(t, m.Pending, listed)

	// Challenges, certificates, inventory, revocations; the first pending request
	// decided once.
	certs := storetest.CheckEarlierRelease(t, s, &m, now)
	inventory := map[string]*crp.IssuedCertificate{}
	for _, c := range certs {
		inventory[c.Certificate.SerialNumber.Text(16)] = c
	}
	require.Len(t, inventory, len(m.Issued))
}
