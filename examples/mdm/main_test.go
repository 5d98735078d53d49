package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/examples/internal/exectest"
	"github.com/scepkit/scepkit/profile"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	code := m.Run()
	exectest.Cleanup()
	os.Exit(code)
}

// writeCA writes a self-signed CA certificate (ECDSA: quick to make) as PEM.
func writeCA(t *testing.T, path string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
}

func get(t *testing.T, url string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, b
}

// TestMDM runs the MDM: its JWKS verifies the challenges it puts in profiles, exported
// as JSON, .mobileconfig and SyncML; users and devices that may not enroll get 403; the
// CA certificate may appear after the start; the key survives a restart.
func TestMDM(t *testing.T) {
	bin := exectest.Build(t, ".")
	state, caPath := t.TempDir(), filepath.Join(t.TempDir(), "ca.crt")
	args := []string{"-listen", "127.0.0.1:0", "-state", state, "-directory", "../directory.json",
		"-ca-cert", caPath, "-scep-url", "https://gw.example/scep", "-name", "mdm.example",
		"-gateway", "gw.example", "-log", "json"}
	m := exectest.Start(t, bin, args...)
	profileURL := m.Base + "/profile?user=alice@example.com&device=alice-laptop"

	// The CA certificate is not there yet: the MDM says so, then serves once it is.
	code, _, body := get(t, profileURL)
	require.Equal(t, http.StatusServiceUnavailable, code, string(body))
	writeCA(t, caPath)

	code, h, jwks := get(t, m.Base+"/jwks")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "application/jwk-set+json", h.Get("Content-Type"))
	keys, err := challenge.ParseJWKS(jwks)
	require.NoError(t, err)
	require.Len(t, keys.KeyIDs(), 1)
	verifier := &challenge.Verifier{Keys: keys, Issuer: "mdm.example", Audience: "gw.example",
		Replay: &challenge.MemoryReplayStore{}}

	// JSON (the default format, Windows profile by default).
	code, h, body = get(t, profileURL)
	require.Equal(t, http.StatusOK, code, string(body))
	require.Equal(t, "application/json", h.Get("Content-Type"))
	var p profile.JSONProfile
	require.NoError(t, json.Unmarshal(body, &p))
	require.Equal(t, "win", p.ProfileID)
	require.Equal(t, "windows", p.Platform)
	require.Equal(t, "CN=alice@example.com", p.Subject)
	require.Equal(t, []string{"https://gw.example/scep"}, p.ServerURLs)
	require.Equal(t, 2048, p.KeySize)
	caPEM, err := os.ReadFile(caPath)
	require.NoError(t, err)
	caBlock, _ := pem.Decode(caPEM)
	caSum := sha256.Sum256(caBlock.Bytes)
	require.Equal(t, hex.EncodeToString(caSum[:]), p.CAFingerprintSHA256, "the SHA-256 a device pins (examples/device -ca-fingerprint)")
	claims, err := verifier.Verify(t.Context(), p.Challenge)
	require.NoError(t, err)
	require.Equal(t, "alice@example.com", claims.UserID)
	require.Equal(t, "alice-laptop", claims.DeviceID)
	require.Equal(t, "win", claims.ProfileID)
	exp, err := time.Parse(time.RFC3339, h.Get("Challenge-Expires"))
	require.NoError(t, err)
	require.WithinDuration(t, claims.Expires, exp, time.Second)
	require.LessOrEqual(t, claims.Expires.Sub(claims.IssuedAt), time.Hour)

	// Apple: an XML plist with a SCEP payload carrying a fresh challenge for "ios" or "mac".
	for platform, id := range map[string]string{"": "ios", "ios": "ios", "macos": "mac"} {
		code, h, body = get(t, profileURL+"&format=mobileconfig&platform="+platform)
		require.Equal(t, http.StatusOK, code, string(body))
		require.Equal(t, "application/x-apple-aspen-config", h.Get("Content-Type"))
		s := string(body)
		require.True(t, strings.HasPrefix(s, "<?xml"), s)
		require.Contains(t, s, "com.apple.security.scep")
		require.NoError(t, xml.Unmarshal(body, new(any)))
		ch := between(t, s, "<key>Challenge</key>", "<string>", "</string>")
		claims, err = verifier.Verify(t.Context(), ch)
		require.NoError(t, err)
		require.Equal(t, id, claims.ProfileID)
	}

	// Windows: ClientCertificateInstall SyncML, the challenge base64 in its node.
	code, h, body = get(t, profileURL+"&format=syncml")
	require.Equal(t, http.StatusOK, code, string(body))
	require.Equal(t, "application/vnd.syncml.dm+xml", h.Get("Content-Type"))
	s := string(body)
	require.Contains(t, s, "ClientCertificateInstall/SCEP/scepkit-win")
	require.NoError(t, xml.Unmarshal(body, new(any)))
	b64 := between(t, s, "/Install/Challenge</LocURI>", "<Data>", "</Data>")
	raw, err := base64.StdEncoding.DecodeString(b64)
	require.NoError(t, err)
	claims, err = verifier.Verify(t.Context(), string(raw))
	require.NoError(t, err)
	require.Equal(t, "win", claims.ProfileID)

	// Who may not enroll.
	for _, q := range []string{
		"user=mallory@example.com&device=mallory-tablet", // disabled
		"user=nobody@example.com&device=alice-laptop",    // unknown user
		"user=alice@example.com&device=bob-phone",        // another user's device
		"user=bob@example.com&device=bob-old-phone",      // not compliant
		"user=alice@example.com&device=no-such-device",   // unknown device
	} {
		code, h, body = get(t, m.Base+"/profile?"+q)
		require.Equal(t, http.StatusForbidden, code, q)
		require.Equal(t, "application/json", h.Get("Content-Type"))
		require.Contains(t, string(body), `"error"`)
	}
	for _, q := range []string{"user=alice@example.com", "user=alice@example.com&device=alice-laptop&format=pdf",
		"user=alice@example.com&device=alice-laptop&format=mobileconfig&platform=windows"} {
		code, _, _ = get(t, m.Base+"/profile?"+q)
		require.Equal(t, http.StatusBadRequest, code, q)
	}

	// The key is private and survives a restart: the same JWKS.
	st, err := os.Stat(filepath.Join(state, "mdm-ed25519.pem"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	m.Stop(t)
	for _, line := range strings.Split(strings.TrimSpace(m.Stderr.String()), "\n") {
		require.True(t, json.Valid([]byte(line)), "log line %q", line)
	}
	m2 := exectest.Start(t, bin, args...)
	_, _, jwks2 := get(t, m2.Base+"/jwks")
	require.JSONEq(t, string(jwks), string(jwks2))
	m2.Stop(t)
}

// TestProfilesFollowCACertificate: once the CA certificate file is replaced (a rollover
// promoted), new profiles pin the new CA without a restart of the MDM.
func TestProfilesFollowCACertificate(t *testing.T) {
	bin := exectest.Build(t, ".")
	caPath := filepath.Join(t.TempDir(), "ca.crt")
	writeCA(t, caPath)
	m := exectest.Start(t, bin, "-listen", "127.0.0.1:0", "-state", t.TempDir(), "-directory", "../directory.json",
		"-ca-cert", caPath, "-log", "json")
	pinned := func() string {
		t.Helper()
		code, _, body := get(t, m.Base+"/profile?user=alice@example.com&device=alice-laptop")
		require.Equal(t, http.StatusOK, code, string(body))
		var p profile.JSONProfile
		require.NoError(t, json.Unmarshal(body, &p))
		b, err := os.ReadFile(caPath)
		require.NoError(t, err)
		blk, _ := pem.Decode(b)
		sum := sha256.Sum256(blk.Bytes)
		require.Equal(t, hex.EncodeToString(sum[:]), p.CAFingerprintSHA256, "the profile pins the CA in the file now")
		return p.CAFingerprintSHA256
	}
	first := pinned()
	require.Equal(t, first, pinned(), "same file, same pin")
	next := filepath.Join(filepath.Dir(caPath), "next.crt")
	writeCA(t, next)
	require.NoError(t, os.Rename(next, caPath))
	require.NotEqual(t, first, pinned())
	m.Stop(t)
	require.Contains(t, m.Stderr.String(), "CA certificate changed")
}

// TestFlags: a challenge lives at most an hour; the directory and CA are required.
func TestFlags(t *testing.T) {
	bin := exectest.Build(t, ".")
	_, stderr, code := exectest.Run(t, bin, "-directory", "../directory.json", "-ca-cert", "x", "-ttl", "2h")
	require.NotEqual(t, 0, code)
	require.Contains(t, stderr, "-ttl 2h0m0s: a challenge lives at most 1h0m0s")
	_, stderr, code = exectest.Run(t, bin, "-ca-cert", "x")
	require.NotEqual(t, 0, code)
	require.Contains(t, stderr, "-directory is required")
}

// between returns the text between open and close after the first marker.
func between(t *testing.T, s, marker, open, close string) string {
	t.Helper()
	_, after, ok := strings.Cut(s, marker)
	require.True(t, ok, "no %q in %s", marker, s)
	_, after, ok = strings.Cut(after, open)
	require.True(t, ok)
	v, _, ok := strings.Cut(after, close)
	require.True(t, ok)
	return strings.TrimSpace(v)
}
