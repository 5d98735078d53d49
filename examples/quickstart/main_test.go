package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"github.com/scepkit/scepkit/examples/internal/exectest"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// The tests run the real binary, built once.
func TestMain(m *testing.M) {
	code := m.Run()
	exectest.Cleanup()
	os.Exit(code)
}

func quickstartBin(t *testing.T) string { return exectest.Build(t, ".") }

// startServe runs the quickstart with -serve 127.0.0.1:0 and the given flags, and
// waits for the "serving on" line to learn its address.
func startServe(t *testing.T, args ...string) *exectest.Process {
	t.Helper()
	s := exectest.Start(t, quickstartBin(t), append([]string{"-serve", "127.0.0.1:0"}, args...)...)
	require.True(t, strings.HasPrefix(s.Base, "http://127.0.0.1:"), s.Base)
	return s
}

type profileAnswer struct {
	SCEPURL       string   `json:"scep_url"`
	Challenge     string   `json:"challenge"`
	Subject       string   `json:"subject"`
	SANs          []string `json:"sans"`
	KeySize       int      `json:"key_size"`
	CAFingerprint string   `json:"ca_fingerprint"`
	Expires       string   `json:"expires"`
}

// getProfile fetches /mdm/profile and decodes the JSON answer (a profile, or an error).
func getProfile(t *testing.T, base, user, device string) (int, *profileAnswer, map[string]any) {
	t.Helper()
	resp, err := http.Get(base + "/mdm/profile?user=" + url.QueryEscape(user) + "&device=" + url.QueryEscape(device))
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"), string(body))
	if resp.StatusCode != http.StatusOK {
		var e map[string]any
		require.NoError(t, json.Unmarshal(body, &e), string(body))
		return resp.StatusCode, nil, e
	}
	// Every documented field is present, with its JSON type.
	var raw map[string]any
	require.NoError(t, json.Unmarshal(body, &raw))
	for _, k := range []string{"scep_url", "challenge", "subject", "sans", "key_size", "ca_fingerprint", "expires"} {
		require.Contains(t, raw, k)
	}
	var p profileAnswer
	require.NoError(t, json.Unmarshal(body, &p))
	return resp.StatusCode, &p, nil
}

// caCert fetches the CA certificate with GetCACert: the CA among the certificates
// returned (the others are the RA's).
func caCert(t *testing.T, scepURL string) *x509.Certificate {
	t.Helper()
	// The test reads what the server presents in order to check it: nothing is pinned yet.
	certs, err := (&scep.Client{URL: scepURL, InsecureSkipCAVerify: true}).GetCACert(context.Background())
	require.NoError(t, err)
	for _, c := range certs {
		if c.IsCA {
			return c
		}
	}
	t.Fatalf("GetCACert returned no CA certificate (%d certificates)", len(certs))
	return nil
}

func sha256Hex(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

// checkProfile checks the answer for alice against the documented contract.
func checkProfile(t *testing.T, s *exectest.Process, p *profileAnswer, ca *x509.Certificate) {
	t.Helper()
	require.Equal(t, s.Base+"/scep", p.SCEPURL)
	require.NotEmpty(t, p.Challenge)
	require.Equal(t, "CN=alice@example.com", p.Subject)
	require.NotNil(t, p.SANs)
	require.Empty(t, p.SANs)
	require.Equal(t, 2048, p.KeySize)
	require.Equal(t, sha256Hex(ca.Raw), p.CAFingerprint)
	exp, err := time.Parse(time.RFC3339, p.Expires)
	require.NoError(t, err)
	require.True(t, exp.After(time.Now()), "expires %v", exp)
	require.True(t, exp.Before(time.Now().Add(time.Hour+time.Minute)), "expires %v", exp)
}

// TestDemo runs the demo mode: the whole flow, printed, exit 0.
func TestDemo(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(quickstartBin(t))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "stdout:\n%s\nstderr:\n%s", &stdout, &stderr)
	out := stdout.String()
	for _, want := range []string{
		"profile     \"demo-profile\" for alice@example.com",
		"challenge   ",
		"PKCSReq     sent to",
		"gateway             csr-signature       ok",
		"gateway             challenge-verify    ok",
		"gateway             challenge-audience  ok",
		"phase1-expiry       challenge-lifetime  ok",
		"phase2-genuineness  challenge-genuine   ok",
		"phase2-genuineness  user-active         ok",
		"phase2-genuineness  challenge-unused    ok",
		"phase3-mapping      device-mapping      ok",
		"phase3-mapping      profile-match       ok",
		"template            template            ok",
		"issue               issue               ok",
		"notify              notify-issued       ok",
		"MDM told    issued: serial",
		"subject     CN=alice@example.com",
		"replayed challenge  FAILURE badRequest  (phase2-genuineness: challenge already used",
		"disabled user       the MDM refuses mallory a profile: HTTP 403",
		"disabled user       FAILURE badRequest  (phase2-genuineness: user disabled",
		"One certificate issued",
	} {
		require.Contains(t, out, want)
	}
}

