package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/scepkit/scepkit/boltstore"
	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp/intune"
	"github.com/scepkit/scepkit/crp/intune/intunetest"
	"github.com/scepkit/scepkit/internal/pemfile"
	"github.com/scepkit/scepkit/internal/pgtest"
	"github.com/scepkit/scepkit/internal/redistest"
	"github.com/scepkit/scepkit/internal/scepclienttest"
	"github.com/scepkit/scepkit/internal/softhsmtest"
	"github.com/scepkit/scepkit/internal/testserver"
	"github.com/scepkit/scepkit/pkcs11key"
	"github.com/scepkit/scepkit/profile"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// These tests build the scepkit binary, start it with a configuration file on
// loopback ports, and drive it over HTTP: scepclient enrolls, the admin CLI calls the
// admin API, /metrics, /readyz and /crl are read as an operator's tools read them.

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "scepkit-bin-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "scepkit")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building scepkit: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// fixture is the files a gateway is configured with, and the MDM that mints its
// challenges.
type fixture struct {
	dir       string
	mdm       *challenge.Issuer
	adminCA   *catemplate.CA
	token     string
	clientDir string // client.crt/client.key (good), rogue.crt/rogue.key (another CA)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir()}
	f.newMDMKey(t)
	f.write(t, "directory.json", []byte(`{"users": [
	  {"id": "alice@example.com", "upn": "alice@example.com", "email": "alice@example.com", "name": "alice"},
	  {"id": "bob@example.com", "upn": "bob@example.com", "email": "bob@example.com", "name": "bob"}],
	 "devices": [
	  {"id": "alice-laptop", "user": "alice@example.com", "name": "alice-laptop", "serial": "A1", "compliant": true},
	  {"id": "bob-phone", "user": "bob@example.com", "name": "bob-phone", "serial": "B1", "compliant": true}]}`))
	f.token = strings.Repeat("s3cr3t-", 6)
	f.write(t, "token", []byte(f.token+"\n"))
	// The admin listener's certificate and the operators' client certificates.
	var err error
	f.adminCA, err = catemplate.NewCA(catemplate.CAOptions{KeyType: profile.ECDSAP256, Subject: pkix.Name{CommonName: "admin CA"}})
	require.NoError(t, err)
	f.write(t, "admin-ca.pem", pemCert(f.adminCA.Certificate))
	f.issue(t, f.adminCA, "admin-server", &x509.Certificate{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	f.issue(t, f.adminCA, "client", &x509.Certificate{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	rogueCA, err := catemplate.NewCA(catemplate.CAOptions{KeyType: profile.ECDSAP256, Subject: pkix.Name{CommonName: "admin CA"}})
	require.NoError(t, err)
	f.issue(t, rogueCA, "rogue", &x509.Certificate{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return f
}

// newMDMKey gives the MDM a new key, the only one in jwks.json.
func (f *fixture) newMDMKey(t *testing.T) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	f.mdm = &challenge.Issuer{Name: "test-mdm", Key: key}
	ks := challenge.NewKeySet()
	_, err = ks.AddKey(key.Public())
	require.NoError(t, err)
	jwks, err := json.Marshal(ks)
	require.NoError(t, err)
	f.write(t, "jwks.json", jwks)
}

func (f *fixture) path(name string) string { return filepath.Join(f.dir, name) }

func (f *fixture) write(t *testing.T, name string, b []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(f.path(name), b, 0o600))
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// issue writes NAME.crt and NAME.key, a certificate from ca for a fresh key.
func (f *fixture) issue(t *testing.T, ca *catemplate.CA, name string, tmpl *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, err := catemplate.RandomSerial(nil)
	require.NoError(t, err)
	tmpl.SerialNumber, tmpl.Subject = serial, pkix.Name{CommonName: name}
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	cert, err := ca.Sign(context.Background(), tmpl, key.Public())
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	f.write(t, name+".crt", pemCert(cert))
	f.write(t, name+".key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// config writes the TOML configuration: top-level settings top, then the
// sections, then the extra sections.
func (f *fixture) config(t *testing.T, top, extra string) string {
	t.Helper()
	body := top + fmt.Sprintf(`listen = "127.0.0.1:0"
state_dir = %q
identity = "gw-1"
mdm_issuer = "test-mdm"
jwks = %q
directory = %q
profiles = ["win"]
legacy = true
log = "json"

[admin]
listen = "127.0.0.1:0"
tls_cert = %q
tls_key = %q
client_ca = %q
token_file = %q
`, f.path("state"), f.path("jwks.json"), f.path("directory.json"), f.path("admin-server.crt"),
		f.path("admin-server.key"), f.path("admin-ca.pem"), f.path("token")) + extra
	f.write(t, "scepkit.toml", []byte(body))
	return f.path("scepkit.toml")
}

// challenge mints a challenge for the "win" profile at gateway gw-1.
func (f *fixture) challenge(t *testing.T, user, device string) string {
	t.Helper()
	ch, _, err := f.mdm.Issue(challenge.Request{UserID: user, DeviceID: device, ProfileID: "win", Audience: "gw-1"})
	require.NoError(t, err)
	return ch
}

// running is a started scepkit process.
type running struct {
	cmd      *exec.Cmd
	base     string // http://127.0.0.1:PORT
	adminURL string // https://127.0.0.1:PORT
	mu       sync.Mutex
	logs     strings.Builder
	done     chan struct{}
	waitErr  error
}

func (r *running) Logs() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.logs.String()
}

// start runs "scepkit serve -config cfg" with env added, and waits until it serves.
func start(t *testing.T, cfg string, env ...string) *running {
	t.Helper()
	cmd := exec.Command(bin, "serve", "-config", cfg)
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	r := &running{cmd: cmd, done: make(chan struct{})}
	logged := make(chan struct{}) // the log is read to its end
	go func() {
		defer close(logged)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			r.mu.Lock()
			r.logs.WriteString(sc.Text() + "\n")
			r.mu.Unlock()
		}
	}()
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// Wait closes the pipes once the process exits: read the log to its end first
	// (os/exec), so that its last lines ("stopped") are not lost.
	go func() { <-logged; r.waitErr = cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-r.done
		}
		if t.Failed() {
			t.Logf("scepkit log:\n%s", r.Logs())
		}
	})
	deadline := time.After(30 * time.Second)
	for r.base == "" || r.adminURL == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				<-r.done
				t.Fatalf("scepkit exited: %v\n%s", r.waitErr, r.Logs())
			}
			if u, ok := strings.CutPrefix(l, "scepkit serving SCEP on "); ok {
				r.base = strings.TrimSuffix(u, "/scep")
			}
			if u, ok := strings.CutPrefix(l, "scepkit admin API on "); ok {
				r.adminURL = u
			}
		case <-deadline:
			t.Fatalf("scepkit did not start\n%s", r.Logs())
		}
	}
	return r
}

// stop sends SIGTERM and waits for a clean exit.
func (r *running) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, r.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Fatal("scepkit did not stop on SIGTERM")
	}
	require.NoError(t, r.waitErr, r.Logs())
	require.Contains(t, r.Logs(), `"msg":"stopped"`)
}

func get(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b), resp.Header
}

// metric returns the value of the Prometheus sample whose name and labels match re.
func metric(t *testing.T, base string, re string) float64 {
	t.Helper()
	_, body, _ := get(t, base+"/metrics")
	m := regexp.MustCompile(`(?m)^` + re + ` ([0-9.e+]+)$`).FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return v
}

// admin runs "scepkit admin" against r with the given credentials flags.
func (r *running) admin(t *testing.T, f *fixture, creds []string, args ...string) (string, error) {
	t.Helper()
	full := append([]string{"admin", "-url", r.adminURL, "-ca", f.path("admin-ca.pem")}, creds...)
	out, err := exec.Command(bin, append(full, args...)...).CombinedOutput()
	return string(out), err
}

func readCRL(t *testing.T, base string) *x509.RevocationList {
	t.Helper()
	return readCRLAt(t, base+"/crl")
}

func readCRLAt(t *testing.T, url string) *x509.RevocationList {
	t.Helper()
	code, body, hdr := get(t, url)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "application/pkix-crl", hdr.Get("Content-Type"))
	crl, err := x509.ParseRevocationList([]byte(body))
	require.NoError(t, err)
	return crl
}

// getCRL asks the SCEP server at url for the CRL of issuer through GetCRL, as a
// device holding the certificates certs (what GetCACert returned) does, and returns
// the CRL of the verified, decrypted reply.
func getCRL(t *testing.T, url string, certs []*x509.Certificate, issuer []byte, serial *big.Int) *x509.RevocationList {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	self, err := scep.SelfSigned(key, pkix.Name{CommonName: "crl reader"}, nil)
	require.NoError(t, err)
	var ra *x509.Certificate
	for _, c := range certs {
		if !c.IsCA && c.KeyUsage&x509.KeyUsageKeyEncipherment != 0 {
			ra = c
		}
	}
	require.NotNil(t, ra, "no RA encryption certificate")
	payload, err := scep.MarshalIssuerAndSerial(issuer, serial)
	require.NoError(t, err)
	der, _, err := scep.NewRequest(scep.RequestOptions{Type: scep.GetCRL, TransactionID: "getcrl-" + serial.Text(16),
		Payload: payload, Recipient: ra, SignerCert: self, Signer: key})
	require.NoError(t, err)
	resp, err := http.Post(url+"?operation=PKIOperation", "application/x-pki-message", bytes.NewReader(der))
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	rep, err := scep.ParsePKIMessage(body, scep.ParseOptions{Certificates: certs})
	require.NoError(t, err)
	require.Equal(t, scep.Success, rep.Status, "failInfo %v", rep.FailInfo)
	require.NoError(t, rep.Decrypt(scep.Recipient{Certificate: self, Key: key}))
	crl, err := x509.ParseRevocationList(rep.CRL)
	require.NoError(t, err)
	return crl
}

func crlLists(crl *x509.RevocationList, serial *big.Int) bool {
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(serial) == 0 {
			return true
		}
	}
	return false
}

