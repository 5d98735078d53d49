package demo

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/scepkit/scepkit/catemplate"
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

// A JWKS key pinned to PS256 must stay pinned after a rotation copies it: SyncKeySet
// used Add, which dropped the pin, and the key then accepted RS256 as well.
func TestSyncKeySetKeepsAlgorithmPin(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	src, dst := challenge.NewKeySet(), challenge.NewKeySet()
	require.NoError(t, src.AddWithAlgorithm("mdm-1", challenge.PS256, key.Public()))
	_, err = SyncKeySet(dst, src)
	require.NoError(t, err)
	alg, ok := dst.Algorithm("mdm-1")
	require.True(t, ok)
	require.Equal(t, challenge.PS256, alg)

	ctx := context.Background()
	v := &challenge.Verifier{Keys: dst, Issuer: "mdm", Audience: "gw", Replay: &challenge.MemoryReplayStore{}}
	mint := func(alg string) string {
		ch, _, err := (&challenge.Issuer{Name: "mdm", KeyID: "mdm-1", Key: key, Algorithm: alg}).Issue(
			challenge.Request{UserID: "alice@example.com", Audience: "gw"})
		require.NoError(t, err)
		return ch
	}
	_, err = v.Check(ctx, mint(challenge.RS256))
	require.ErrorIs(t, err, challenge.ErrAlgorithm, "RS256 accepted by a PS256-pinned key")
	_, err = v.Check(ctx, mint(challenge.PS256))
	require.NoError(t, err)

	// Unchanged keys and pins are no change; a changed pin is one.
	changed, err := SyncKeySet(dst, src)
	require.NoError(t, err)
	require.False(t, changed)
	src2 := challenge.NewKeySet()
	require.NoError(t, src2.AddWithAlgorithm("mdm-1", challenge.RS256, key.Public()))
	changed, err = SyncKeySet(dst, src2)
	require.NoError(t, err)
	require.True(t, changed)
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
