package main

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scepkit/scepkit/examples/internal/exectest"
	"github.com/scepkit/scepkit/profile"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	code := m.Run()
	exectest.Cleanup()
	os.Exit(code)
}

func post(t *testing.T, url string, body []byte) (int, enrollResponse) {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	var r enrollResponse
	require.NoError(t, json.Unmarshal(b, &r), string(b))
	return resp.StatusCode, r
}

func csrFor(t *testing.T, subject pkix.Name, challenge string) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	return base64.StdEncoding.EncodeToString(keyedCSR(t, key, subject, challenge))
}

func keyedCSR(t *testing.T, key *rsa.PrivateKey, subject pkix.Name, challenge string) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject}, key)
	require.NoError(t, err)
	if challenge != "" {
		der, err = scep.AddChallengePassword(der, challenge, key, nil)
		require.NoError(t, err)
	}
	return der
}

// renewal is what a renewing client sends: a CSR, the old certificate, and the old
// key's signature over the CSR's DER.
func renewal(t *testing.T, csr []byte, cert *x509.Certificate, oldKey *rsa.PrivateKey) []byte {
	t.Helper()
	sum := sha256.Sum256(csr)
	sig, err := rsa.SignPKCS1v15(rand.Reader, oldKey, crypto.SHA256, sum[:])
	require.NoError(t, err)
	b, err := json.Marshal(enrollRequest{CSR: base64.StdEncoding.EncodeToString(csr),
		Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})),
		Signature:   base64.StdEncoding.EncodeToString(sig)})
	require.NoError(t, err)
	return b
}

func profileFor(t *testing.T, mdm, user, device string) *profile.JSONProfile {
	t.Helper()
	resp, err := http.Get(mdm + "/profile?user=" + user + "&device=" + device)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var p profile.JSONProfile
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&p))
	return &p
}