// TestGatewayBinary: enrollment and refusals with scepclient, counted in /metrics by
// outcome and phase; a revocation through the admin CLI shows in the CRL served over
// HTTP and stops the renewal; the admin API refuses calls without credentials and
// with a client certificate of another CA; SIGTERM stops it cleanly.
func TestGatewayBinary(t *testing.T) {
	f := newFixture(t)
	r := start(t, f.config(t, "", ""))

	code, body, _ := get(t, r.base+"/healthz")
	require.Equal(t, http.StatusOK, code, body)
	code, body, _ = get(t, r.base+"/readyz")
	require.Equal(t, http.StatusOK, code, body)

	url := r.base + "/scep"
	alice := scepclienttest.NewDevice(t)
	out, err := alice.Enroll(url, "alice@example.com", f.challenge(t, "alice@example.com", "alice-laptop"))
	require.NoError(t, err, out)
	cert, err := alice.Certificate()
	require.NoError(t, err)
	require.Equal(t, []string{r.base + "/crl"}, cert.CRLDistributionPoints)
	_, caDER, _ := get(t, r.base+"/ca.cer")
	ca, err := x509.ParseCertificate([]byte(caDER))
	require.NoError(t, err)
	require.NoError(t, cert.CheckSignatureFrom(ca))
	// The caIssuers URL names this CA for good (/ca.cer follows a rollover).
	require.Equal(t, []string{r.base + "/ca/" + hex.EncodeToString(ca.SubjectKeyId)}, cert.IssuingCertificateURL)
	_, body, _ = get(t, cert.IssuingCertificateURL[0])
	require.Equal(t, caDER, body)

	// Refusals: a challenge for another user's device (phase 3), a forged one (phase 2).
	out, err = scepclienttest.NewDevice(t).Enroll(url, "alice@example.com", f.challenge(t, "alice@example.com", "bob-phone"))
	require.Error(t, err, out)
	out, err = scepclienttest.NewDevice(t).Enroll(url, "bob@example.com", "not-a-challenge")
	require.Error(t, err, out)

	require.Equal(t, 1.0, metric(t, r.base, `scepkit_crp_enrollments_total\{[^}]*scepkit_outcome="issued"[^}]*\}`))
	require.Equal(t, 1.0, metric(t, r.base, `scepkit_crp_enrollments_total\{[^}]*scepkit_outcome="failed",scepkit_phase="phase3-mapping"[^}]*\}`))
	require.Equal(t, 1.0, metric(t, r.base, `scepkit_crp_enrollments_total\{[^}]*scepkit_outcome="failed",scepkit_phase="phase2-genuineness"[^}]*\}`))
	require.Positive(t, metric(t, r.base, `scepkit_certificate_expiry_seconds\{[^}]*scepkit_certificate_role="ca"[^}]*\}`))

	// Refusals before the CRP: counted by HTTP status and logged, without the query.
	code, _, _ = get(t, url+"?operation=PKIOperation&message="+strings.Repeat("SECRETQUERY", 7000))
	require.Equal(t, http.StatusRequestURITooLong, code)
	req, err := http.NewRequest(http.MethodPut, url+"?operation=PKIOperation", strings.NewReader("SECRETBODY"))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	require.Equal(t, 1.0, metric(t, r.base, `scepkit_scep_requests_total\{http_response_status_code="414",[^}]*scep_operation="PKIOperation",scep_status="rejected"[^}]*\}`))
	require.Equal(t, 1.0, metric(t, r.base, `scepkit_scep_requests_total\{http_response_status_code="405",[^}]*scep_operation="PKIOperation",scep_status="rejected"[^}]*\}`))
	require.Regexp(t, `"msg":"scep: request refused".*"operation":"PKIOperation".*"status":414`, r.Logs())
	require.NotContains(t, r.Logs(), "SECRET")

	// The admin API: refused without credentials and with another CA's certificate.
	out, err = r.admin(t, f, nil, "pending")
	require.Error(t, err, out)
	require.Contains(t, out, "401")
	out, err = r.admin(t, f, []string{"-cert", f.path("rogue.crt"), "-key", f.path("rogue.key")}, "pending")
	require.Error(t, err, out)
	require.Contains(t, out, "401")
	// A certificate that does not verify is refused even beside a good token.
	out, err = r.admin(t, f, []string{"-cert", f.path("rogue.crt"), "-key", f.path("rogue.key"), "-token-file", f.path("token")}, "pending")
	require.Error(t, err, out)
	require.Contains(t, out, "401")
	f.write(t, "wrong-token", []byte(strings.Repeat("x", 42)))
	out, err = r.admin(t, f, []string{"-token-file", f.path("wrong-token")}, "pending")
	require.Error(t, err, out)
	require.Contains(t, out, "401")

	serial := cert.SerialNumber.Text(16)
	out, err = r.admin(t, f, []string{"-cert", f.path("client.crt"), "-key", f.path("client.key")}, "cert", serial)
	require.NoError(t, err, out)
	require.Contains(t, out, `"user":"alice@example.com"`)
	out, err = r.admin(t, f, []string{"-token-file", f.path("token")}, "certs", "-device", "alice-laptop")
	require.NoError(t, err, out)
	require.Contains(t, out, `"serial":"`+serial+`"`)
	out, err = r.admin(t, f, []string{"-token-file", f.path("token")}, "certs", "-expiring-within", "1h")
	require.NoError(t, err, out)
	require.Equal(t, "[]\n", out)

	require.False(t, crlLists(readCRL(t, r.base), cert.SerialNumber))
	out, err = r.admin(t, f, []string{"-token-file", f.path("token")}, "revoke", serial, "1")
	require.NoError(t, err, out)
	crl := readCRL(t, r.base)
	require.NoError(t, crl.CheckSignatureFrom(ca))
	require.True(t, crlLists(crl, cert.SerialNumber))

	// A serial the inventory does not hold (a certificate withheld from its device
	// because it could not be recorded, which the log says to revoke): refused
	// unless named unrecorded, then in the CRL. It could not be revoked at all.
	withheld := new(big.Int).SetBytes([]byte("withheld-0001"))
	out, err = r.admin(t, f, []string{"-token-file", f.path("token")}, "revoke", withheld.Text(16), "1")
	require.Error(t, err, out)
	require.Contains(t, out, "unrecorded")
	out, err = r.admin(t, f, []string{"-token-file", f.path("token")}, "revoke", withheld.Text(16), "1", "-unrecorded")
	require.NoError(t, err, out)
	crl = readCRL(t, r.base)
	require.NoError(t, crl.CheckSignatureFrom(ca))
	require.True(t, crlLists(crl, withheld))
	require.True(t, crlLists(crl, cert.SerialNumber))

	out, err = alice.Enroll(url, "alice@example.com", "") // renewal with the revoked certificate
	require.Error(t, err, out)
	renewed, err := alice.Certificate()
	require.NoError(t, err)
	require.Equal(t, cert.SerialNumber, renewed.SerialNumber, "no new certificate")

	logs := r.Logs()
	require.Regexp(t, `"audit":"admin".*"who":"token".*"path":"/v1/certificates/`+serial+`/revoke".*"status":200`, logs)
	require.Regexp(t, `"audit":"admin".*"who":"".*"status":401`, logs)
	// The refused certificate is named in the audit line of the refused call.
	require.Regexp(t, `"audit":"admin".*"who":"".*"refused_cert":"CN=rogue".*"status":401`, logs)
	r.stop(t)
}

// TestPendingApprovedThroughAdmin: with require_approval a request waits, listed by
// the admin API whether the transactions are in the embedded store or in Redis;
// approved through the admin CLI, the device's next attempt collects the certificate.
func TestPendingApprovedThroughAdmin(t *testing.T) {
	t.Run("embedded", func(t *testing.T) { pendingApprovedThroughAdmin(t, "") })
	t.Run("redis", func(t *testing.T) {
		rs := redistest.Start(t)
		pendingApprovedThroughAdmin(t, fmt.Sprintf("[redis]\naddr = %q\n", rs.Addr))
	})
}

func pendingApprovedThroughAdmin(t *testing.T, extra string) {
	f := newFixture(t)
	r := start(t, f.config(t, "require_approval = true\n", extra))
	dev := scepclienttest.NewDevice(t)
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := dev.Enroll(r.base+"/scep", "bob@example.com", f.challenge(t, "bob@example.com", "bob-phone"))
		done <- result{out, err}
	}()
	token := []string{"-token-file", f.path("token")}
	var pending []pendingRequest
	require.Eventually(t, func() bool {
		out, err := r.admin(t, f, token, "pending")
		if err != nil || json.Unmarshal([]byte(out), &pending) != nil {
			return false
		}
		return len(pending) == 1
	}, 20*time.Second, 200*time.Millisecond)
	require.Equal(t, "bob@example.com", pending[0].UserID)
	require.Equal(t, 1.0, metric(t, r.base, `scepkit_crp_enrollments_total\{[^}]*scepkit_outcome="pending"[^}]*\}`))

	out, err := r.admin(t, f, token, "approve", pending[0].TransactionID)
	require.NoError(t, err, out)
	out, err = r.admin(t, f, token, "approve", pending[0].TransactionID)
	require.Error(t, err, "decided once: %s", out)

	select {
	case res := <-done:
		require.NoError(t, res.err, res.out)
	case <-time.After(90 * time.Second):
		t.Fatal("scepclient did not collect the approved certificate")
	}
	cert, err := dev.Certificate()
	require.NoError(t, err)
	require.Equal(t, "bob@example.com", cert.Subject.CommonName)
	r.stop(t)
}

// TestNextCAAnnounced: a next CA certificate prepared ahead is announced through
// GetNextCACert, signed by the current RA, and the capability is advertised.
func TestNextCAAnnounced(t *testing.T) {
	f := newFixture(t)
	next, err := catemplate.NewCA(catemplate.CAOptions{KeyType: profile.ECDSAP256, Subject: pkix.Name{CommonName: "next CA"}})
	require.NoError(t, err)
	f.write(t, "next-ca.pem", pemCert(next.Certificate))
	r := start(t, f.config(t, fmt.Sprintf("next_ca_cert = %q\n", f.path("next-ca.pem")), ""))
	_, caps, _ := get(t, r.base+"/scep?operation=GetCACaps")
	require.Contains(t, caps, "GetNextCACert")
	_, caDER, _ := get(t, r.base+"/ca.cer")
	fp := sha256.Sum256([]byte(caDER))
	c := &scep.Client{URL: r.base + "/scep", CAFingerprint: fp[:]}
	got, err := c.GetNextCACert(context.Background())
	require.NoError(t, err)
	require.True(t, got[0].Equal(next.Certificate))
	r.stop(t)

	f.write(t, "not-ca.pem", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	out, err := exec.Command(bin, "serve", "-config", f.config(t, fmt.Sprintf("next_ca_cert = %q\n", f.path("not-ca.pem")), "")).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "setting next_ca_cert (SCEPKIT_NEXT_CA_CERT)")
}

