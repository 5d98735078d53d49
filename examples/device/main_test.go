package main

import (
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scepkit/scepkit/examples/internal/exectest"
	"github.com/scepkit/scepkit/profile"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	code := m.Run()
	exectest.Cleanup()
	os.Exit(code)
}

// freeAddr returns a loopback address that was free a moment ago: the MDM must know
// the gateway's URL before the gateway starts (it reads the MDM's keys at start).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	blk, _ := pem.Decode(b)
	require.NotNil(t, blk, path)
	require.Equal(t, "CERTIFICATE", blk.Type)
	c, err := x509.ParseCertificate(blk.Bytes)
	require.NoError(t, err)
	return c
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.StatusCode == http.StatusOK {
		require.NoError(t, json.Unmarshal(b, v), string(b))
	}
	return resp.StatusCode
}

type report struct {
	TransactionID string `json:"transaction_id"`
	Outcome       string `json:"outcome"`
	User          string `json:"user"`
	Device        string `json:"device"`
	Phase         string `json:"phase"`
	Reason        string `json:"reason"`
	Serial        string `json:"serial"`
	Renewal       bool   `json:"renewal"`
}

// TestMDMGatewayDevice runs the three roles as three processes: the MDM; the gateway,
// configured from the MDM's JWKS URL; the device, enrolling with a profile and
// challenge from the MDM, then renewing. The MDM hears of each outcome.
func TestMDMGatewayDevice(t *testing.T) {
	mdmBin, gwBin, devBin := exectest.Build(t, "../mdm"), exectest.Build(t, "../gateway"), exectest.Build(t, ".")
	gwState := t.TempDir()
	gwAddr := freeAddr(t)

	mdm := exectest.Start(t, mdmBin, "-listen", "127.0.0.1:0", "-state", t.TempDir(),
		"-directory", "../directory.json", "-ca-cert", filepath.Join(gwState, "ca.crt"),
		"-scep-url", "http://"+gwAddr+"/scep", "-gateway", "gw-1.example", "-name", "mdm.example")
	gw := exectest.Start(t, gwBin, "-listen", gwAddr, "-state", gwState, "-jwks", mdm.Base+"/jwks",
		"-directory", "../directory.json", "-identity", "gw-1.example", "-mdm-issuer", "mdm.example",
		"-notify", mdm.Base+"/notify", "-log", "json")
	require.Equal(t, "http://"+gwAddr, gw.Base)

	// The pin: the gateway prints the CA's SHA-256; it is that of the ca.crt it wrote.
	_, after, _ := strings.Cut(gw.StdoutLine(t, "CA SHA-256:"), "CA SHA-256:")
	fp := strings.Fields(after)[0]
	ca := readCert(t, filepath.Join(gwState, "ca.crt"))
	sum := sha256.Sum256(ca.Raw)
	require.Equal(t, hex.EncodeToString(sum[:]), fp)

	// The device gets its profile and challenge from the MDM.
	var p profile.JSONProfile
	require.Equal(t, http.StatusOK, getJSON(t, mdm.Base+"/profile?user=alice@example.com&device=alice-laptop", &p))
	require.Equal(t, []string{"http://" + gwAddr + "/scep"}, p.ServerURLs)
	require.Equal(t, "CN=alice@example.com", p.Subject)
	require.NotEmpty(t, p.Challenge)

	dir := t.TempDir()
	keyPath, certPath := filepath.Join(dir, "device.key"), filepath.Join(dir, "device.crt")
	stdout, stderr, code := exectest.Run(t, devBin, "-url", p.ServerURLs[0], "-challenge", p.Challenge,
		"-subject", p.Subject, "-ca-fingerprint", fp, "-key", keyPath, "-cert", certPath)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	require.Contains(t, stdout, "enrolled: subject CN=alice@example.com")
	cert := readCert(t, certPath)
	require.Equal(t, "CN=alice@example.com", cert.Subject.String())
	require.NoError(t, cert.CheckSignatureFrom(ca))
	st, err := os.Stat(keyPath)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "the key is private")

	// The same challenge again: refused (phase 2, replayed), nothing written.
	dir2 := t.TempDir()
	_, stderr, code = exectest.Run(t, devBin, "-url", p.ServerURLs[0], "-challenge", p.Challenge,
		"-subject", p.Subject, "-ca-fingerprint", fp, "-key", filepath.Join(dir2, "k"), "-cert", filepath.Join(dir2, "c"))
	require.NotEqual(t, 0, code)
	require.Contains(t, stderr, "FAILURE badRequest")
	_, err = os.Stat(filepath.Join(dir2, "k"))
	require.ErrorIs(t, err, os.ErrNotExist)

	// A wrong pin: the device stops before sending anything.
	wrong := strings.Repeat("00", 32)
	_, stderr, code = exectest.Run(t, devBin, "-url", p.ServerURLs[0], "-renew", "-ca-fingerprint", wrong,
		"-key", keyPath, "-cert", certPath)
	require.NotEqual(t, 0, code)
	require.Contains(t, stderr, "GetCACert")

	// Renewal: signed with the current certificate, no challenge; new key, same subject.
	oldKey, err := os.ReadFile(keyPath)
	require.NoError(t, err)
	stdout, stderr, code = exectest.Run(t, devBin, "-url", p.ServerURLs[0], "-renew", "-ca-fingerprint", fp,
		"-key", keyPath, "-cert", certPath)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
	require.Contains(t, stdout, "renewed: subject CN=alice@example.com")
	renewed := readCert(t, certPath)
	require.NotEqual(t, cert.SerialNumber, renewed.SerialNumber)
	require.Equal(t, cert.RawSubject, renewed.RawSubject)
	require.NoError(t, renewed.CheckSignatureFrom(ca))
	newKey, err := os.ReadFile(keyPath)
	require.NoError(t, err)
	require.NotEqual(t, oldKey, newKey, "renewal made a new key")

	// The MDM was told: issued, refused as replayed, renewed.
	var reports []report
	require.Eventually(t, func() bool {
		reports = nil
		getJSON(t, mdm.Base+"/notifications", &reports)
		return len(reports) == 3
	}, 5*time.Second, 50*time.Millisecond)
	require.Equal(t, "issued", reports[0].Outcome)
	require.Equal(t, "alice@example.com", reports[0].User)
	require.Equal(t, "alice-laptop", reports[0].Device)
	require.Equal(t, cert.SerialNumber.Text(16), reports[0].Serial)
	require.Equal(t, "failed", reports[1].Outcome)
	require.Equal(t, "phase2-genuineness", reports[1].Phase)
	require.Equal(t, "challenge already used", reports[1].Reason)
	require.Equal(t, "issued", reports[2].Outcome)
	require.True(t, reports[2].Renewal)
	require.Equal(t, renewed.SerialNumber.Text(16), reports[2].Serial)

	// The gateway's JSON log traces the transaction of the first enrollment.
	require.Eventually(t, func() bool { return strings.Contains(gw.Stderr.String(), reports[0].TransactionID) },
		5*time.Second, 20*time.Millisecond, "the gateway's log names the transaction")

	gw.Stop(t)
	mdm.Stop(t)
}

