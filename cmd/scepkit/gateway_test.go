package main

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/scepkit/scepkit/boltstore"
	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/profile"
	"github.com/stretchr/testify/require"
)

// TestProfilesFollowRollover: the built-in profiles name as their root CA the CA that
// issues when they are looked up: the current one before a rollover's switch, the
// next one from it on (the certificates issued then chain to it).
func TestProfilesFollowRollover(t *testing.T) {
	f := newFixture(t)
	save := func(dir, name string) *catemplate.CA {
		ca, err := catemplate.NewCA(catemplate.CAOptions{KeyType: profile.ECDSAP256, Subject: pkix.Name{CommonName: name}})
		require.NoError(t, err)
		ra, err := catemplate.NewRA(ca, catemplate.RAOptions{Subject: pkix.Name{CommonName: name + " RA"}})
		require.NoError(t, err)
		require.NoError(t, os.MkdirAll(dir, 0o700))
		require.NoError(t, catemplate.SaveCA(dir, ca))
		require.NoError(t, catemplate.SaveRA(dir, ra))
		return ca
	}
	current, next := save(f.path("state"), "current CA"), save(f.path("next"), "next CA")
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	cfg := f.config(t, "public_url = \"http://127.0.0.1:8080\"\n",
		fmt.Sprintf("\n[rollover]\nat = %q\ndir = %q\n", at.Format(time.RFC3339), f.path("next")))
	c, err := loadConfig(cfg, func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	g, err := newGateway(context.Background(), c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	defer g.close()

	for _, tc := range []struct {
		name string
		now  time.Time
		want *catemplate.CA
	}{
		{"before the switch", at.Add(-time.Second), current},
		{"at the switch", at, next},
		{"after the switch", at.Add(time.Hour), next},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g.rp.Now = func() time.Time { return tc.now }
			p, err := g.rp.Profiles.LookupProfile(context.Background(), "win")
			require.NoError(t, err)
			require.True(t, p.RootCA.Equal(tc.want.Certificate), "root CA %q", p.RootCA.Subject)
		})
	}
}

// TestMissingCAFilesRefused: a state directory a gateway ran in whose CA files went
// missing is refused, naming what is there. Before, the gateway made a new CA with
// the same name in it, overwrote what was left of the old one's files and served as
// ready: the certificates it had issued no longer verified, and their CRL was signed
// by another key. An empty directory still gets a new CA.
func TestMissingCAFilesRefused(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, missing := range []string{catemplate.CAKeyFile, catemplate.CACertFile} {
		t.Run(missing, func(t *testing.T) {
			f := newFixture(t)
			c, err := loadConfig(f.config(t, "public_url = \"http://127.0.0.1:8080\"\n", ""), func(string) (string, bool) { return "", false })
			require.NoError(t, err)
			g, err := newGateway(context.Background(), c, log) // the first start makes the CA
			require.NoError(t, err)
			first := g.ca.Certificate
			g.close()
			require.NoError(t, os.Remove(filepath.Join(f.path("state"), missing)))
			before, _ := os.ReadFile(filepath.Join(f.path("state"), catemplate.CACertFile))

			_, err = newGateway(context.Background(), c, log)
			require.Error(t, err)
			require.Contains(t, err.Error(), "not its CA")
			after, _ := os.ReadFile(filepath.Join(f.path("state"), catemplate.CACertFile))
			require.Equal(t, before, after, "what was left of the CA's files is untouched")
			if missing == catemplate.CAKeyFile {
				ca, err := catemplate.LoadCA(f.path("state"))
				require.Error(t, err)
				require.Nil(t, ca)
				require.Contains(t, string(after), string(pemCert(first)))
			}
		})
	}
}