// TestRolloverAtConfiguredTime: "scepkit rollover-prepare" writes a next CA and RA;
// configured with rollover.dir and rollover.at, the gateway announces them through
// GetNextCACert (signed by the current RA), switches at that time (logged, and in
// /metrics), then serves the next CA through GetCACert and issues under it with its
// own CRL distribution point, renews a certificate of the previous CA with
// scepclient, and lists a revocation in the next CA's CRL.
func TestRolloverAtConfiguredTime(t *testing.T) {
	f := newFixture(t)
	r := start(t, f.config(t, "", "")) // makes the current CA and RA
	url := r.base + "/scep"
	alice := scepclienttest.NewDevice(t)
	out, err := alice.Enroll(url, "alice@example.com", f.challenge(t, "alice@example.com", "alice-laptop"))
	require.NoError(t, err, out)
	aliceCert, err := alice.Certificate()
	require.NoError(t, err)
	firstBase := r.base // the public URL of this run, in aliceCert
	r.stop(t)

	next := f.path("next")
	cfg := f.config(t, "", "")
	outb, err := exec.Command(bin, "rollover-prepare", "-config", cfg, "-dir", next).CombinedOutput()
	require.NoError(t, err, string(outb))
	outb, err = exec.Command(bin, "rollover-prepare", "-config", cfg, "-dir", next).CombinedOutput()
	require.Error(t, err, "never overwrites a prepared rollover: %s", outb)
	nextCA, err := catemplate.LoadCA(next)
	require.NoError(t, err)

	at := time.Now().Add(8 * time.Second).UTC().Truncate(time.Second)
	rolling := f.config(t, "", fmt.Sprintf("\n[rollover]\nat = %q\ndir = %q\n", at.Format(time.RFC3339), next))
	// One rollover at a time: with [rollover] set, the CA in state_dir is (or will be)
	// the previous one, and a rollover prepared from it would bring it back.
	outb, err = exec.Command(bin, "rollover-prepare", "-config", rolling, "-dir", f.path("next2")).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(outb), "setting rollover.dir (SCEPKIT_ROLLOVER_DIR): a rollover is configured")
	require.NoDirExists(t, f.path("next2"))
	r = start(t, rolling)
	url = r.base + "/scep"
	_, caDER, _ := get(t, r.base+"/ca.cer")
	oldFP := sha256.Sum256([]byte(caDER))
	old := &scep.Client{URL: url, CAFingerprint: oldFP[:]}
	announced, err := old.GetNextCACert(context.Background())
	require.NoError(t, err)
	require.True(t, slices.ContainsFunc(announced, nextCA.Certificate.Equal))
	_, caps, _ := get(t, url+"?operation=GetCACaps")
	require.Contains(t, caps, "GetNextCACert")

	time.Sleep(time.Until(at) + 500*time.Millisecond)
	_, err = old.GetCACert(context.Background())
	require.ErrorIs(t, err, scep.ErrFingerprint, "GetCACert serves the next CA")
	nextFP := sha256.Sum256(nextCA.Certificate.Raw)
	served, err := (&scep.Client{URL: url, CAFingerprint: nextFP[:]}).GetCACert(context.Background())
	require.NoError(t, err)
	require.True(t, slices.ContainsFunc(served, nextCA.Certificate.Equal))
	// The CA certificate download names the CA in force; the previous CA stays at
	// the caIssuers URL of the certificates it issued.
	_, body, hdr := get(t, r.base+"/ca.cer")
	require.Equal(t, string(nextCA.Certificate.Raw), body, "/ca.cer after the switch")
	require.Equal(t, "application/pkix-cert", hdr.Get("Content-Type"))
	require.Len(t, aliceCert.IssuingCertificateURL, 1)
	aia, ok := strings.CutPrefix(aliceCert.IssuingCertificateURL[0], firstBase)
	require.True(t, ok, aliceCert.IssuingCertificateURL)
	_, body, _ = get(t, r.base+aia)
	require.Equal(t, caDER, body, "the previous CA at its certificates' caIssuers URL after the switch")

	bob := scepclienttest.NewDevice(t)
	out, err = bob.Enroll(url, "bob@example.com", f.challenge(t, "bob@example.com", "bob-phone"))
	require.NoError(t, err, out)
	bobCert, err := bob.Certificate()
	require.NoError(t, err)
	require.NoError(t, bobCert.CheckSignatureFrom(nextCA.Certificate))
	id := hex.EncodeToString(nextCA.Certificate.SubjectKeyId)
	require.Equal(t, []string{r.base + "/crl/" + id}, bobCert.CRLDistributionPoints)
	require.Equal(t, []string{r.base + "/ca/" + id}, bobCert.IssuingCertificateURL)
	_, body, _ = get(t, r.base+"/ca/"+id)
	require.Equal(t, string(nextCA.Certificate.Raw), body)

	out, err = alice.Enroll(url, "alice@example.com", "") // renews the previous CA's certificate
	require.NoError(t, err, out)
	renewed, err := alice.Certificate()
	require.NoError(t, err)
	require.NotEqual(t, aliceCert.SerialNumber, renewed.SerialNumber)
	require.NoError(t, renewed.CheckSignatureFrom(nextCA.Certificate))

	out, err = r.admin(t, f, []string{"-token-file", f.path("token")}, "revoke", bobCert.SerialNumber.Text(16), "1")
	require.NoError(t, err, out)
	crl := readCRLAt(t, r.base+"/crl/"+id)
	require.NoError(t, crl.CheckSignatureFrom(nextCA.Certificate))
	require.True(t, crlLists(crl, bobCert.SerialNumber))
	oldCA, err := x509.ParseCertificate([]byte(caDER))
	require.NoError(t, err)
	prevCRL := readCRL(t, r.base)
	require.NoError(t, prevCRL.CheckSignatureFrom(oldCA), "the previous CA's CRL stays at /crl")
	require.False(t, crlLists(prevCRL, bobCert.SerialNumber), "the previous CA's CRL lists only its own certificates")
	// GetCRL names the issuer of the certificate asked about (RFC 8894 §3.3.4): the
	// answer is that CA's CRL, the previous one's for alice's first certificate.
	crl = getCRL(t, url, served, aliceCert.RawIssuer, aliceCert.SerialNumber)
	require.NoError(t, crl.CheckSignatureFrom(oldCA), "GetCRL naming the previous CA")
	crl = getCRL(t, url, served, bobCert.RawIssuer, bobCert.SerialNumber)
	require.NoError(t, crl.CheckSignatureFrom(nextCA.Certificate), "GetCRL naming the next CA")
	require.True(t, crlLists(crl, bobCert.SerialNumber))

	require.GreaterOrEqual(t, metric(t, r.base, `scepkit_scep_rollover_seconds\{[^}]*\}`), 0.5)
	logs := r.Logs()
	require.Contains(t, logs, "rollover: serving the next CA and RA")
	require.Contains(t, logs, "scep: rolled over to the next CA and RA")
	r.stop(t)

	outb, err = exec.Command(bin, "serve", "-config", f.config(t, "", "\n[rollover]\nat = \"tomorrow\"\ndir = \"/nonexistent\"\n")).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(outb), "setting rollover.at (SCEPKIT_ROLLOVER_AT)")
}

// TestIntuneConfigured: with [intune] the gateway signs in to the tenant (here
// Intune's emulator on loopback) and /readyz says so; a device presenting an Intune
// challenge enrolls with scepclient, judged by Intune's validation service, which is
// told of the certificate; a challenge Intune refuses issues nothing; scepkit's own
// challenges keep working beside them.
func TestIntuneConfigured(t *testing.T) {
	emu := intunetest.NewServer()
	defer emu.Close()
	f := newFixture(t)
	f.write(t, "intune-secret", []byte(emu.ClientSecret+"\n"))
	r := start(t, f.config(t, "", fmt.Sprintf("\n[intune]\ntenant = %q\nclient_id = %q\nclient_secret_file = %q\nauthority = %q\ngraph_url = %q\nrevocation_interval = \"200ms\"\n",
		emu.Tenant, emu.ClientID, f.path("intune-secret"), emu.URL+"/", emu.URL+"/")))
	code, body, _ := get(t, r.base+"/readyz")
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `"name":"intune","ok":true`)

	url := r.base + "/scep"
	dev := scepclienttest.NewDevice(t)
	out, err := dev.Enroll(url, "carol@example.com", emu.Challenge(intunetest.Verdict{}))
	require.NoError(t, err, out)
	cert, err := dev.Certificate()
	require.NoError(t, err)
	require.Equal(t, "carol@example.com", cert.Subject.CommonName, "the subject Intune judged")
	require.Equal(t, 1, emu.Calls(intunetest.OpSuccess), "Intune told of the certificate")

	// Intune's admin revokes it: polled, recorded, in the CRL, reported back.
	emu.QueueRevocation(cert.SerialNumber.Text(16), emu.Successes()[0].Notification.IssuingCertificateAuthority)
	require.Eventually(t, func() bool { return len(emu.RevocationResults()) == 1 }, 20*time.Second, 100*time.Millisecond)
	require.True(t, emu.RevocationResults()[0].Succeeded, "%+v", emu.RevocationResults()[0])
	require.True(t, crlLists(readCRL(t, r.base), cert.SerialNumber))

	out, err = scepclienttest.NewDevice(t).Enroll(url, "mallory@example.com",
		emu.Challenge(intunetest.Verdict{Code: intune.CodeChallengeExpired}))
	require.Error(t, err, out)
	require.Equal(t, 1.0, metric(t, r.base, `scepkit_crp_enrollments_total\{[^}]*scepkit_outcome="issued"[^}]*\}`))

	out, err = scepclienttest.NewDevice(t).Enroll(url, "alice@example.com", f.challenge(t, "alice@example.com", "alice-laptop"))
	require.NoError(t, err, out)
	require.Equal(t, 2, emu.Calls(intunetest.OpValidate), "scepkit's own challenge is not sent to Intune")
	r.stop(t)

	// Intune down: unready.
	emu.Close()
	r = start(t, f.config(t, "", fmt.Sprintf("\n[intune]\ntenant = %q\nclient_id = %q\nclient_secret_file = %q\nauthority = %q\ngraph_url = %q\n",
		emu.Tenant, emu.ClientID, f.path("intune-secret"), emu.URL+"/", emu.URL+"/")))
	code, body, _ = get(t, r.base+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	require.Contains(t, body, `"name":"intune","ok":false`)
	r.stop(t)
}