// TestParseSubject: the DN forms -subject accepts, and the ones it refuses.
func TestParseSubject(t *testing.T) {
	for in, want := range map[string]string{
		"CN=alice@example.com":                  "CN=alice@example.com",
		"alice@example.com":                     "CN=alice@example.com",
		"CN=alice, O=Example, C=US":             "CN=alice,O=Example,C=US",
		`CN="Doe, Jane",OU=Sales`:               `CN=Doe\, Jane,OU=Sales`,
		`cn="say ""hi"""`:                       `CN=say \"hi\"`,
		"E=alice@example.com,DC=example,DC=com": "",
	} {
		der, err := parseSubject(in)
		require.NoError(t, err, in)
		var rdns pkix.RDNSequence
		rest, err := asn1.Unmarshal(der, &rdns)
		require.NoError(t, err)
		require.Empty(t, rest)
		if want != "" {
			var name pkix.Name
			name.FillFromRDNSequence(&rdns)
			require.Equal(t, want, name.String(), in)
		}
	}
	for _, bad := range []string{"CN=", "X=1", `CN="open`, `CN="a"b`, "CN=a,,"} {
		_, err := parseSubject(bad)
		require.Error(t, err, bad)
	}
}

// The device pins the CA: without -ca-fingerprint it refuses to run, unless told by
// the loudly named -insecure-skip-ca-verify.
func TestFingerprintRequired(t *testing.T) {
	_, err := parseFlags([]string{"-url", "http://127.0.0.1:1/scep", "-challenge", "c", "-subject", "CN=a"}, io.Discard)
	require.ErrorContains(t, err, "-ca-fingerprint is required")
	c, err := parseFlags([]string{"-url", "http://127.0.0.1:1/scep", "-challenge", "c", "-subject", "CN=a",
		"-insecure-skip-ca-verify"}, io.Discard)
	require.NoError(t, err)
	require.True(t, c.insecure)
}