// TestConcurrentFirstStart: gateways started together on a new state directory (side
// by side on one PostgreSQL, as the docs describe) make one CA between them, not one
// each with all but the last one's key lost.
func TestConcurrentFirstStart(t *testing.T) {
	f := newFixture(t)
	c, err := loadConfig(f.config(t, "", ""), func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	const n = 4
	cas := make([]*x509.Certificate, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := &gateway{cfg: c, log: log}
			ca, _, err := g.loadPKI(context.Background())
			if err == nil {
				cas[i] = ca.Certificate
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		require.True(t, cas[i].Equal(cas[0]), "gateway %d made a CA of its own", i)
	}
	ca, err := catemplate.LoadCA(f.path("state"))
	require.NoError(t, err)
	require.True(t, ca.Certificate.Equal(cas[0]), "the CA on disk is not the one served")
}

// TestCAKeyReadableByOthersRefused: a CA or RA key file other users may read is
// refused, as the admin token and the PIN are.
func TestCAKeyReadableByOthersRefused(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, name := range []string{catemplate.CAKeyFile, catemplate.RASigningKeyFile, catemplate.RAEncryptKeyFile} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			c, err := loadConfig(f.config(t, "public_url = \"http://127.0.0.1:8080\"\n", ""), func(string) (string, bool) { return "", false })
			require.NoError(t, err)
			g, err := newGateway(context.Background(), c, log) // the first start makes the CA
			require.NoError(t, err)
			g.close()
			path := filepath.Join(f.path("state"), name)
			require.NoError(t, os.Chmod(path, 0o644))
			_, err = newGateway(context.Background(), c, log)
			require.ErrorContains(t, err, "setting state_dir (SCEPKIT_STATE_DIR): "+path+" may be read or written by other users (mode -rw-r--r--)")
			require.NoError(t, os.Chmod(path, 0o640))
			g, err = newGateway(context.Background(), c, log)
			require.NoError(t, err)
			g.close()
		})
	}
}

// TestStoreWritableByOthersRefused: the store or its journal writable by other users
// is refused (whoever writes the journal may un-revoke or un-claim: it is replayed at
// the next start); before, a gateway started on both at mode 0666.
func TestStoreWritableByOthersRefused(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, name := range []string{boltstore.FileName, boltstore.FileName + "-journal"} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			c, err := loadConfig(f.config(t, "public_url = \"http://127.0.0.1:8080\"\n", ""), func(string) (string, bool) { return "", false })
			require.NoError(t, err)
			g, err := newGateway(context.Background(), c, log)
			require.NoError(t, err)
			g.close()
			path := filepath.Join(f.path("state"), name)
			for _, mode := range []os.FileMode{0o666, 0o620} {
				require.NoError(t, os.Chmod(path, mode))
				_, err = newGateway(context.Background(), c, log)
				require.ErrorContains(t, err, "setting state_dir (SCEPKIT_STATE_DIR): "+path+" may be written by other users")
			}
			require.NoError(t, os.Chmod(path, 0o640))
			g, err = newGateway(context.Background(), c, log)
			require.NoError(t, err)
			g.close()
		})
	}
}

// TestCompleteStateNeedsNoLock: a state directory that holds the CA and RA is loaded
// without the lock that guards their making, so that it may be read-only (keys
// mounted from a secret store, the state in PostgreSQL). Here the lock cannot be
// taken at all (its name is a directory).
func TestCompleteStateNeedsNoLock(t *testing.T) {
	f := newFixture(t)
	c, err := loadConfig(f.config(t, "public_url = \"http://127.0.0.1:8080\"\n", ""), func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	g := &gateway{cfg: c, log: log}
	first, _, err := g.loadPKI(context.Background()) // makes them
	require.NoError(t, err)
	require.NoError(t, os.Remove(filepath.Join(f.path("state"), pkiLockFile)))
	require.NoError(t, os.Mkdir(filepath.Join(f.path("state"), pkiLockFile), 0o700))
	again, _, err := g.loadPKI(context.Background())
	require.NoError(t, err)
	require.True(t, again.Certificate.Equal(first.Certificate))
	// What is wrong with such a directory is still said as such, not as a lock error.
	require.NoError(t, os.Remove(filepath.Join(f.path("state"), catemplate.RASigningKeyFile)))
	_, _, err = g.loadPKI(context.Background())
	require.ErrorContains(t, err, "CA found in")
}