// TestTracesToOTLP: with otlp.traces_url, the spans of an enrollment (one per
// request, a child per phase) reach an OTLP/HTTP receiver, flushed at shutdown; the
// challenge is in none of them.
func TestTracesToOTLP(t *testing.T) {
	var mu sync.Mutex
	var bodies [][]byte
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" && r.Header.Get("Content-Type") == "application/x-protobuf" {
			mu.Lock()
			bodies = append(bodies, b)
			mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer recv.Close()
	f := newFixture(t)
	r := start(t, f.config(t, "", fmt.Sprintf("[otlp]\ntraces_url = %q\n", recv.URL+"/v1/traces")))
	ch := f.challenge(t, "alice@example.com", "alice-laptop")
	out, err := scepclienttest.NewDevice(t).Enroll(r.base+"/scep", "alice@example.com", ch)
	require.NoError(t, err, out)
	r.stop(t)
	mu.Lock()
	defer mu.Unlock()
	all := bytes.Join(bodies, nil)
	require.NotEmpty(t, bodies, "no spans exported")
	for _, name := range []string{"scep PKIOperation", "crp PKCSReq", "crp phase1-expiry", "crp phase2-genuineness",
		"crp phase3-mapping", "crp issue", "scepkit.challenge.fingerprint"} {
		require.True(t, bytes.Contains(all, []byte(name)), "no %q in the exported spans", name)
	}
	require.False(t, bytes.Contains(all, []byte(ch)), "the challenge was exported")
}

// readyzTurns waits until /readyz answers code, which it must within a few of its
// readyInterval (the outcome of its checks is kept that long), and returns the body.
func readyzTurns(t *testing.T, base string, code int) string {
	t.Helper()
	deadline := time.Now().Add(5 * readyInterval)
	for {
		c, body, _ := get(t, base+"/readyz")
		if c == code {
			return body
		}
		require.True(t, time.Now().Before(deadline), "/readyz still answers %d: %s", c, body)
		time.Sleep(readyInterval / 10)
	}
}

// TestReadyzFollowsRedis: /readyz turns unready when Redis stops and ready again
// when it returns.
func TestReadyzFollowsRedis(t *testing.T) {
	rs := redistest.Start(t)
	f := newFixture(t)
	r := start(t, f.config(t, "", fmt.Sprintf("[redis]\naddr = %q\n", rs.Addr)))
	code, body, _ := get(t, r.base+"/readyz")
	require.Equal(t, http.StatusOK, code, body)
	rs.Stop()
	body = readyzTurns(t, r.base, http.StatusServiceUnavailable)
	require.Contains(t, body, `"name":"redis","ok":false`)
	// The error's text (here Redis's address) is for the log, not for whoever can
	// reach the public listener.
	require.NotContains(t, body, rs.Addr)
	logged := regexp.MustCompile(`"msg":"readyz: check failed","check":"redis","err":"[^"]*` + regexp.QuoteMeta(rs.Addr))
	require.Eventually(t, func() bool { return logged.MatchString(r.Logs()) }, 5*time.Second, 20*time.Millisecond,
		"the failed check's error is logged")
	rs.Restart()
	require.Eventually(t, func() bool { c, _, _ := get(t, r.base+"/readyz"); return c == http.StatusOK },
		10*time.Second, 100*time.Millisecond)
	out, err := scepclienttest.NewDevice(t).Enroll(r.base+"/scep", "alice@example.com", f.challenge(t, "alice@example.com", "alice-laptop"))
	require.NoError(t, err, out)
}

// TestReadyzFollowsPostgres: with the store in PostgreSQL, /readyz turns unready
// when PostgreSQL stops and ready again when it returns.
func TestReadyzFollowsPostgres(t *testing.T) {
	pg := pgtest.Start(t)
	f := newFixture(t)
	r := start(t, f.config(t, "", fmt.Sprintf("[postgres]\ndsn = %q\n", pg.NewDatabase(t))))
	out, err := scepclienttest.NewDevice(t).Enroll(r.base+"/scep", "alice@example.com", f.challenge(t, "alice@example.com", "alice-laptop"))
	require.NoError(t, err, out)
	code, body, _ := get(t, r.base+"/readyz")
	require.Equal(t, http.StatusOK, code, body)
	pg.Stop()
	body = readyzTurns(t, r.base, http.StatusServiceUnavailable)
	require.Contains(t, body, `"name":"store","ok":false`)
	pg.Restart()
	require.Eventually(t, func() bool { c, _, _ := get(t, r.base+"/readyz"); return c == http.StatusOK },
		20*time.Second, 200*time.Millisecond)
	out, err = r.admin(t, f, []string{"-token-file", f.path("token")}, "certs", "-user", "alice@example.com")
	require.NoError(t, err, out)
	require.Contains(t, out, `"device":"alice-laptop"`)
	r.stop(t)
}

// TestKeysInSoftHSM: the whole flow with the CA and RA keys in a SoftHSM2 token:
// enrollment, revocation in the CRL (signed in the token), refused renewal.
func TestKeysInSoftHSM(t *testing.T) {
	st := tokenWithKeys(t)
	f := newFixture(t)
	f.write(t, "pin", []byte(st.PIN+"\n"))
	cfg := f.config(t, "", fmt.Sprintf("[pkcs11]\nmodule = %q\ntoken_label = %q\npin_file = %q\n", st.Module, st.Label, f.path("pin")))
	r := start(t, cfg, "SOFTHSM2_CONF="+st.Conf)
	dev := scepclienttest.NewDevice(t)
	out, err := dev.Enroll(r.base+"/scep", "alice@example.com", f.challenge(t, "alice@example.com", "alice-laptop"))
	require.NoError(t, err, out)
	cert, err := dev.Certificate()
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(f.path("state"), catemplate.CAKeyFile))
	require.ErrorIs(t, err, os.ErrNotExist, "no key file: the keys stay in the token")
	out, err = r.admin(t, f, []string{"-token-file", f.path("token")}, "revoke", cert.SerialNumber.Text(16), "4")
	require.NoError(t, err, out)
	require.True(t, crlLists(readCRL(t, r.base), cert.SerialNumber))
	out, err = dev.Enroll(r.base+"/scep", "alice@example.com", "")
	require.Error(t, err, out)
	r.stop(t)

	// Restarted, it finds its certificates beside the token's keys.
	r = start(t, cfg, "SOFTHSM2_CONF="+st.Conf)
	out, err = scepclienttest.NewDevice(t).Enroll(r.base+"/scep", "bob@example.com", f.challenge(t, "bob@example.com", "bob-phone"))
	require.NoError(t, err, out)
	r.stop(t)
}

// tokenWithKeys is a fresh SoftHSM2 token holding the CA and RA keys under the
// default pkcs11.*_key labels, made as an operator makes them before the first start.
func tokenWithKeys(t *testing.T) *softhsmtest.Token {
	t.Helper()
	st := softhsmtest.New(t)
	tok, err := pkcs11key.Open(pkcs11key.Config{Module: st.Module, TokenLabel: st.Label, PIN: st.PIN})
	require.NoError(t, err)
	// RSA throughout: scepclient encrypts to every certificate GetCACert returns and
	// cannot encrypt to an ECDSA CA.
	for _, label := range []string{"scepkit-ca", "scepkit-ra-sign", "scepkit-ra-encrypt"} {
		_, err := tok.GenerateKey(label, pkcs11key.RSA2048)
		require.NoError(t, err)
	}
	require.NoError(t, tok.Close())
	return st
}

// hsmFixture is a fixture with the PIN of a token from tokenWithKeys, the [pkcs11]
// section that names them, and the environment the gateway needs for the token.
func hsmFixture(t *testing.T) (st *softhsmtest.Token, f *fixture, pkcs11, env string) {
	t.Helper()
	st = tokenWithKeys(t)
	f = newFixture(t)
	f.write(t, "pin", []byte(st.PIN+"\n"))
	pkcs11 = fmt.Sprintf("[pkcs11]\nmodule = %q\ntoken_label = %q\npin_file = %q\n", st.Module, st.Label, f.path("pin"))
	return st, f, pkcs11, "SOFTHSM2_CONF=" + st.Conf
}

// TestRolloverKeysInSoftHSM: with [pkcs11], "scepkit rollover-prepare" refuses while
// the next keys are not in the token, and with -generate-keys makes them there
// (sensitive, never extractable) and writes only their certificates. The gateway
// switches at rollover.at to the next CA and RA in the token: /ca.cer names the next
// CA, scepclient enrolls with a certificate that chains to it, and renews a
// certificate of the previous CA under it; /readyz finds the next keys signing and
// decrypting.
func TestRolloverKeysInSoftHSM(t *testing.T) {
	st, f, pkcs11, env := hsmFixture(t)
	cfg := f.config(t, "", pkcs11)
	r := start(t, cfg, env)
	alice := scepclienttest.NewDevice(t)
	out, err := alice.Enroll(r.base+"/scep", "alice@example.com", f.challenge(t, "alice@example.com", "alice-laptop"))
	require.NoError(t, err, out)
	aliceCert, err := alice.Certificate()
	require.NoError(t, err)
	_, caDER, _ := get(t, r.base+"/ca.cer")
	r.stop(t)

	next := f.path("next")
	prepare := func(args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{"rollover-prepare", "-config", cfg, "-dir", next}, args...)...)
		cmd.Env = append(os.Environ(), env)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err = prepare()
	require.Error(t, err, out)
	require.Contains(t, out, "setting rollover.ra_sign_key (SCEPKIT_ROLLOVER_RA_SIGN_KEY)")
	require.NoDirExists(t, next, "nothing written without the keys")
	out, err = prepare("-generate-keys")
	require.NoError(t, err, out)
	files, err := os.ReadDir(next)
	require.NoError(t, err)
	var names []string
	for _, e := range files {
		names = append(names, e.Name())
	}
	require.ElementsMatch(t, []string{catemplate.CACertFile, catemplate.RASigningCertFile, catemplate.RAEncryptCertFile}, names,
		"certificates only: the keys stay in the token")
	out, err = prepare("-generate-keys")
	require.Error(t, err, "never overwrites a prepared rollover: %s", out)
	nextCerts, err := pemfile.ReadCertificates(filepath.Join(next, catemplate.CACertFile))
	require.NoError(t, err)
	nextCA := nextCerts[0]

	requireKeysKept(t, st, "scepkit-next-ca", "scepkit-next-ra-sign", "scepkit-next-ra-encrypt")

	at := time.Now().Add(8 * time.Second).UTC().Truncate(time.Second)
	r = start(t, f.config(t, "", pkcs11+fmt.Sprintf("\n[rollover]\nat = %q\ndir = %q\n", at.Format(time.RFC3339), next)), env)
	url := r.base + "/scep"
	_, body, _ := get(t, r.base+"/ca.cer")
	require.Equal(t, caDER, body, "the current CA before the switch")
	time.Sleep(time.Until(at) + 500*time.Millisecond)
	_, body, _ = get(t, r.base+"/ca.cer")
	require.Equal(t, string(nextCA.Raw), body, "the next CA after the switch")

	roots := x509.NewCertPool()
	roots.AddCert(nextCA)
	bob := scepclienttest.NewDevice(t)
	out, err = bob.Enroll(url, "bob@example.com", f.challenge(t, "bob@example.com", "bob-phone"))
	require.NoError(t, err, out)
	bobCert, err := bob.Certificate()
	require.NoError(t, err)
	_, err = bobCert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err, "issued by the next CA, whose key is in the token")

	out, err = alice.Enroll(url, "alice@example.com", "") // renews the previous CA's certificate
	require.NoError(t, err, out)
	renewed, err := alice.Certificate()
	require.NoError(t, err)
	require.NotEqual(t, aliceCert.SerialNumber, renewed.SerialNumber)
	_, err = renewed.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)

	code, body, _ := get(t, r.base+"/readyz")
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, r.Logs(), "rollover: serving the next CA and RA")
	r.stop(t)
}

