package demo

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"math/big"
	"os"
	"path/filepath"
	"testing"

	"github.com/scepkit/scepkit/challenge"
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

func TestSyncKeySet(t *testing.T) {
	add := func(ks *challenge.KeySet) string {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		require.NoError(t, err)
		kid, err := ks.AddKey(pub)
		require.NoError(t, err)
		return kid
	}
	dst, src := challenge.NewKeySet(), challenge.NewKeySet()
	a := add(src)
	changed, err := SyncKeySet(dst, src)
	require.NoError(t, err)
	require.True(t, changed)
	require.Equal(t, []string{a}, dst.KeyIDs())
	changed, err = SyncKeySet(dst, src)
	require.NoError(t, err)
	require.False(t, changed, "same keys: no change")

	// Rotation: b added, a removed.
	src2 := challenge.NewKeySet()
	b := add(src2)
	changed, err = SyncKeySet(dst, src2)
	require.NoError(t, err)
	require.True(t, changed)
	require.Equal(t, []string{b}, dst.KeyIDs())
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
