package crp_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/storetest"
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

// TestCertificateDirConformance: CertificateDir passes the certificate cases of the
// conformance suite, on disk: each case reads back through a second CertificateDir on
// the same directory, so that what is kept is what the files hold (a field the file
// format dropped, Withheld say, comes back zero and fails).
func TestCertificateDirConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		dir := t.TempDir()
		w, err := crp.OpenCertificateDir(dir)
		require.NoError(t, err)
		return storetest.Backend{Certificates: reopening{w: w, dir: dir}}
	})
}

// reopening writes through w and reads through a CertificateDir opened afresh on dir.
type reopening struct {
	w   *crp.CertificateDir
	dir string
}

func (r reopening) Add(ctx context.Context, c *crp.IssuedCertificate) error { return r.w.Add(ctx, c) }

func (r reopening) Lookup(ctx context.Context, serial *big.Int) (*crp.IssuedCertificate, error) {
	d, err := crp.OpenCertificateDir(r.dir)
	if err != nil {
		return nil, err
	}
	return d.Lookup(ctx, serial)
}

// TestCertificateDirSyncFailure: a certificate whose directory entry could not be
// synced after its rename (it may not last a power loss) is not reported stored:
// Add returns the sync's error, and the registration point withholds the
// certificate (FAILURE, logged for revocation), as after any inventory write that
// failed. Add ignored the failed sync and reported the certificate stored.
func TestCertificateDirSyncFailure(t *testing.T) {
	ctx := context.Background()
	errSync := errors.New("fsync: input/output error")
	dir := filepath.Join(t.TempDir(), "issued")
	d, err := crp.OpenCertificateDir(dir)
	require.NoError(t, err)
	var synced []string
	crp.SetDirSync(d, func(dir string) error { synced = append(synced, dir); return nil })
	require.NoError(t, d.Add(ctx, &crp.IssuedCertificate{Certificate: storetest.Certificate(t, 41, time.Now().Add(time.Hour))}))
	require.Equal(t, []string{dir}, synced, "the directory holding the new entry is synced")

	crp.SetDirSync(d, func(string) error { return errSync })
	err = d.Add(ctx, &crp.IssuedCertificate{Certificate: storetest.Certificate(t, 42, time.Now().Add(time.Hour))})
	require.ErrorIs(t, err, errSync, "the certificate is not reported stored")
	_, err = d.Lookup(ctx, big.NewInt(42))
	require.NoError(t, err, "known as the directory shows it now, to this gateway as to others")

	env := newEnv(t)
	var logs bytes.Buffer
	env.RP.Logger = slogTo(&logs)
	env.RP.Certificates = d
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	res, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "tx-unsynced",
		CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch})
	var e *crp.Error
	require.ErrorAs(t, err, &e, "the device must get FAILURE, got %+v", res)
	require.Equal(t, crp.PhaseIssue, e.Phase)
	require.ErrorIs(t, err, errSync)
	require.Nil(t, res.Certificate, "a certificate that could not be recorded must be withheld")
	require.Contains(t, logs.String(), "withheld from the device; revoke it")
}