// TestTTLOverOneHourRefused: -ttl 2h is refused at start, with a message naming it.
func TestTTLOverOneHourRefused(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(quickstartBin(t), "-serve", "127.0.0.1:0", "-ttl", "2h")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "stdout:\n%s", &stdout)
	require.NotEqual(t, 0, ee.ExitCode())
	require.Contains(t, stderr.String(), "-ttl 2h0m0s: a challenge lives at most 1h0m0s")
	require.NotContains(t, stdout.String(), "serving on")
}

// TestServeLegacyScepclient: -serve -legacy, the MDM endpoint's contract, and an
// enrollment by Debian's scepclient (micromdm) with the profile it fetched.
func TestServeLegacyScepclient(t *testing.T) {
	t.Parallel()
	s := startServe(t, "-legacy")
	ca := caCert(t, s.Base+"/scep")
	// The NDES path serves the same CA.
	require.Equal(t, ca.Raw, caCert(t, s.Base+"/certsrv/mscep/mscep.dll").Raw)

	code, p, _ := getProfile(t, s.Base, "alice@example.com", "d1")
	require.Equal(t, http.StatusOK, code)
	checkProfile(t, s, p, ca)

	code, _, e := getProfile(t, s.Base, "mallory@example.com", "d2")
	require.Equal(t, http.StatusForbidden, code)
	require.NotEmpty(t, e["error"])
	code, _, e = getProfile(t, s.Base, "nobody@example.com", "d3")
	require.Equal(t, http.StatusForbidden, code)
	require.NotEmpty(t, e["error"])

	bin := scepclient(t)
	dir := t.TempDir()
	certPath := filepath.Join(dir, "cert.pem")
	out, err := runScepclient(bin, dir, p)
	require.NoError(t, err, "scepclient: %s", out)

	b, err := os.ReadFile(certPath)
	require.NoError(t, err)
	blk, _ := pem.Decode(b)
	require.NotNil(t, blk, "scepclient wrote no PEM certificate")
	cert, err := x509.ParseCertificate(blk.Bytes)
	require.NoError(t, err)
	require.NoError(t, cert.CheckSignatureFrom(ca), "the certificate chains to the CA")
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	_, err = cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)
	require.Equal(t, p.Subject, cert.Subject.String())
	require.Eventually(t, func() bool { return strings.Contains(s.Stderr.String(), "transaction") },
		5*time.Second, 20*time.Millisecond, "logs name the transaction")

	// Intune-managed devices, Cisco IOS and sscep append /pkiclient.exe to the URL they
	// are given: every URL served answers there too, whatever message= carries.
	for _, u := range []string{p.SCEPURL, s.Base + "/certsrv/mscep/mscep.dll"} {
		for _, q := range []string{"operation=GetCACaps&message=default", "operation=GetCACaps",
			"operation=GetCACert&message=default", "operation=GetCACert&message=CAIdentifier", "operation=GetCACert"} {
			resp, err := http.Get(u + scep.PKIClientSuffix + "?" + q)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode, "%s/pkiclient.exe?%s", u, q)
		}
	}
	_, p2, _ := getProfile(t, s.Base, "alice@example.com", "d4")
	p2.SCEPURL = s.Base + "/certsrv/mscep/mscep.dll/pkiclient.exe"
	out, err = runScepclient(bin, t.TempDir(), p2)
	require.NoError(t, err, "scepclient at %s: %s", p2.SCEPURL, out)
}

// scepclient returns the path of Debian's scepclient; a missing binary fails the test
// under CI=true and skips it otherwise.
func scepclient(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("scepclient")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("scepclient not installed (apt-get install scep): %v", err)
		}
		t.Skip("scepclient not installed (apt-get install scep)")
	}
	return bin
}

// runScepclient enrolls with scepclient using profile p, its key and certificate in
// dir (it writes csr.pem and self.pem beside them). The subject is just the CN.
func runScepclient(bin, dir string, p *profileAnswer, extra ...string) ([]byte, error) {
	cmd := exec.Command(bin, append([]string{"-server-url", p.SCEPURL, "-challenge", p.Challenge,
		"-cn", strings.TrimPrefix(p.Subject, "CN="), "-organization", "", "-ou", "", "-country", "",
		"-private-key", filepath.Join(dir, "key.pem"), "-certificate", filepath.Join(dir, "cert.pem")}, extra...)...)
	cmd.Dir = dir
	return cmd.CombinedOutput()
}

