package scep

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// scepclientPath returns Debian's scepclient (package scep), skipping the test when it
// is missing outside CI and failing it under CI=true.
func scepclientPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("scepclient")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("scepclient not installed (apt-get install scep): %v", err)
		}
		t.Skip("scepclient not installed (apt-get install scep)")
	}
	return p
}

func runScepclient(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func readPEMCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	blk, _ := pem.Decode(b)
	require.NotNil(t, blk, "no PEM in %s", path)
	c, err := x509.ParseCertificate(blk.Bytes)
	require.NoError(t, err)
	return c
}

// TestScepclientInterop enrolls, fails with a wrong challenge, and renews with micromdm's
// scepclient against a Server on 127.0.0.1.
func TestScepclientInterop(t *testing.T) {
	bin := scepclientPath(t)
	pki := newTestPKI(t)
	ts, _ := pki.httpServer(t, true)
	dir := t.TempDir()
	key := filepath.Join(dir, "device.key")
	cert := filepath.Join(dir, "device.pem")
	url := ts.URL + "/scep"

	// scepclient keeps csr.pem and self.pem beside its key: one directory per device.
	wrong := t.TempDir()
	out, err := runScepclient(t, bin, "-server-url", url, "-private-key", filepath.Join(wrong, "k.pem"),
		"-certificate", filepath.Join(wrong, "c.pem"), "-cn", "wrong-challenge", "-challenge", "nope")
	require.Error(t, err, "enrollment with a wrong challenge must fail: %s", out)
	require.Contains(t, out, "badRequest")
	require.Equal(t, 0, pki.issuedCount())
	_, statErr := os.Stat(filepath.Join(wrong, "c.pem"))
	require.True(t, os.IsNotExist(statErr), "no certificate file may be written")

	out, err = runScepclient(t, bin, "-server-url", url, "-private-key", key, "-certificate", cert,
		"-cn", "device-1", "-challenge", "secret")
	require.NoError(t, err, out)
	require.Equal(t, 1, pki.issuedCount())
	c := readPEMCert(t, cert)
	require.Equal(t, "device-1", c.Subject.CommonName)
	require.NoError(t, c.CheckSignatureFrom(pki.ca))

	// Renewal: scepclient signs with the existing certificate.
	out, err = runScepclient(t, bin, "-server-url", url, "-private-key", key, "-certificate", cert,
		"-cn", "device-1")
	require.NoError(t, err, out)
	require.Equal(t, 2, pki.issuedCount(), out)
	c2 := readPEMCert(t, cert)
	require.NotEqual(t, c.SerialNumber, c2.SerialNumber)
	require.NoError(t, c2.CheckSignatureFrom(pki.ca))
	t.Log(strings.TrimSpace(out))
}
