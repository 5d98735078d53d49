package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/examples/internal/exectest"
	"github.com/scepkit/scepkit/internal/redistest"
	"github.com/scepkit/scepkit/internal/scepclienttest"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	code := m.Run()
	exectest.Cleanup()
	os.Exit(code)
}

// mdmKey is an MDM signing key the test holds, published as a JWKS file.
type mdmKey struct {
	issuer *challenge.Issuer
}

func newMDMKey(t *testing.T) *mdmKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return &mdmKey{issuer: &challenge.Issuer{Name: "mdm-t", Key: k}}
}

func writeJWKS(t *testing.T, path string, keys ...*mdmKey) {
	t.Helper()
	ks := challenge.NewKeySet()
	for _, k := range keys {
		_, err := ks.AddKey(k.issuer.Key.Public())
		require.NoError(t, err)
	}
	b, err := ks.MarshalJSON()
	require.NoError(t, err)
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, b, 0o644))
	require.NoError(t, os.Rename(tmp, path))
}

func (k *mdmKey) challenge(t *testing.T, user, device, audience string) string {
	t.Helper()
	ch, _, err := k.issuer.Issue(challenge.Request{UserID: user, DeviceID: device, ProfileID: "win", Audience: audience})
	require.NoError(t, err)
	return ch
}

// enroll makes a key and a CSR for cn with ch, and enrolls.
func enroll(t *testing.T, c *scep.Client, cn, ch string) (*x509.Certificate, *rsa.PrivateKey, error) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: cn}}, key)
	require.NoError(t, err)
	csr, err = scep.AddChallengePassword(csr, ch, key, nil)
	require.NoError(t, err)
	cert, err := c.Enroll(context.Background(), csr, key)
	return cert, key, err
}

func requireFailure(t *testing.T, err error, info scep.FailInfo) {
	t.Helper()
	var fe *scep.FailError
	require.True(t, errors.As(err, &fe), "want a FAILURE, got %v", err)
	require.Equal(t, info, fe.Info)
}

func caSHA256(t *testing.T, p *exectest.Process) []byte {
	t.Helper()
	_, after, _ := strings.Cut(p.StdoutLine(t, "CA SHA-256:"), "CA SHA-256:")
	fp, err := hex.DecodeString(strings.Fields(after)[0])
	require.NoError(t, err)
	return fp
}

