package demo

import (
	"context"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/crp"
	"github.com/stretchr/testify/require"
)

func TestLoadDirectory(t *testing.T) {
	d, err := LoadDirectory("../../directory.json")
	require.NoError(t, err)
	u, err := d.LookupUser(context.Background(), "mallory@example.com")
	require.NoError(t, err)
	require.True(t, u.Disabled)
	dev, err := d.LookupDevice(context.Background(), "bob-old-phone")
	require.NoError(t, err)
	require.Equal(t, "bob@example.com", dev.UserID)
	require.False(t, dev.Compliant)
	_, err = d.LookupDevice(context.Background(), "nope")
	require.ErrorIs(t, err, crp.ErrNotFound)

	dir := t.TempDir()
	for name, body := range map[string]string{
		"orphan.json":  `{"users": [], "devices": [{"id": "d", "user": "u"}]}`,
		"unknown.json": `{"users": [{"id": "u", "admin": true}]}`,
		"noid.json":    `{"users": [{"upn": "u@example.com"}]}`,
	} {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		_, err := LoadDirectory(p)
		require.Error(t, err, name)
	}
}
func TestCertificateDirSeesOtherWriters(t *testing.T) {
	dir := t.TempDir()
	a, err := OpenCertificateDir(dir)
	require.NoError(t, err)
	b, err := OpenCertificateDir(dir)
	require.NoError(t, err)
	cert := selfSigned(t)
	require.NoError(t, a.Add(context.Background(), &crp.IssuedCertificate{Certificate: cert, UserID: "u"}))
	got, err := b.Lookup(context.Background(), cert.SerialNumber)
	require.NoError(t, err)
	require.Equal(t, "u", got.UserID)
	_, err = b.Lookup(context.Background(), big.NewInt(0x9999))
	require.ErrorIs(t, err, crp.ErrNotFound)
}

// TestLoadOrCreatePKIConcurrent: processes started together on a new directory share
// one CA (the one on disk), instead of each serving a CA of its own.
func TestLoadOrCreatePKIConcurrent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	const n = 4
	cas := make([]*catemplate.CA, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cas[i], _, errs[i] = LoadOrCreatePKI(dir, "test")
		}()
	}
	wg.Wait()
	onDisk, err := catemplate.LoadCA(dir)
	require.NoError(t, err)
	for i := range n {
		require.NoError(t, errs[i])
		require.True(t, cas[i].Certificate.Equal(onDisk.Certificate), "process %d serves a CA that is not on disk", i)
	}
}
