package boltstore_test

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/boltstore"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/storetest"
	"github.com/scepkit/scepkit/scep"
)

// gunzipTo writes the gzipped file src to dst.
func gunzipTo(t *testing.T, src, dst string) {
	t.Helper()
	f, err := os.Open(src)
	require.NoError(t, err)
	defer f.Close()
	z, err := gzip.NewReader(f)
	require.NoError(t, err)
	b, err := io.ReadAll(z)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(dst, b, 0o600))
}

// TestOpensEarlierReleases opens the state of earlier releases (testdata): a schema
// version 1 file, and a version 3 file with the journal a SIGKILL under load left,
// which this release replays. Every answer given before the upgrade holds: a used
// challenge is refused as replayed, a challenge never sent is taken once, each
// transaction answered with a certificate gets it (the same serial) and each pending
// one is still pending and listed, every certificate is in the inventory, and the
// revoked one stays revoked. A pending request is then decided once.
func TestOpensEarlierReleases(t *testing.T) {
	for _, name := range []string{"v1-serve", "v3-killed"} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			src := filepath.Join("testdata", name)
			b, err := os.ReadFile(filepath.Join(src, "manifest.json"))
			require.NoError(t, err)
			var m storetest.Release // see testdata/README.md
			require.NoError(t, json.Unmarshal(b, &m))
			dir := t.TempDir()
			path := filepath.Join(dir, "state.db")
			gunzipTo(t, filepath.Join(src, "state.db.gz"), path)
			if _, err := os.Stat(filepath.Join(src, "state.db-journal.gz")); err == nil {
				gunzipTo(t, filepath.Join(src, "state.db-journal.gz"), path+"-journal")
			}
			// The states were written on 2026-12-06 around 03:15 UTC; their pending
			// records live a day.
			now := time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC)
			s, err := boltstore.Open(path, &boltstore.Options{Now: func() time.Time { return now }})
			require.NoError(t, err)
			defer s.Close()
			until := now.Add(time.Hour)

			for _, tid := range m.Pending {
				r, err := s.Get(ctx, tid)
				require.NoError(t, err, "transaction %s", tid)
				require.Equal(t, scep.Pending, r.Status, "transaction %s", tid)
			}
			pending, err := s.Pending(ctx, "", 0)
			require.NoError(t, err)
			var listed []string
			for _, r := range pending {
				listed = append(listed, r.TransactionID)
			}
			require.Equal(t, m.Pending, listed)

			// Challenges, certificates, inventory, revocations; the first pending
			// request decided once.
			certs := storetest.CheckEarlierRelease(t, s, &m, now)

			// Closed and opened again, the upgraded file keeps all of it.
			require.NoError(t, s.Close())
			s2, err := boltstore.Open(path, &boltstore.Options{Now: func() time.Time { return now }})
			require.NoError(t, err)
			defer s2.Close()
			require.ErrorIs(t, s2.Claim(ctx, m.UnusedChallenge, until), challenge.ErrReplayed)
			certs2, err := s2.Certificates(ctx, crp.CertificateQuery{Limit: crp.MaxListLimit})
			require.NoError(t, err)
			require.Len(t, certs2, len(certs))
		})
	}
}