// TestRolloverRAOnlyWithOperatorKeys: the steps docs/operations.md gives for next keys
// an operator makes: pkcs11-tool generates the next RA keys in the token, "scepkit
// rollover-prepare -ra-only" (without -generate-keys) finds them there and writes
// their certificates only, issued with the current CA's key in the token. At the
// switch GetCACert serves the next RA, and scepclient enrolls through it under the
// same CA.
func TestRolloverRAOnlyWithOperatorKeys(t *testing.T) {
	tool := testserver.LookPath(t, "pkcs11-tool", "apt-get install opensc")
	st, f, pkcs11, env := hsmFixture(t)
	cfg := f.config(t, "", pkcs11)
	r := start(t, cfg, env)
	_, caDER, _ := get(t, r.base+"/ca.cer")
	r.stop(t)
	ca, err := x509.ParseCertificate([]byte(caDER))
	require.NoError(t, err)

	for _, label := range []string{"scepkit-next-ra-sign", "scepkit-next-ra-encrypt"} {
		id := make([]byte, 8)
		_, err := rand.Read(id)
		require.NoError(t, err)
		cmd := exec.Command(tool, "--module", st.Module, "--token-label", st.Label, "--login", "--pin", st.PIN,
			"--keypairgen", "--key-type", "rsa:3072", "--label", label, "--id", hex.EncodeToString(id), "--sensitive")
		cmd.Env = append(os.Environ(), env)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
	}
	next := f.path("next")
	cmd := exec.Command(bin, "rollover-prepare", "-config", cfg, "-dir", next, "-ra-only")
	cmd.Env = append(os.Environ(), env)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	files, err := os.ReadDir(next)
	require.NoError(t, err)
	require.Len(t, files, 2, "ra-sign.crt and ra-encrypt.crt only")
	nextRA, err := pemfile.ReadCertificates(filepath.Join(next, catemplate.RASigningCertFile))
	require.NoError(t, err)
	require.NoError(t, nextRA[0].CheckSignatureFrom(ca))

	at := time.Now().Add(8 * time.Second).UTC().Truncate(time.Second)
	r = start(t, f.config(t, "", pkcs11+fmt.Sprintf("\n[rollover]\nat = %q\ndir = %q\n", at.Format(time.RFC3339), next)), env)
	time.Sleep(time.Until(at) + 500*time.Millisecond)
	fp := sha256.Sum256([]byte(caDER))
	served, err := (&scep.Client{URL: r.base + "/scep", CAFingerprint: fp[:]}).GetCACert(context.Background())
	require.NoError(t, err)
	require.True(t, slices.ContainsFunc(served, nextRA[0].Equal), "GetCACert serves the next RA")
	dev := scepclienttest.NewDevice(t)
	out2, err := dev.Enroll(r.base+"/scep", "bob@example.com", f.challenge(t, "bob@example.com", "bob-phone"))
	require.NoError(t, err, out2)
	cert, err := dev.Certificate()
	require.NoError(t, err)
	require.NoError(t, cert.CheckSignatureFrom(ca), "the same CA: only the RA rolled over")
	_, body, _ := get(t, r.base+"/ca.cer")
	require.Equal(t, caDER, body)
	r.stop(t)
}