// TestGateway runs the gateway from a JSON file with a flag overriding it, enrolls
// through the three phases, follows an MDM key rotation through its JWKS, keeps its CA
// issued certificates and used challenges across a SIGTERM and restart (a renewal
// after it; a replayed challenge refused), and logs JSON.
func TestGateway(t *testing.T) {
	bin := exectest.Build(t, ".")
	dir := t.TempDir()
	state, jwks, cfg := filepath.Join(dir, "state"), filepath.Join(dir, "jwks.json"), filepath.Join(dir, "gateway.json")
	key1, key2 := newMDMKey(t), newMDMKey(t)
	writeJWKS(t, jwks, key1)
	conf, err := json.Marshal(map[string]any{"listen": "127.0.0.1:0", "state": state, "identity": "overridden",
		"mdm_issuer": "mdm-t", "jwks": jwks, "jwks_refresh": "100ms", "directory": "../directory.json", "log": "json"})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfg, conf, 0o600))

	gw := exectest.Start(t, bin, "-config", cfg, "-identity", "gw-t")
	fp := caSHA256(t, gw)
	client := &scep.Client{URL: gw.Base + "/certsrv/mscep/mscep.dll", CAFingerprint: fp}
	certs, err := client.GetCACert(t.Context())
	require.NoError(t, err)
	var ca *x509.Certificate
	for _, c := range certs {
		if s := sha256.Sum256(c.Raw); string(s[:]) == string(fp) {
			ca = c
		}
	}
	require.NotNil(t, ca)

	// Success: every phase passes.
	cert, certKey, err := enroll(t, client, "alice@example.com", key1.challenge(t, "alice@example.com", "alice-laptop", "gw-t"))
	require.NoError(t, err)
	require.NoError(t, cert.CheckSignatureFrom(ca))
	require.Equal(t, "CN=alice@example.com", cert.Subject.String())

	// Refusals: a challenge for another gateway (the -identity flag won over the file's
	// "overridden"), a device enrolled to another user.
	_, _, err = enroll(t, client, "alice@example.com", key1.challenge(t, "alice@example.com", "alice-laptop", "overridden"))
	requireFailure(t, err, scep.BadRequest)
	_, _, err = enroll(t, client, "alice@example.com", key1.challenge(t, "alice@example.com", "bob-phone", "gw-t"))
	requireFailure(t, err, scep.BadRequest)
	// The log reaches the test through a pipe: wait for it.
	for _, want := range []string{"challenge for another gateway", "device enrolled to another user"} {
		require.Eventually(t, func() bool { return strings.Contains(gw.Stderr.String(), want) },
			5*time.Second, 20*time.Millisecond, want)
	}

	// The MDM rotates its key: the gateway picks up the new JWKS without a restart.
	writeJWKS(t, jwks, key2)
	require.Eventually(t, func() bool { return strings.Contains(gw.Stderr.String(), "the MDM's keys changed") },
		5*time.Second, 20*time.Millisecond)
	bobChallenge := key2.challenge(t, "bob@example.com", "bob-phone", "gw-t")
	_, _, err = enroll(t, client, "bob@example.com", bobChallenge)
	require.NoError(t, err)
	_, _, err = enroll(t, client, "bob@example.com", key1.challenge(t, "bob@example.com", "bob-phone", "gw-t"))
	requireFailure(t, err, scep.BadRequest)

	// SIGTERM: a clean exit; the logs were JSON all along.
	gw.Stop(t)
	for _, line := range strings.Split(strings.TrimSpace(gw.Stderr.String()), "\n") {
		require.True(t, json.Valid([]byte(line)), "log line %q", line)
	}

	// Restart: the same CA, and the certificate issued before renews after.
	gw2 := exectest.Start(t, bin, "-config", cfg, "-identity", "gw-t", "-log", "text")
	require.Equal(t, fp, caSHA256(t, gw2))
	client2 := &scep.Client{URL: gw2.Base + "/scep", CAFingerprint: fp}
	newKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{RawSubject: cert.RawSubject}, newKey)
	require.NoError(t, err)
	renewed, err := client2.Renew(t.Context(), csr, cert, certKey)
	require.NoError(t, err)
	require.Equal(t, cert.Subject.String(), renewed.Subject.String())
	require.NotEqual(t, cert.SerialNumber, renewed.SerialNumber)

	// A challenge used before the restart is refused after it, as replayed (phase 2),
	// when presented again with a new key, as another device would: no second
	// certificate.
	_, _, err = enroll(t, client2, "bob@example.com", bobChallenge)
	requireFailure(t, err, scep.BadRequest)
	require.Eventually(t, func() bool { return strings.Contains(gw2.Stderr.String(), "challenge already used") },
		5*time.Second, 20*time.Millisecond)
	gw2.Stop(t)
}

