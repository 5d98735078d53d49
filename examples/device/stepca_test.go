package main

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"testing"

	"github.com/scepkit/scepkit/examples/internal/exectest"
	"github.com/scepkit/scepkit/internal/stepcatest"
	"github.com/stretchr/testify/require"
)

// TestStepCASHA1: the device enrolls at a real step-ca with -sha1: step-ca v0.30 signs
// its replies with SHA-1 whatever the request used, which the device refuses
// otherwise (after step-ca issued the certificate). Before, the device could not
// enroll at step-ca at all.
func TestStepCASHA1(t *testing.T) {
	ca := stepcatest.Start(t, stepcatest.Options{Challenge: "static-secret"})
	devBin := exectest.Build(t, ".")
	sum := sha256.Sum256(ca.Intermediate.Raw)
	fp := hex.EncodeToString(sum[:])

	enroll := func(cn string, extra ...string) (string, string, int) {
		dir := t.TempDir()
		args := append([]string{"-url", ca.SCEPURL, "-challenge", "static-secret", "-subject", "CN=" + cn,
			"-ca-fingerprint", fp, "-key", filepath.Join(dir, "device.key"), "-cert", filepath.Join(dir, "device.crt")}, extra...)
		stdout, stderr, code := exectest.Run(t, devBin, args...)
		if code == 0 {
			cert := readCert(t, filepath.Join(dir, "device.crt"))
			require.NoError(t, cert.CheckSignatureFrom(ca.Intermediate))
			require.Equal(t, "CN="+cn, cert.Subject.String())
		}
		return stdout, stderr, code
	}
	stdout, stderr, code := enroll("without-sha1")
	require.NotEqual(t, 0, code, "stdout:\n%s", stdout)
	require.Contains(t, stderr, "SHA-1")
	stdout, stderr, code = enroll("with-sha1", "-sha1")
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s\nstep-ca:\n%s", stdout, stderr, ca.Log())
}