// TestConfigErrors: a bad configuration stops the start with an error naming the
// setting and its variable; -h lists the settings and exits 0.
func TestConfigErrors(t *testing.T) {
	f := newFixture(t)
	cfg := f.config(t, "", "")
	f.write(t, "short-token", []byte("guessable\n"))
	busyLn, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busyLn.Close()
	busy := busyLn.Addr().String()
	cases := []struct {
		name string
		env  []string
		want string
	}{
		{"no jwks", []string{"SCEPKIT_JWKS="}, "setting jwks (SCEPKIT_JWKS): required"},
		{"negative jwks_refresh", []string{"SCEPKIT_JWKS_REFRESH=-1s"}, "setting jwks_refresh (SCEPKIT_JWKS_REFRESH)"},
		{"bad duration", []string{"SCEPKIT_CRL_VALIDITY=soon"}, "setting crl.validity (SCEPKIT_CRL_VALIDITY)"},
		// Certificates expired on arrival, CRLs expired before the next is signed.
		{"certificates of a nanosecond", []string{"SCEPKIT_CERT_VALIDITY=1ns"}, "setting cert_validity (SCEPKIT_CERT_VALIDITY): at least 1h"},
		{"certificates longer than a profile carries", []string{"SCEPKIT_CERT_VALIDITY=100000h"}, "setting cert_validity (SCEPKIT_CERT_VALIDITY): at most 17520h"},
		{"CRL of a second", []string{"SCEPKIT_CRL_VALIDITY=1s"}, "setting crl.validity (SCEPKIT_CRL_VALIDITY): at least 1m"},
		{"CRL refreshed after it expires", []string{"SCEPKIT_CRL_VALIDITY=1h", "SCEPKIT_CRL_REFRESH=2h"},
			"setting crl.refresh (SCEPKIT_CRL_REFRESH): must be shorter than crl.validity"},
		{"admin without TLS", []string{"SCEPKIT_ADMIN_TLS_CERT="}, "setting admin.tls_cert (SCEPKIT_ADMIN_TLS_CERT)"},
		// The key file's setting, not the certificate's (named before).
		{"admin key missing", []string{"SCEPKIT_ADMIN_TLS_KEY=" + f.path("absent.key")}, "setting admin.tls_key (SCEPKIT_ADMIN_TLS_KEY): open "},
		{"bad log", []string{"SCEPKIT_LOG=xml"}, "setting log (SCEPKIT_LOG)"},
		{"admin CA missing", []string{"SCEPKIT_ADMIN_CLIENT_CA=" + f.path("absent.pem")}, "setting admin.client_ca (SCEPKIT_ADMIN_CLIENT_CA): "},
		{"directory missing", []string{"SCEPKIT_DIRECTORY=" + f.path("absent.json")}, "setting directory (SCEPKIT_DIRECTORY): "},
		{"admin port busy", []string{"SCEPKIT_ADMIN_LISTEN=" + busy}, "setting admin.listen (SCEPKIT_ADMIN_LISTEN): "},
		// Found once the gateway is half built (its store open): an error, not a panic.
		{"missing jwks file", []string{"SCEPKIT_JWKS=" + f.path("absent.json")}, "setting jwks (SCEPKIT_JWKS): open "},
		{"short token", []string{"SCEPKIT_ADMIN_TOKEN_FILE=" + f.path("short-token"), "SCEPKIT_ADMIN_CLIENT_CA="},
			"setting admin.token_file (SCEPKIT_ADMIN_TOKEN_FILE): the token must have at least 32 characters"},
	}
	// Secrets in files anyone on the machine can read are refused.
	f.write(t, "open-token", []byte(f.token+"\n"))
	require.NoError(t, os.Chmod(f.path("open-token"), 0o644))
	f.write(t, "open-pin", []byte("1234\n"))
	require.NoError(t, os.Chmod(f.path("open-pin"), 0o604))
	// A state directory others may write to: they could put a CA and RA of their own
	// (a key and its certificate) in place of the gateway's.
	require.NoError(t, os.MkdirAll(f.path("open-state"), 0o700))
	require.NoError(t, os.Chmod(f.path("open-state"), 0o777))
	// Files that decide whom the gateway trusts, writable by anyone: the MDM's keys,
	// the directory, the admin client CA, a rollover's directory. And the admin
	// listener's TLS key readable by anyone (whoever holds it poses as the listener
	// and collects operators' tokens).
	for _, name := range []string{"jwks.json", "directory.json", "admin-ca.pem"} {
		b, err := os.ReadFile(f.path(name))
		require.NoError(t, err)
		f.write(t, "open-"+name, b)
		require.NoError(t, os.Chmod(f.path("open-"+name), 0o666))
	}
	require.NoError(t, os.MkdirAll(f.path("open-next"), 0o700))
	require.NoError(t, os.Chmod(f.path("open-next"), 0o777))
	// A file of its own mode 0600, in a directory anyone may write (not sticky):
	// anyone may replace it.
	require.NoError(t, os.MkdirAll(f.path("open-dir"), 0o700))
	b, err := os.ReadFile(f.path("jwks.json"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(f.path("open-dir"), "jwks.json"), b, 0o600))
	require.NoError(t, os.Chmod(f.path("open-dir"), 0o777))
	keyPEM, err := os.ReadFile(f.path("admin-server.key"))
	require.NoError(t, err)
	f.write(t, "open-admin.key", keyPEM)
	require.NoError(t, os.Chmod(f.path("open-admin.key"), 0o644))
	cases = append(cases, []struct {
		name string
		env  []string
		want string
	}{
		{"JWKS file writable by others", []string{"SCEPKIT_JWKS=" + f.path("open-jwks.json")},
			"setting jwks (SCEPKIT_JWKS): " + f.path("open-jwks.json") + " may be written by other users"},
		{"JWKS file in a directory writable by others", []string{"SCEPKIT_JWKS=" + filepath.Join(f.path("open-dir"), "jwks.json")},
			"setting jwks (SCEPKIT_JWKS): " + filepath.Join(f.path("open-dir"), "jwks.json") + " is in " + f.path("open-dir") + ", which other users may write"},
		{"directory writable by others", []string{"SCEPKIT_DIRECTORY=" + f.path("open-directory.json")},
			"setting directory (SCEPKIT_DIRECTORY): " + f.path("open-directory.json") + " may be written by other users"},
		{"admin client CA writable by others", []string{"SCEPKIT_ADMIN_CLIENT_CA=" + f.path("open-admin-ca.pem")},
			"setting admin.client_ca (SCEPKIT_ADMIN_CLIENT_CA): " + f.path("open-admin-ca.pem") + " may be written by other users"},
		{"admin TLS key readable by others", []string{"SCEPKIT_ADMIN_TLS_KEY=" + f.path("open-admin.key")},
			"setting admin.tls_key (SCEPKIT_ADMIN_TLS_KEY): " + f.path("open-admin.key") + " may be read or written by other users"},
		{"rollover directory writable by others", []string{"SCEPKIT_ROLLOVER_DIR=" + f.path("open-next"), "SCEPKIT_ROLLOVER_AT=2030-01-01T00:00:00Z"},
			"setting rollover.dir (SCEPKIT_ROLLOVER_DIR): " + f.path("open-next") + " may be written by other users"},
		// The next CA announced through GetNextCACert, which devices are told to trust:
		// refused before a first start makes the CA (it was read after), and never
		// from a file anyone may write.
		{"next CA file missing", []string{"SCEPKIT_NEXT_CA_CERT=" + f.path("absent.pem")},
			"setting next_ca_cert (SCEPKIT_NEXT_CA_CERT): open "},
		{"next CA not a CA", []string{"SCEPKIT_NEXT_CA_CERT=" + f.path("admin-server.crt")},
			"setting next_ca_cert (SCEPKIT_NEXT_CA_CERT): not a valid CA certificate"},
		{"next CA writable by others", []string{"SCEPKIT_NEXT_CA_CERT=" + f.path("open-admin-ca.pem")},
			"setting next_ca_cert (SCEPKIT_NEXT_CA_CERT): " + f.path("open-admin-ca.pem") + " may be written by other users"},
	}...)
	cases = append(cases, []struct {
		name string
		env  []string
		want string
	}{
		{"state_dir writable by others", []string{"SCEPKIT_STATE_DIR=" + f.path("open-state")},
			"setting state_dir (SCEPKIT_STATE_DIR): " + f.path("open-state") + " may be written by other users"},
		{"token readable by others", []string{"SCEPKIT_ADMIN_TOKEN_FILE=" + f.path("open-token")},
			"setting admin.token_file (SCEPKIT_ADMIN_TOKEN_FILE): " + f.path("open-token") + " may be read or written by other users"},
		// The MDM's keys over plain HTTP: anyone on the path could put in his own and
		// mint challenges. Refused before anything is fetched (the host need not exist).
		{"JWKS over plain HTTP", []string{"SCEPKIT_JWKS=http://mdm.invalid/jwks"},
			"setting jwks (SCEPKIT_JWKS): JWKS http://mdm.invalid/jwks: plain http"},
		{"PIN readable by others", []string{"SCEPKIT_PKCS11_MODULE=" + f.path("absent.so"), "SCEPKIT_PKCS11_TOKEN_LABEL=t",
			"SCEPKIT_PKCS11_PIN_FILE=" + f.path("open-pin")},
			"setting pkcs11.pin_file (SCEPKIT_PKCS11_PIN_FILE): " + f.path("open-pin") + " may be read or written by other users"},
		{"Intune without client id", []string{"SCEPKIT_INTUNE_TENANT=contoso.onmicrosoft.com", "SCEPKIT_INTUNE_CLIENT_SECRET=s"},
			"setting intune.client_id (SCEPKIT_INTUNE_CLIENT_ID): required with intune.tenant"},
		{"Intune without credential", []string{"SCEPKIT_INTUNE_TENANT=contoso.onmicrosoft.com", "SCEPKIT_INTUNE_CLIENT_ID=app"},
			"setting intune.client_secret_file (SCEPKIT_INTUNE_CLIENT_SECRET_FILE): set one credential"},
		{"Intune with two credentials", []string{"SCEPKIT_INTUNE_TENANT=contoso.onmicrosoft.com", "SCEPKIT_INTUNE_CLIENT_ID=app",
			"SCEPKIT_INTUNE_CLIENT_SECRET=s", "SCEPKIT_INTUNE_CLIENT_SECRET_FILE=" + f.path("token")},
			"setting intune.client_secret_file (SCEPKIT_INTUNE_CLIENT_SECRET_FILE): set one credential"},
		{"Intune secret readable by others", []string{"SCEPKIT_INTUNE_TENANT=contoso.onmicrosoft.com", "SCEPKIT_INTUNE_CLIENT_ID=app",
			"SCEPKIT_INTUNE_CLIENT_SECRET_FILE=" + f.path("open-token")},
			"setting intune.client_secret_file (SCEPKIT_INTUNE_CLIENT_SECRET_FILE): " + f.path("open-token") + " may be read or written by other users"},
		{"Intune over plain HTTP", []string{"SCEPKIT_INTUNE_TENANT=contoso.onmicrosoft.com", "SCEPKIT_INTUNE_CLIENT_ID=app",
			"SCEPKIT_INTUNE_CLIENT_SECRET=s", "SCEPKIT_INTUNE_AUTHORITY=http://login.invalid/"},
			"setting intune.authority (SCEPKIT_INTUNE_AUTHORITY)"},
		// A host that merely starts with a loopback address is not loopback.
		{"Intune over plain HTTP to a look-alike host", []string{"SCEPKIT_INTUNE_TENANT=contoso.onmicrosoft.com", "SCEPKIT_INTUNE_CLIENT_ID=app",
			"SCEPKIT_INTUNE_CLIENT_SECRET=s", "SCEPKIT_INTUNE_AUTHORITY=http://127.0.0.1.evil.invalid/"},
			"setting intune.authority (SCEPKIT_INTUNE_AUTHORITY)"},
		{"Intune over plain HTTP with a loopback user info", []string{"SCEPKIT_INTUNE_TENANT=contoso.onmicrosoft.com", "SCEPKIT_INTUNE_CLIENT_ID=app",
			"SCEPKIT_INTUNE_CLIENT_SECRET=s", "SCEPKIT_INTUNE_GRAPH_URL=http://127.0.0.1@evil.invalid/"},
			"setting intune.graph_url (SCEPKIT_INTUNE_GRAPH_URL)"},
		{"Intune settings without tenant", []string{"SCEPKIT_INTUNE_CLIENT_ID=app"},
			"setting intune.tenant (SCEPKIT_INTUNE_TENANT): required with the other intune settings"},
		// A gateway meant to share the first one's CA through PostgreSQL made its own
		// before finding the DSN wrong.
		{"PostgreSQL not reachable", []string{"SCEPKIT_POSTGRES_DSN=postgres://scepkit@127.0.0.1:1/scepkit?connect_timeout=2"},
			"setting postgres.dsn (SCEPKIT_POSTGRES_DSN)"},
	}...)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "serve", "-config", cfg)
			cmd.Env = append(os.Environ(), tc.env...)
			out, err := cmd.CombinedOutput()
			require.Error(t, err, string(out))
			require.Contains(t, string(out), tc.want)
			// A refused first start makes no CA: the next start, its setting mended,
			// would otherwise use one nobody saw made.
			_, err = os.Stat(filepath.Join(f.path("state"), catemplate.CAKeyFile))
			require.ErrorIs(t, err, fs.ErrNotExist, "a refused start left a CA behind")
		})
	}
	// A misspelt variable is refused as a misspelt key is: this one would have
	// started a gateway that issues without approval.
	cmd := exec.Command(bin, "serve", "-config", cfg)
	cmd.Env = append(os.Environ(), "SCEPKIT_REQUIRE_APROVAL=true")
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "unknown setting SCEPKIT_REQUIRE_APROVAL in the environment: did you mean SCEPKIT_REQUIRE_APPROVAL?")
	// The admin client's variables may share the environment; another program's are
	// only reported.
	others, err := unknownEnv([]string{"SCEPKIT_ADMIN_URL=https://127.0.0.1:8443", "SCEPKIT_REQUIRE_APPROVAL=true",
		"HOME=/root", "SCEPKIT_CHALLENGE_SECRET=x"})
	require.NoError(t, err)
	require.Equal(t, []string{"SCEPKIT_CHALLENGE_SECRET"}, others)

	f.write(t, "unknown.toml", []byte("listne = \"127.0.0.1:0\"\n"))
	out, err = exec.Command(bin, "serve", "-config", f.path("unknown.toml")).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "unknown setting listne")

	out, err = exec.Command(bin, "-h").CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "admin.token_file  [SCEPKIT_ADMIN_TOKEN_FILE]")
}

// TestShippedConfigParses: the example configuration in dist/ is valid.
func TestShippedConfigParses(t *testing.T) {
	c, err := loadConfig("dist/scepkit.toml", func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:8443", c.Admin.Listen)
	env := map[string]string{"SCEPKIT_ADMIN_LISTEN": "127.0.0.1:9443", "SCEPKIT_PROFILES": "a, b"}
	c, err = loadConfig("dist/scepkit.toml", envOf(env))
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:9443", c.Admin.Listen)
	require.Equal(t, []string{"a", "b"}, c.Profiles)
}

// TestAdminClientCAMustNotTrustDevices: admin.client_ca may not be the CA that issues
// device certificates, nor a CA above it. Every certificate the gateway issues carries
// clientAuth, so such a setting would make every enrolled device an operator of the
// admin API: the start is refused, naming the setting.
func TestAdminClientCAMustNotTrustDevices(t *testing.T) {
	f := newFixture(t)
	root, err := catemplate.NewCA(catemplate.CAOptions{KeyType: profile.ECDSAP256, Subject: pkix.Name{CommonName: "corporate root"}})
	require.NoError(t, err)
	issuing, err := catemplate.NewCA(catemplate.CAOptions{KeyType: profile.ECDSAP256, Parent: root,
		Subject: pkix.Name{CommonName: "scepkit issuing CA"}})
	require.NoError(t, err)
	ra, err := catemplate.NewRA(issuing, catemplate.RAOptions{})
	require.NoError(t, err)
	require.NoError(t, catemplate.SaveCA(f.path("state"), issuing))
	require.NoError(t, catemplate.SaveRA(f.path("state"), ra))
	f.write(t, "issuing.pem", pemCert(issuing.Certificate))
	f.write(t, "root.pem", pemCert(root.Certificate))
	f.write(t, "operators-and-root.pem", append(pemCert(f.adminCA.Certificate), pemCert(root.Certificate)...))
	cfg := f.config(t, "", "")
	for _, clientCA := range []string{"issuing.pem", "root.pem", "operators-and-root.pem"} {
		t.Run(clientCA, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "serve", "-config", cfg)
			cmd.Env = append(os.Environ(), "SCEPKIT_ADMIN_CLIENT_CA="+f.path(clientCA))
			out, err := cmd.CombinedOutput()
			require.Error(t, err, string(out))
			require.NoError(t, ctx.Err(), "scepkit served instead of refusing the setting:\n%s", out)
			require.Contains(t, string(out), "setting admin.client_ca (SCEPKIT_ADMIN_CLIENT_CA)")
		})
	}
}

