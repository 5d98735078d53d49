package crp_test

import (
	"context"
	"crypto/x509"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/scepkit/scepkit/crp"
	"github.com/stretchr/testify/require"
)

// TestCertificateDir: certificates survive a reopen, and one directory shared by two
// stores (two gateways) lets each find what the other issued.
func TestCertificateDir(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "issued")
	a, err := crp.OpenCertificateDir(dir)
	require.NoError(t, err)
	b, err := crp.OpenCertificateDir(dir)
	require.NoError(t, err)
	cert, err := env.CA.Sign(ctx, &x509.Certificate{SerialNumber: big.NewInt(42),
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}, deviceKey.Public())
	require.NoError(t, err)
	require.NoError(t, a.Add(ctx, &crp.IssuedCertificate{Certificate: cert, UserID: "u", DeviceID: "d", ProfileID: "p"}))
	got, err := b.Lookup(ctx, big.NewInt(42))
	require.NoError(t, err, "the other gateway reads it from disk")
	require.Equal(t, "d", got.DeviceID)
	c, err := crp.OpenCertificateDir(dir)
	require.NoError(t, err)
	require.Equal(t, 1, c.Len())
	_, err = c.Lookup(ctx, big.NewInt(43))
	require.ErrorIs(t, err, crp.ErrNotFound)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	info, err := entries[0].Info()
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
}