// TestServeCAEnvelopes: micromdm's scepclient with -ca-fingerprint encrypts to the CA
// certificate and verifies the reply with it alone. The quickstart accepts that by
// default (scep.Server.CAKey); with -ca-envelopes=false the request is refused with
// badMessageCheck and nothing is issued.
func TestServeCAEnvelopes(t *testing.T) {
	t.Parallel()
	bin := scepclient(t)
	for _, on := range []bool{true, false} {
		s := startServe(t, "-legacy", "-ca-envelopes="+strconv.FormatBool(on))
		_, p, _ := getProfile(t, s.Base, "alice@example.com", "pinned-"+strconv.FormatBool(on))
		dir := t.TempDir()
		out, err := runScepclient(bin, dir, p, "-ca-fingerprint", p.CAFingerprint)
		if on {
			require.NoError(t, err, "scepclient -ca-fingerprint: %s", out)
			b, err := os.ReadFile(filepath.Join(dir, "cert.pem"))
			require.NoError(t, err)
			blk, _ := pem.Decode(b)
			require.NotNil(t, blk)
			cert, err := x509.ParseCertificate(blk.Bytes)
			require.NoError(t, err)
			require.Equal(t, p.Subject, cert.Subject.String())
		} else {
			require.Error(t, err, "scepclient -ca-fingerprint: %s", out)
			_, err := os.Stat(filepath.Join(dir, "cert.pem"))
			require.True(t, os.IsNotExist(err), "no certificate written")
			require.Eventually(t, func() bool { return strings.Contains(s.Stderr.String(), "failInfo=badMessageCheck") },
				5*time.Second, 20*time.Millisecond, "the gateway refused with badMessageCheck")
			require.NotContains(t, s.Stderr.String(), "outcome=SUCCESS")
		}
		s.Stop(t)
	}
}

// TestServeModernStateRestart: without -legacy, scep.Client enrolls with AES-256 and
// SHA-256; SIGTERM stops the server cleanly; with -state the CA survives a restart and
// the certificate issued before it can be fetched after it with GetCert.
func TestServeModernStateRestart(t *testing.T) {
	t.Parallel()
	state := t.TempDir()
	s := startServe(t, "-state", state, "-log", "json")
	ca := caCert(t, s.Base+"/scep")

	code, p, _ := getProfile(t, s.Base, "bob@example.com", "bob-laptop-2")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "CN=bob@example.com", p.Subject)
	require.Equal(t, sha256Hex(ca.Raw), p.CAFingerprint)

	fp, err := hex.DecodeString(p.CAFingerprint)
	require.NoError(t, err)
	client := &scep.Client{URL: p.SCEPURL, CAFingerprint: fp}
	ctx := context.Background()
	caps, err := client.GetCACaps(ctx)
	require.NoError(t, err)
	require.Equal(t, scep.AES256CBC, caps.Cipher(), "caps %v", caps)
	require.True(t, caps.Has(scep.CapSHA256), "caps %v", caps)
	require.False(t, caps.Has(scep.CapSHA1), "caps %v", caps)
	// Forcing the negotiated algorithms makes the test fail if negotiation changes.
	client.Cipher, client.Digest = scep.AES256CBC, crypto.SHA256

	key, err := rsa.GenerateKey(rand.Reader, p.KeySize)
	require.NoError(t, err)
	cert, err := client.Enroll(ctx, profileCSR(t, p, p.Challenge, key), key)
	require.NoError(t, err)
	require.NoError(t, cert.CheckSignatureFrom(ca))
	require.Equal(t, p.Subject, cert.Subject.String())

	// Without -legacy, scepclient (single DES or 3DES, SHA-1) is refused with badAlg.
	if bin, err := exec.LookPath("scepclient"); err == nil {
		_, p2, _ := getProfile(t, s.Base, "alice@example.com", "alice-old-laptop")
		out, err := runScepclient(bin, t.TempDir(), p2)
		require.Error(t, err, "scepclient without -legacy: %s", out)
		require.Contains(t, string(out), "badAlg")
	}

	// Logs are JSON, one object per line.
	for _, line := range strings.Split(strings.TrimSpace(s.Stderr.String()), "\n") {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), "log line %q", line)
	}

	s.Stop(t)
	// The state closed before the last line, which says so.
	lines := strings.Split(strings.TrimSpace(s.Stderr.String()), "\n")
	require.Contains(t, lines[len(lines)-1], `"msg":"stopped"`)

	s2 := startServe(t, "-state", state)
	ca2 := caCert(t, s2.Base+"/scep")
	require.Equal(t, sha256Hex(ca.Raw), sha256Hex(ca2.Raw), "the CA survives a restart")
	client2 := &scep.Client{URL: s2.Base + "/scep", CAFingerprint: fp}
	got, err := client2.GetCert(ctx, cert.RawIssuer, cert.SerialNumber, cert, key)
	require.NoError(t, err)
	require.Equal(t, cert.Raw, got.Raw)

	// The challenge used before the restart is refused after it, as replayed (phase
	// 2), when presented with a new key and transaction as another device would: its
	// claim is in the state directory, not in the stopped process.
	key2, err := rsa.GenerateKey(rand.Reader, p.KeySize)
	require.NoError(t, err)
	client2.Cipher, client2.Digest = scep.AES256CBC, crypto.SHA256
	_, err = client2.Enroll(ctx, profileCSR(t, p, p.Challenge, key2), key2)
	var fe *scep.FailError
	require.ErrorAs(t, err, &fe, "a challenge used before the restart got a second certificate after it")
	require.Equal(t, scep.BadRequest, fe.Info)
	s2.Stop(t)
	require.Contains(t, s2.Stderr.String(), "challenge already used")
}