// The CA a rollover switches to issues device certificates too: an admin.client_ca
// that trusts it is refused as the current CA's is (before, only the current CA was
// checked, so after the switch every enrolled device could call the admin API).
func TestAdminClientCAMustNotTrustNextCA(t *testing.T) {
	f := newFixture(t)
	r := start(t, f.config(t, "", "")) // makes the current CA and RA
	r.stop(t)
	next := f.path("next")
	outb, err := exec.Command(bin, "rollover-prepare", "-config", f.config(t, "", ""), "-dir", next).CombinedOutput()
	require.NoError(t, err, string(outb))
	nextCA, err := catemplate.LoadCA(next)
	require.NoError(t, err)
	f.write(t, "next-ca.pem", pemCert(nextCA.Certificate))
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	cfg := f.config(t, "", fmt.Sprintf("\n[rollover]\nat = %q\ndir = %q\n", at.Format(time.RFC3339), next))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "serve", "-config", cfg)
	cmd.Env = append(os.Environ(), "SCEPKIT_ADMIN_CLIENT_CA="+f.path("next-ca.pem"))
	out, err := cmd.CombinedOutput()
	require.Error(t, err, string(out))
	require.NoError(t, ctx.Err(), "scepkit served instead of refusing the setting:\n%s", out)
	require.Contains(t, string(out), "setting admin.client_ca (SCEPKIT_ADMIN_CLIENT_CA)")
}

// adminCall sends one request to the admin API with the bearer token and returns the
// status and body.
func (r *running) adminCall(t *testing.T, f *fixture, method, path string, body []byte) (int, string) {
	t.Helper()
	b, err := os.ReadFile(f.path("admin-ca.pem"))
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(b))
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	req, err := http.NewRequest(method, r.adminURL+path, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+f.token)
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(out)
}

// TestAdminAnswers: the admin API answers 503 (not "no such certificate", not the
// store's error text) while its store is down, 404 only for what was never issued,
// and 413 for a body over its limit.
func TestAdminAnswers(t *testing.T) {
	pg := pgtest.Start(t)
	f := newFixture(t)
	r := start(t, f.config(t, "", fmt.Sprintf("[postgres]\ndsn = %q\n", pg.NewDatabase(t))))
	dev := scepclienttest.NewDevice(t)
	out, err := dev.Enroll(r.base+"/scep", "alice@example.com", f.challenge(t, "alice@example.com", "alice-laptop"))
	require.NoError(t, err, out)
	cert, err := dev.Certificate()
	require.NoError(t, err)
	serial := cert.SerialNumber.Text(16)

	code, body := r.adminCall(t, f, http.MethodGet, "/v1/certificates/abcdef", nil)
	require.Equal(t, http.StatusNotFound, code, body)
	big := []byte(`{"reason": "` + strings.Repeat("x", 100<<10) + `"}`)
	code, body = r.adminCall(t, f, http.MethodPost, "/v1/pending/tx/reject", big)
	require.Equal(t, http.StatusRequestEntityTooLarge, code, body)
	code, body = r.adminCall(t, f, http.MethodPost, "/v1/certificates/"+serial+"/revoke", big)
	require.Equal(t, http.StatusRequestEntityTooLarge, code, body)
	for _, reason := range []string{"7", "8"} { // unassigned; removeFromCRL (delta CRLs only)
		code, body = r.adminCall(t, f, http.MethodPost, "/v1/certificates/"+serial+"/revoke", []byte(`{"reason": `+reason+`}`))
		require.Equal(t, http.StatusBadRequest, code, body)
	}

	pg.Stop()
	for _, c := range []struct{ method, path, body string }{
		{http.MethodGet, "/v1/certificates/" + serial, ""},
		{http.MethodPost, "/v1/certificates/" + serial + "/revoke", `{"reason": 1}`},
	} {
		code, body = r.adminCall(t, f, c.method, c.path, []byte(c.body))
		require.Equal(t, http.StatusServiceUnavailable, code, "%s %s: %s", c.method, c.path, body)
		require.NotContains(t, body, "127.0.0.1", "no store error text in the answer")
	}
	pg.Restart()
	require.Eventually(t, func() bool {
		code, _ := r.adminCall(t, f, http.MethodGet, "/v1/certificates/"+serial, nil)
		return code == http.StatusOK
	}, 20*time.Second, 200*time.Millisecond)
	require.False(t, crlLists(readCRL(t, r.base), cert.SerialNumber), "nothing was revoked while the store was down")
	r.stop(t)
}

// TestAdminCLISendsTokenOnlyOverHTTPS: the admin CLI refuses a plain-http URL, and a
// redirect to one, before the bearer token leaves the machine.
func TestAdminCLISendsTokenOnlyOverHTTPS(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	var seen []string
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Write([]byte("[]"))
	}))
	defer plain.Close()
	redirect := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()
	f.write(t, "redirect-ca.pem", pemCert(redirect.Certificate()))
	for _, args := range [][]string{
		{"-url", plain.URL},
		{"-url", redirect.URL, "-ca", f.path("redirect-ca.pem")},
	} {
		args = append(append([]string{"admin"}, args...), "-token-file", f.path("token"), "pending")
		out, err := exec.Command(bin, args...).CombinedOutput()
		require.Error(t, err, "%v: %s", args, out)
		require.Contains(t, string(out), "https", "%v", args)
	}
	mu.Lock()
	require.Empty(t, seen, "the admin CLI sent a request over plain http")
	mu.Unlock()

	// "approve -h" prints the usage: it was sent to the API as transaction "-h".
	got := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.Path)
		mu.Unlock()
	}))
	defer got.Close()
	f.write(t, "got-ca.pem", pemCert(got.Certificate()))
	for _, cmd := range [][]string{{"approve", "-h"}, {"reject", "-h"}, {"revoke", "-h"}, {"pending", "-h"}} {
		args := append([]string{"admin", "-url", got.URL, "-ca", f.path("got-ca.pem"), "-token-file", f.path("token")}, cmd...)
		out, err := exec.Command(bin, args...).CombinedOutput()
		require.NoError(t, err, "%v: %s", cmd, out)
		require.Contains(t, string(out), "usage: scepkit admin", "%v", cmd)
	}
	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, seen, "help was sent to the admin API")
}

// TestPublicURLNeededOnWildcardListen: without public_url the CRL and CA URLs written
// into every issued certificate are made from listen; on every interface (0.0.0.0,
// [::], or no host) that is an address no relying party can reach, so public_url is
// required there. Checked in loadConfig, before anything listens.
func TestPublicURLNeededOnWildcardListen(t *testing.T) {
	f := newFixture(t)
	cfg := f.config(t, "", "")
	for _, tc := range []struct {
		listen, publicURL string
		ok                bool
	}{
		{"0.0.0.0:8080", "", false},
		{"[::]:8080", "", false},
		{":8080", "", false},
		{"0.0.0.0:8080", "http://scep.example.com", true},
		{"127.0.0.1:8080", "", true},
		{"192.0.2.10:8080", "", true},
	} {
		t.Run(tc.listen+" "+tc.publicURL, func(t *testing.T) {
			env := map[string]string{"SCEPKIT_LISTEN": tc.listen, "SCEPKIT_PUBLIC_URL": tc.publicURL}
			_, err := loadConfig(cfg, envOf(env))
			if tc.ok {
				require.NoError(t, err)
				return
			}
			var se *badSetting
			require.ErrorAs(t, err, &se)
			require.Equal(t, "public_url", se.Setting)
		})
	}
}

// TestReadyzFollowsDecryptionKey: /readyz checks the RA's decryption key too, not
// only the signing keys: once the token has lost it, every request would be answered
// badMessageCheck, so the gateway reports itself unready.
func TestReadyzFollowsDecryptionKey(t *testing.T) {
	st := tokenWithKeys(t)
	f := newFixture(t)
	f.write(t, "pin", []byte(st.PIN+"\n"))
	r := start(t, f.config(t, "", fmt.Sprintf("[pkcs11]\nmodule = %q\ntoken_label = %q\npin_file = %q\n", st.Module, st.Label, f.path("pin"))),
		"SOFTHSM2_CONF="+st.Conf)
	code, body, _ := get(t, r.base+"/readyz")
	require.Equal(t, http.StatusOK, code, body)

	deleteTokenKey(t, st, "scepkit-ra-encrypt")

	out, err := scepclienttest.NewDevice(t).Enroll(r.base+"/scep", "alice@example.com", f.challenge(t, "alice@example.com", "alice-laptop"))
	require.Error(t, err, "enrolled without the RA's decryption key: %s", out)
	require.Eventually(t, func() bool {
		code, body, _ := get(t, r.base+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, `"name":"keys","ok":false`)
	}, 45*time.Second, 500*time.Millisecond, "/readyz still ready without the RA's decryption key")
	r.stop(t)
}

