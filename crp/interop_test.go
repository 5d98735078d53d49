package crp_test

import (
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/stretchr/testify/require"
)

func scepclient(t *testing.T) string {
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

// runDevice runs scepclient as one device (its own directory: scepclient keeps its
// key, CSR and self-signed certificate there) and returns its output and exit error.
func runDevice(t *testing.T, bin, dir, url, cn, challenge string) (string, error) {
	t.Helper()
	args := []string{"-server-url", url, "-private-key", filepath.Join(dir, "key.pem"),
		"-certificate", filepath.Join(dir, "cert.pem"), "-cn", cn,
		"-organization", "", "-ou", "", "-country", ""}
	if challenge != "" {
		args = append(args, "-challenge", challenge)
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}

// TestScepclientThroughCRP: micromdm's scepclient against scep.Server + crp: a good
// challenge, a wrong one, a replayed one, and a renewal.
func TestScepclientThroughCRP(t *testing.T) {
	bin := scepclient(t)
	env, err := crptest.New(crptest.Options{Legacy: true,
		Logger: slog.New(slog.NewTextHandler(testLog{t}, nil))})
	require.NoError(t, err)
	ts := httptest.NewServer(env.Server)
	defer ts.Close()
	url := ts.URL + "/scep"

	ch, _, err := env.Challenge("alice@example.com", "alice-laptop", 0)
	require.NoError(t, err)
	alice := t.TempDir()
	out, err := runDevice(t, bin, alice, url, "alice@example.com", ch)
	require.NoError(t, err, out)
	require.Equal(t, 1, env.Issuer.Count())
	b, err := os.ReadFile(filepath.Join(alice, "cert.pem"))
	require.NoError(t, err)
	blk, _ := pem.Decode(b)
	cert, err := x509.ParseCertificate(blk.Bytes)
	require.NoError(t, err)
	require.Equal(t, "alice@example.com", cert.Subject.CommonName)
	require.NoError(t, cert.CheckSignatureFrom(env.CA.Certificate))

	// The same challenge from another device: replayed.
	out, err = runDevice(t, bin, t.TempDir(), url, "alice@example.com", ch)
	require.Error(t, err, out)
	require.Contains(t, out, "badRequest")

	// A wrong challenge.
	out, err = runDevice(t, bin, t.TempDir(), url, "bob@example.com", "not-a-challenge")
	require.Error(t, err, out)
	require.Contains(t, out, "badRequest")
	require.Equal(t, 1, env.Issuer.Count(), "no certificate for the refused requests")

	// Renewal: scepclient signs a RenewalReq with its certificate.
	out, err = runDevice(t, bin, alice, url, "alice@example.com", "")
	require.NoError(t, err, out)
	require.Equal(t, 2, env.Issuer.Count())
}

type testLog struct{ t *testing.T }

func (w testLog) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }
