package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/internal/testserver"
)

// TestStateDirUnreadable: a state directory the gateway's user cannot read (its mode,
// or an ownership changed under it) holds a CA all the same; scepkit serve must say
// that it cannot read it, not that the CA and RA are missing (it said so, and an
// operator told so might make a new CA). Run as an unprivileged user: root reads
// every directory.
func TestStateDirUnreadable(t *testing.T) {
	if os.Geteuid() != 0 {
		testserver.Missing(t, "changing to an unprivileged user needs root")
	}
	const nobody = 65534
	f := newFixture(t)
	cfg := f.config(t, "", "")
	c, err := loadConfig(cfg, func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	ca, ra, err := newPKI(c.caName(), "", nil, nil, nil)
	require.NoError(t, err)
	require.NoError(t, catemplate.SaveCA(f.path("state"), ca))
	require.NoError(t, catemplate.SaveRA(f.path("state"), ra))
	// The fixture and a copy of the binary, for the unprivileged user; the state
	// directory its own but of mode 0.
	require.NoError(t, filepath.Walk(f.dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, nobody, nobody)
	}))
	require.NoError(t, os.Chmod(filepath.Dir(f.dir), 0o755))
	require.NoError(t, os.Chmod(f.dir, 0o755))
	require.NoError(t, os.Chmod(f.path("state"), 0))
	binDir, err := os.MkdirTemp("", "scepkit-nobody-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(binDir) })
	require.NoError(t, os.Chmod(binDir, 0o755))
	exe, err := os.ReadFile(bin)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(binDir, "scepkit"), exe, 0o755))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "scepkit"), "serve", "-config", cfg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	require.Error(t, err, string(out))
	require.Contains(t, string(out), "state_dir")
	require.Contains(t, string(out), "permission denied")
	require.NotContains(t, string(out), "missing", "the CA is there, unreadable")
	entries, _ := os.ReadDir(f.path("state")) // as root
	require.NotEmpty(t, entries)
}