// TestAdminPathTricks: no spelling of a path or method reaches an admin call without
// credentials (each answered 401 and audited), and a method-override header changes
// nothing for an authenticated caller.
func TestAdminPathTricks(t *testing.T) {
	f := newFixture(t)
	r := start(t, f.config(t, "", ""))
	b, err := os.ReadFile(f.path("admin-ca.pem"))
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(b))
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	send := func(method, path, token string, hdr map[string]string) int {
		req, err := http.NewRequest(method, r.adminURL+"/", nil)
		require.NoError(t, err)
		req.URL.Opaque = path // sent as written, not cleaned by the client
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/v1/pending"}, {http.MethodGet, "/v1/pending/"}, {http.MethodGet, "//v1/pending"},
		{http.MethodGet, "/v1/./pending"}, {http.MethodGet, "/x/../v1/pending"}, {http.MethodGet, "/v1/%70ending"},
		{http.MethodGet, "/V1/PENDING"}, {http.MethodHead, "/v1/pending"}, {http.MethodOptions, "/v1/pending"},
		{http.MethodPost, "/v1/pending/tx/approve"}, {http.MethodPost, "/v1/pending/tx%2Fapprove"},
		{http.MethodGet, "/v1/certificates"}, {http.MethodPost, "/v1/certificates/01/revoke"},
	} {
		require.Equal(t, http.StatusUnauthorized, send(c.method, c.path, "", nil), "%s %s", c.method, c.path)
		require.Equal(t, http.StatusUnauthorized, send(c.method, c.path, "x"+f.token, nil), "%s %s", c.method, c.path)
	}
	require.Equal(t, http.StatusMethodNotAllowed, send(http.MethodPost, "/v1/pending", f.token,
		map[string]string{"X-HTTP-Method-Override": "GET", "X-Method-Override": "GET"}))

	// A browser holding an operator's client certificate, on another site's page: a
	// form POST needs no script. Refused by its Origin or Sec-Fetch-Site (before,
	// answered; revocations cannot be undone). Tools that send neither are served.
	for _, hdr := range []map[string]string{
		{"Origin": "https://evil.example"},
		{"Origin": "null"},
		{"Sec-Fetch-Site": "cross-site"},
		{"Sec-Fetch-Site": "same-site"},
	} {
		require.Equal(t, http.StatusForbidden, send(http.MethodPost, "/v1/pending/tx/approve", f.token, hdr), "%v", hdr)
	}
	require.Equal(t, http.StatusNotFound, send(http.MethodPost, "/v1/pending/tx/approve", f.token, nil))
	require.Equal(t, http.StatusOK, send(http.MethodGet, "/v1/pending", f.token, map[string]string{"Sec-Fetch-Site": "cross-site"}),
		"reads are not refused")

	// An unauthenticated call's query is not logged (a token sent in it), its path
	// is cut: one request cannot write a log line of its own size.
	require.Equal(t, http.StatusUnauthorized, send(http.MethodGet, "/v1/pending?token=QUERYSECRET", "", nil))
	require.Equal(t, http.StatusUnauthorized, send(http.MethodGet, "/v1/"+strings.Repeat("p", 60000), "", nil))
	require.Eventually(t, func() bool {
		return strings.Count(r.Logs(), `"audit":"admin","who":"","method"`) >= 28
	}, 5*time.Second, 20*time.Millisecond, "an audit line for every refused call")
	require.NotContains(t, r.Logs(), "QUERYSECRET")
	for _, l := range strings.Split(r.Logs(), "\n") {
		require.Less(t, len(l), 4096)
	}
	r.stop(t)
}

// TestCAEnvelopes: with ca_envelopes, micromdm's scepclient with -ca-fingerprint (the
// CA pinned, the request encrypted to it, the reply verified with it alone) enrolls;
// without it, scepkit serve had no way to serve such clients and they got a reply
// signed by the RA, which they cannot verify.
func TestCAEnvelopes(t *testing.T) {
	f := newFixture(t)
	for _, on := range []bool{false, true} {
		r := start(t, f.config(t, fmt.Sprintf("ca_envelopes = %t\n", on), ""))
		_, caDER, _ := get(t, r.base+"/ca.cer")
		fp := sha256.Sum256([]byte(caDER))
		dev := scepclienttest.NewDevice(t)
		out, err := dev.Enroll(r.base+"/scep", "alice@example.com", f.challenge(t, "alice@example.com", "alice-laptop"),
			"-ca-fingerprint", hex.EncodeToString(fp[:]))
		if on {
			require.NoError(t, err, out)
			cert, err := dev.Certificate()
			require.NoError(t, err)
			require.Equal(t, "alice@example.com", cert.Subject.CommonName)
		} else {
			require.Error(t, err, out)
			_, err := dev.Certificate()
			require.Error(t, err, "no certificate without ca_envelopes")
		}
		r.stop(t)
	}
}

// TestSIGHUPIgnored: SIGHUP, which operators and renewal hooks send to mean "reload",
// is logged and ignored. Before, its default action ended the gateway at once,
// dropping requests in flight, with nothing in the log.
func TestSIGHUPIgnored(t *testing.T) {
	f := newFixture(t)
	r := start(t, f.config(t, "", ""))
	require.NoError(t, r.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return strings.Contains(r.Logs(), "SIGHUP ignored") }, 5*time.Second, 20*time.Millisecond)
	code, _, _ := get(t, r.base+"/healthz")
	require.Equal(t, http.StatusOK, code, "still serving")
	r.stop(t)
	require.Contains(t, r.Logs(), "stopped")
}

// TestJWKSFollowsRotation: the MDM rotates its challenge key (a new key in its JWKS,
// the old one gone) and the running gateway follows within jwks_refresh: the new
// key's challenges enroll, the old key's are refused, and a JWKS that cannot be read
// keeps the keys in use. It read the JWKS at start only: every enrollment after a
// rotation failed ("challenge key unknown") until a restart, with /readyz still 200.
func TestJWKSFollowsRotation(t *testing.T) {
	f := newFixture(t)
	r := start(t, f.config(t, "jwks_refresh = \"1s\"\n", ""))
	url := r.base + "/scep"
	old := f.challenge(t, "alice@example.com", "alice-laptop")

	f.newMDMKey(t) // the MDM rotates: a new key in its JWKS, the old one gone
	require.Eventually(t, func() bool { return strings.Contains(r.Logs(), "the MDM's keys changed") },
		10*time.Second, 50*time.Millisecond, "the rotation was not noticed")
	out, err := scepclienttest.NewDevice(t).Enroll(url, "alice@example.com", f.challenge(t, "alice@example.com", "alice-laptop"))
	require.NoError(t, err, "a challenge of the MDM's new key: %s", out)
	out, err = scepclienttest.NewDevice(t).Enroll(url, "bob@example.com", old)
	require.Error(t, err, "a challenge of the key the MDM removed: %s", out)

	f.write(t, "jwks.json", []byte("{not json"))
	require.Eventually(t, func() bool { return strings.Contains(r.Logs(), "the keys in use stay") },
		10*time.Second, 50*time.Millisecond)
	out, err = scepclienttest.NewDevice(t).Enroll(url, "bob@example.com", f.challenge(t, "bob@example.com", "bob-phone"))
	require.NoError(t, err, "the keys in use stay when the JWKS cannot be read: %s", out)
}

// TestReadyzFollowsStoreWrites: /readyz turns unready when the store still answers
// reads but refuses writes (here PostgreSQL made read-only; a full disk or a file
// system remounted read-only does the same to boltstore), and ready again when it
// writes. It read only (Pending), and answered 200 while every enrollment failed.
func TestReadyzFollowsStoreWrites(t *testing.T) {
	pg := pgtest.Start(t)
	f := newFixture(t)
	dsn := pg.NewDatabase(t)
	r := start(t, f.config(t, "", fmt.Sprintf("[postgres]\ndsn = %q\n", dsn)))
	code, body, _ := get(t, r.base+"/readyz")
	require.Equal(t, http.StatusOK, code, body)

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	readOnly := func(on bool) {
		_, err := conn.Exec(ctx, fmt.Sprintf("ALTER SYSTEM SET default_transaction_read_only = %v", on))
		require.NoError(t, err)
		_, err = conn.Exec(ctx, "SELECT pg_reload_conf()")
		require.NoError(t, err)
	}
	readOnly(true)
	defer readOnly(false)
	// A write that worked stands for storeWriteInterval.
	require.Eventually(t, func() bool {
		code, body, _ = get(t, r.base+"/readyz")
		return code == http.StatusServiceUnavailable
	}, storeWriteInterval+5*time.Second, 200*time.Millisecond)
	require.Contains(t, body, `"name":"store","ok":false`)
	out, err := scepclienttest.NewDevice(t).Enroll(r.base+"/scep", "alice@example.com", f.challenge(t, "alice@example.com", "alice-laptop"))
	require.Error(t, err, "a read-only store issues nothing: %s", out)

	readOnly(false)
	readyzTurns(t, r.base, http.StatusOK)
	out, err = scepclienttest.NewDevice(t).Enroll(r.base+"/scep", "alice@example.com", f.challenge(t, "alice@example.com", "alice-laptop"))
	require.NoError(t, err, out)
	r.stop(t)
}

// TestDamagedStateRefused: a state directory whose store lost acknowledged writes
// (state.db deleted beside its journal; the journal cut short) refuses the start with
// exit status 2, naming state_dir, so systemd does not restart it in a loop; before,
// the first started on an empty store that had forgotten the challenges used and the
// revocations made.
func TestDamagedStateRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   string
	}{
		{"state.db deleted", func(t *testing.T, dir string) {
			require.NoError(t, os.Remove(filepath.Join(dir, boltstore.FileName)))
		}, "the file is missing but its journal holds writes"},
		{"journal cut short", func(t *testing.T, dir string) {
			require.NoError(t, os.Truncate(filepath.Join(dir, boltstore.FileName+"-journal"), 4096))
		}, "the journal is damaged"},
		// The CA's or RA's files gone: exit 2, not a restart every few seconds.
		{"ca.crt deleted", func(t *testing.T, dir string) {
			require.NoError(t, os.Remove(filepath.Join(dir, catemplate.CACertFile)))
		}, "from an earlier run but not its CA"},
		{"ca.key deleted", func(t *testing.T, dir string) {
			require.NoError(t, os.Remove(filepath.Join(dir, catemplate.CAKeyFile)))
		}, "from an earlier run but not its CA"},
		{"ra-sign.key deleted", func(t *testing.T, dir string) {
			require.NoError(t, os.Remove(filepath.Join(dir, catemplate.RASigningKeyFile)))
		}, catemplate.RASigningKeyFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			cfg := f.config(t, "", "")
			r := start(t, cfg)
			out, err := scepclienttest.NewDevice(t).Enroll(r.base+"/scep", "alice@example.com", f.challenge(t, "alice@example.com", "alice-laptop"))
			require.NoError(t, err, out)
			require.NoError(t, r.cmd.Process.Kill()) // a crash: no last checkpoint
			<-r.done
			tc.damage(t, f.path("state"))
			out, code := refusedStart(t, cfg)
			require.Equal(t, exitConfig, code, out)
			require.Contains(t, out, "setting state_dir")
			require.Contains(t, out, tc.want)
		})
	}
}

// refusedPorts numbers refusedStart's runs, for their ports.
var refusedPorts atomic.Int32

// refusedStart runs "scepkit serve -config cfg" with env added, on loopback ports of
// 26900-26999, expects it to exit with an error within a minute, and returns its
// output and exit status.
func refusedStart(t *testing.T, cfg string, env ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "serve", "-config", cfg)
	port := 26900 + 2*int(refusedPorts.Add(1)%50)
	cmd.Env = append(append(os.Environ(), fmt.Sprintf("SCEPKIT_LISTEN=127.0.0.1:%d", port),
		fmt.Sprintf("SCEPKIT_ADMIN_LISTEN=127.0.0.1:%d", port+1)), env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "not refused:\n%s", out)
	return string(out), ee.ExitCode()
}