// TestConfigErrors: what the gateway refuses at start.
func TestConfigErrors(t *testing.T) {
	bin := exectest.Build(t, ".")
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"jwks": "x", "directory": "y", "reddis": "z"}`), 0o600))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-directory", "../directory.json"}, "-jwks is required"},
		{[]string{"-jwks", "x"}, "-directory is required"},
		{[]string{"-config", bad}, `unknown field "reddis"`},
		{[]string{"-config", filepath.Join(dir, "missing.json")}, "no such file"},
		{[]string{"-jwks", filepath.Join(dir, "no-jwks.json"), "-directory", "../directory.json", "-state", dir,
			"-listen", "127.0.0.1:0"}, "no-jwks.json: no such file"},
		{[]string{"-jwks", filepath.Join(dir, "none"), "-directory", "../directory.json", "-state", dir,
			"-listen", "127.0.0.1:0", "-log", "xml"}, `-log "xml"`},
	} {
		_, stderr, code := exectest.Run(t, bin, tc.args...)
		require.NotEqual(t, 0, code, tc.args)
		require.Contains(t, stderr, tc.want, tc.args)
	}
}

// TestGatewaysSideBySide: two gateway processes share a state directory and a Redis
// (-redis): a challenge used at one is refused at the other, and one renews what the
// other issued.
func TestGatewaysSideBySide(t *testing.T) {
	srv := redistest.Start(t)
	bin, args, _, _ := sideBySide(t, "-redis", srv.Addr, "-redis-prefix", "examples-test:")

	// An unreachable Redis is refused at start.
	srv.Stop()
	_, stderr, code := exectest.Run(t, bin, args...)
	require.NotEqual(t, 0, code)
	require.Contains(t, stderr, "-redis "+srv.Addr)
}

// sideBySide builds the gateway and runs two of them with the same state directory
// and extra flags (the shared store): a challenge used at one is refused at the other
// as replayed, and the other renews what the first issued. It returns the binary, the
// arguments, the CA fingerprint and the used challenge; both gateways are stopped.
func sideBySide(t *testing.T, extra ...string) (bin string, args []string, fp []byte, used string) {
	t.Helper()
	bin = exectest.Build(t, ".")
	dir := t.TempDir()
	state, jwks := filepath.Join(dir, "state"), filepath.Join(dir, "jwks.json")
	key := newMDMKey(t)
	writeJWKS(t, jwks, key)
	args = append([]string{"-listen", "127.0.0.1:0", "-state", state, "-identity", "gw.example", "-mdm-issuer", "mdm-t",
		"-jwks", jwks, "-directory", "../directory.json"}, extra...)
	a := exectest.Start(t, bin, args...) // creates the CA and RA
	b := exectest.Start(t, bin, args...) // loads them
	fp = caSHA256(t, a)
	require.Equal(t, fp, caSHA256(t, b))
	ca := &scep.Client{URL: a.Base + "/scep", CAFingerprint: fp}
	cb := &scep.Client{URL: b.Base + "/scep", CAFingerprint: fp}

	used = key.challenge(t, "alice@example.com", "alice-laptop", "gw.example")
	cert, certKey, err := enroll(t, ca, "alice@example.com", used)
	require.NoError(t, err)
	_, _, err = enroll(t, cb, "alice@example.com", used)
	requireFailure(t, err, scep.BadRequest)
	require.Eventually(t, func() bool { return strings.Contains(b.Stderr.String(), "challenge already used") },
		5*time.Second, 20*time.Millisecond)

	newKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{RawSubject: cert.RawSubject}, newKey)
	require.NoError(t, err)
	renewed, err := cb.Renew(t.Context(), csr, cert, certKey)
	require.NoError(t, err, "one gateway renews what the other issued")
	require.Equal(t, cert.Subject.String(), renewed.Subject.String())
	a.Stop(t)
	b.Stop(t)
	return bin, args, fp, used
}

// TestGatewayCAEnvelopes: with -ca-envelopes, micromdm's scepclient pinning the CA
// (-ca-fingerprint: it encrypts to the CA certificate and verifies the reply with it
// alone) enrolls.
func TestGatewayCAEnvelopes(t *testing.T) {
	bin := exectest.Build(t, ".")
	dev := scepclienttest.NewDevice(t)
	dir := t.TempDir()
	jwks := filepath.Join(dir, "jwks.json")
	key := newMDMKey(t)
	writeJWKS(t, jwks, key)
	gw := exectest.Start(t, bin, "-listen", "127.0.0.1:0", "-state", filepath.Join(dir, "state"), "-identity", "gw-t",
		"-mdm-issuer", "mdm-t", "-jwks", jwks, "-directory", "../directory.json", "-legacy", "-ca-envelopes")
	fp := caSHA256(t, gw)
	out, err := dev.Enroll(gw.Base+"/scep", "alice@example.com", key.challenge(t, "alice@example.com", "alice-laptop", "gw-t"),
		"-ca-fingerprint", hex.EncodeToString(fp))
	require.NoError(t, err, out)
	cert, err := dev.Certificate()
	require.NoError(t, err)
	require.Equal(t, "CN=alice@example.com", cert.Subject.String())
	gw.Stop(t)
}