// TestServeMDMDevicesSurviveRestart: the devices the MDM endpoint enrolled are kept in
// the state directory. Before, they were in memory only: after a restart a challenge
// minted before it failed at phase 3 ("device unknown", the challenge spent), and so did
// the renewal of a certificate issued to such a device. The endpoint also refuses to
// move a device to another user (it moved it silently, breaking its owner's
// enrollments).
func TestServeMDMDevicesSurviveRestart(t *testing.T) {
	t.Parallel()
	state := t.TempDir()
	s := startServe(t, "-state", state)
	ctx := context.Background()
	enroll := func(base string, p *profileAnswer, key *rsa.PrivateKey) (*x509.Certificate, error) {
		fp, err := hex.DecodeString(p.CAFingerprint)
		require.NoError(t, err)
		return (&scep.Client{URL: base + "/scep", CAFingerprint: fp}).Enroll(ctx, profileCSR(t, p, p.Challenge, key), key)
	}
	code, kept, _ := getProfile(t, s.Base, "bob@example.com", "bob-tablet") // used after the restart
	require.Equal(t, http.StatusOK, code)
	code, p, _ := getProfile(t, s.Base, "bob@example.com", "bob-tablet-2")
	require.Equal(t, http.StatusOK, code)
	key, err := rsa.GenerateKey(rand.Reader, p.KeySize)
	require.NoError(t, err)
	cert, err := enroll(s.Base, p, key)
	require.NoError(t, err)

	// Another user cannot take bob's devices, enrolled here or the demo's own.
	for _, dev := range []string{"bob-tablet", "bob-phone"} {
		code, _, body := getProfile(t, s.Base, "alice@example.com", dev)
		require.Equal(t, http.StatusConflict, code, "%s: %v", dev, body)
	}
	s.Stop(t)

	s2 := startServe(t, "-state", state)
	key2, err := rsa.GenerateKey(rand.Reader, kept.KeySize)
	require.NoError(t, err)
	_, err = enroll(s2.Base, kept, key2)
	require.NoError(t, err, "a challenge minted before the restart, for a device the MDM enrolled")
	fp, _ := hex.DecodeString(p.CAFingerprint)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: cert.Subject}, key)
	require.NoError(t, err)
	renewed, err := (&scep.Client{URL: s2.Base + "/scep", CAFingerprint: fp}).Renew(ctx, csr, cert, key)
	require.NoError(t, err, "renewal after the restart")
	require.NotEqual(t, cert.SerialNumber, renewed.SerialNumber)
	s2.Stop(t)
	require.NotContains(t, s2.Stderr.String(), "device unknown")
}

// profileCSR is the CSR a device builds from the profile p: its subject, key and the
// challenge.
func profileCSR(t *testing.T, p *profileAnswer, challenge string, key *rsa.PrivateKey) []byte {
	t.Helper()
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: strings.TrimPrefix(p.Subject, "CN=")}}, key)
	require.NoError(t, err)
	csr, err = scep.AddChallengePassword(csr, challenge, key, nil)
	require.NoError(t, err)
	return csr
}
