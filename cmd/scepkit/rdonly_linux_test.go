package main

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestConfigOnReadOnlyMount: a configuration file in a directory of mode 0777 on a file
// system mounted read-only, as a Kubernetes ConfigMap volume is, is not refused for
// its directory's mode: nobody may write there. Before, the start was refused (exit
// 2, "which other users may write"). The mount is a tmpfs in a private mount
// namespace (unshare); the start then stops at the busy port it is given (exit 1),
// after the configuration was accepted.
func TestConfigOnReadOnlyMount(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare not found")
	}
	if err := exec.Command("unshare", "-rm", "true").Run(); err != nil {
		t.Skipf("no private mount namespace here: %v", err)
	}
	f := newFixture(t)
	cfg := f.config(t, "", "")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	mnt := filepath.Join(t.TempDir(), "config")
	require.NoError(t, os.Mkdir(mnt, 0o700))
	script := `set -e
mount -t tmpfs -o mode=0777 scepkit-config "$1"
cp "$2" "$1/scepkit.toml"
mount -o remount,ro,mode=0777 "$1"
exec "$3" serve -config "$1/scepkit.toml"`
	cmd := exec.Command("unshare", "-rm", "sh", "-c", script, "sh", mnt, cfg, bin)
	cmd.Env = append(os.Environ(), "SCEPKIT_LISTEN="+busy.Addr().String())
	out, err := cmd.CombinedOutput()
	require.NotContains(t, string(out), "other users may write")
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "%v: %s", err, out)
	require.Equal(t, exitFailure, ee.ExitCode(), "%s", out)
	require.Contains(t, string(out), "listen")
}