// TestEmbedCA runs the MDM and the CA with its REST front end: a challenge from the
// MDM gets a certificate by POST /enroll; a replayed challenge, a CSR that does not
// match the profile and a broken request get their phase and reason, or a 400.
func TestEmbedCA(t *testing.T) {
	mdmBin, bin := exectest.Build(t, "../mdm"), exectest.Build(t, ".")
	state := t.TempDir()
	// The MDM reads the CA certificate lazily: the CA writes it when it starts.
	mdm := exectest.Start(t, mdmBin, "-listen", "127.0.0.1:0", "-state", t.TempDir(),
		"-directory", "../directory.json", "-ca-cert", filepath.Join(state, "ca.crt"),
		"-scep-url", "http://127.0.0.1:1/unused", "-gateway", "ca.example")
	ca := exectest.Start(t, bin, "-listen", "127.0.0.1:0", "-state", state, "-jwks", mdm.Base+"/jwks",
		"-directory", "../directory.json", "-identity", "ca.example")
	enrollURL := ca.Base + "/enroll"

	p := profileFor(t, mdm.Base, "alice@example.com", "alice-laptop")
	alice := pkix.Name{CommonName: "alice@example.com"}
	aliceKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	req, _ := json.Marshal(enrollRequest{CSR: base64.StdEncoding.EncodeToString(keyedCSR(t, aliceKey, alice, "")), Challenge: p.Challenge})
	code, r := post(t, enrollURL, req)
	require.Equal(t, http.StatusOK, code, "%+v", r)
	require.Equal(t, "issued", r.Status)
	require.NotEmpty(t, r.TransactionID)
	blk, _ := pem.Decode([]byte(r.Certificate))
	require.NotNil(t, blk)
	cert, err := x509.ParseCertificate(blk.Bytes)
	require.NoError(t, err)
	require.Equal(t, "CN=alice@example.com", cert.Subject.String())

	// GET /ca is the CA that signed it, and the one in the state directory.
	resp, err := http.Get(ca.Base + "/ca")
	require.NoError(t, err)
	caPEM, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	blk, _ = pem.Decode(caPEM)
	require.NotNil(t, blk)
	caCert, err := x509.ParseCertificate(blk.Bytes)
	require.NoError(t, err)
	require.NoError(t, cert.CheckSignatureFrom(caCert))
	onDisk, err := os.ReadFile(filepath.Join(state, "ca.crt"))
	require.NoError(t, err)
	require.Contains(t, string(onDisk), strings.TrimSpace(string(caPEM)))

	// The same challenge again: refused in phase 2.
	req, _ = json.Marshal(enrollRequest{CSR: csrFor(t, alice, ""), Challenge: p.Challenge})
	code, r = post(t, enrollURL, req)
	require.Equal(t, http.StatusForbidden, code)
	require.Equal(t, enrollResponse{TransactionID: r.TransactionID, Status: "refused", Phase: "phase2-genuineness",
		Reason: "challenge already used", FailInfo: "badRequest"}, r)

	// A CSR whose subject is not the profile's: refused in phase 3.
	p = profileFor(t, mdm.Base, "bob@example.com", "bob-phone")
	req, _ = json.Marshal(enrollRequest{CSR: csrFor(t, pkix.Name{CommonName: "admin@example.com"}, ""), Challenge: p.Challenge})
	code, r = post(t, enrollURL, req)
	require.Equal(t, http.StatusForbidden, code)
	require.Equal(t, "phase3-mapping", r.Phase)
	require.Equal(t, "CSR does not match the profile", r.Reason)

	// Not a challenge at all: a broken request (400), still with its phase.
	req, _ = json.Marshal(enrollRequest{CSR: csrFor(t, alice, ""), Challenge: "hello"})
	code, r = post(t, enrollURL, req)
	require.Equal(t, http.StatusBadRequest, code, "%+v", r)
	require.Equal(t, "phase2-genuineness", r.Phase)

	// Renewal without a challenge. Alice's certificate is public: with a CSR for his
	// own key, signed by his own key, the attacker gets nothing.
	attacker, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	stolen := keyedCSR(t, attacker, alice, "")
	code, r = post(t, enrollURL, renewal(t, stolen, cert, attacker))
	require.Equal(t, http.StatusForbidden, code, "%+v", r)
	require.Equal(t, "renewal signer not acceptable", r.Reason)
	require.Empty(t, r.Certificate)
	// Alice signs her new CSR with her old key: renewed.
	newKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	code, r = post(t, enrollURL, renewal(t, keyedCSR(t, newKey, alice, ""), cert, aliceKey))
	require.Equal(t, http.StatusOK, code, "%+v", r)
	blk, _ = pem.Decode([]byte(r.Certificate))
	require.NotNil(t, blk)
	renewed, err := x509.ParseCertificate(blk.Bytes)
	require.NoError(t, err)
	require.Equal(t, "CN=alice@example.com", renewed.Subject.String())
	require.True(t, newKey.PublicKey.Equal(renewed.PublicKey))

	// Broken bodies.
	for _, body := range []string{`{`, `{"csr": "!!", "challenge": "x"}`, `{"csr": "AAAA", "challenge": "x"}`,
		`{"csr": "` + csrFor(t, alice, "") + `"}`, `{"csr": "", "challenge": "x", "extra": 1}`} {
		code, r = post(t, enrollURL, []byte(body))
		require.Equal(t, http.StatusBadRequest, code, body)
		require.NotEmpty(t, r.Error)
	}
	code, _ = post(t, enrollURL, bytes.Repeat([]byte(" "), 70<<10))
	require.Equal(t, http.StatusRequestEntityTooLarge, code)

	// Restarted on the same state: alice's challenge is still used (its claim is in
	// state.db), and the certificate is still in the inventory.
	aliceChallenge := profileFor(t, mdm.Base, "alice@example.com", "alice-laptop").Challenge
	req, _ = json.Marshal(enrollRequest{CSR: csrFor(t, alice, ""), Challenge: aliceChallenge})
	_, r = post(t, enrollURL, req)
	require.Equal(t, "issued", r.Status) // a fresh challenge, before the restart
	ca.Stop(t)
	ca = exectest.Start(t, bin, "-listen", "127.0.0.1:0", "-state", state, "-jwks", mdm.Base+"/jwks",
		"-directory", "../directory.json", "-identity", "ca.example")
	req, _ = json.Marshal(enrollRequest{CSR: csrFor(t, alice, ""), Challenge: aliceChallenge})
	code, r = post(t, ca.Base+"/enroll", req)
	require.Equal(t, http.StatusForbidden, code, "a challenge used before the restart: %+v", r)
	require.Equal(t, "challenge already used", r.Reason)
	require.Equal(t, "phase2-genuineness", r.Phase)
	ca.Stop(t)
	mdm.Stop(t)
}

// With their defaults, the embedded CA and the SCEP gateway have different identities:
// a challenge the MDM mints for the gateway (its default -gateway) is refused here.
func TestDefaultIdentityIsNotTheGateway(t *testing.T) {
	mdmBin, bin := exectest.Build(t, "../mdm"), exectest.Build(t, ".")
	state := t.TempDir()
	mdm := exectest.Start(t, mdmBin, "-listen", "127.0.0.1:0", "-state", t.TempDir(),
		"-directory", "../directory.json", "-ca-cert", filepath.Join(state, "ca.crt"))
	ca := exectest.Start(t, bin, "-listen", "127.0.0.1:0", "-state", state, "-jwks", mdm.Base+"/jwks",
		"-directory", "../directory.json")
	p := profileFor(t, mdm.Base, "alice@example.com", "alice-laptop")
	req, _ := json.Marshal(enrollRequest{CSR: csrFor(t, pkix.Name{CommonName: "alice@example.com"}, ""), Challenge: p.Challenge})
	code, r := post(t, ca.Base+"/enroll", req)
	require.Equal(t, http.StatusForbidden, code, "%+v", r)
	require.Equal(t, "gateway", r.Phase)
	require.Equal(t, "challenge for another gateway", r.Reason)
	ca.Stop(t)
	mdm.Stop(t)
}
