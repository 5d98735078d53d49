// Package radiustest starts a private FreeRADIUS server for tests and runs
// wpa_supplicant's eapol_test against it: the server listens on 127.0.0.1 on a free
// UDP port, reads a configuration written to its own temporary directory (EAP-TLS
// only, trusting the CA certificates and CRLs the test gives it), and is stopped by
// its own process id when the test ends. It never touches a FreeRADIUS the machine
// runs as a service.
//
// When freeradius or eapol_test is not installed the test is skipped, or fails when
// the environment variable CI is "true" (CI installs them: see .ci/run).
package radiustest

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scepkit/scepkit/internal/testserver"
)

// Binaries looked up in PATH (Debian packages freeradius and eapoltest).
const (
	ServerBinary = "freeradius"
	ClientBinary = "eapol_test"
)

// StartTimeout bounds how long Start waits for the server to be ready.
const StartTimeout = 20 * time.Second

// Options configures [Start].
type Options struct {
	// ClientCAs are the CA certificates a client certificate must chain to; required.
	ClientCAs []*x509.Certificate
	// CRLs are DER certificate revocation lists of the ClientCAs. With CheckCRL the
	// server refuses a certificate whose issuer has no CRL here.
	CRLs [][]byte
	// CheckCRL makes the server check the client certificate against CRLs (check_crl).
	CheckCRL bool
	// ServerCertificate and its issuers, nearest first, are what the server presents;
	// ServerKey is its private key (anything x509.MarshalPKCS8PrivateKey accepts).
	ServerCertificate []*x509.Certificate
	ServerKey         crypto.PrivateKey
}

// Server is a FreeRADIUS process the test owns.
type Server struct {
	// Addr is 127.0.0.1:port (UDP); Port its port; Secret the shared secret of the
	// loopback client.
	Addr   string
	Port   int
	Secret string
	// Dir holds the configuration, certificates and the server's log (radiusd.log).
	Dir string

	t    testing.TB
	proc *testserver.Process // nil when stopped
	log  testserver.Output
}

// lookPath returns the path of bin, skipping the test when it is missing (failing it
// under CI=true).
func lookPath(t testing.TB, bin, pkg string) string {
	t.Helper()
	return testserver.LookPath(t, bin, "radiustest: apt-get install "+pkg)
}

// Require skips the test when freeradius or eapol_test is missing (fails it under
// CI=true), before a test spends time on setting up what it would authenticate.
func Require(t testing.TB) {
	t.Helper()
	lookPath(t, ServerBinary, "freeradius")
	lookPath(t, ClientBinary, "eapoltest")
}

// Start writes the configuration and starts freeradius in the foreground (-X) on a
// free loopback UDP port, and registers its stop with t.Cleanup.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	bin := lookPath(t, ServerBinary, "freeradius")
	lookPath(t, ClientBinary, "eapoltest")
	if len(o.ClientCAs) == 0 || len(o.ServerCertificate) == 0 || o.ServerKey == nil {
		t.Fatal("radiustest: ClientCAs, ServerCertificate and ServerKey are required")
	}
	s := &Server{t: t, Dir: t.TempDir(), Secret: "radiustest-secret"}
	if err := s.writeFiles(o); err != nil {
		t.Fatalf("radiustest: %v", err)
	}
	t.Cleanup(s.stop)
	testserver.OnFreePort(t, "radiustest", testserver.FreeUDPPort, func(port int) error {
		s.Port, s.Addr = port, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		return s.start(bin, o)
	})
	return s
}

func pemCerts(certs []*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

func (s *Server) writeFiles(o Options) error {
	key, err := x509.MarshalPKCS8PrivateKey(o.ServerKey)
	if err != nil {
		return err
	}
	// ca.pem holds the trusted CAs and their CRLs: OpenSSL's verify locations load
	// both from one PEM file.
	ca := pemCerts(o.ClientCAs)
	for _, crl := range o.CRLs {
		ca = append(ca, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl})...)
	}
	files := map[string][]byte{
		"server.pem": pemCerts(o.ServerCertificate),
		"server.key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}),
		"ca.pem":     ca,
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(s.Dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// config is radiusd.conf: one loopback client, EAP-TLS only, every path in dir.
func (s *Server) config(o Options) string {
	crl := "no"
	if o.CheckCRL {
		crl = "yes"
	}
	return fmt.Sprintf(`prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = %[1]s
raddbdir = %[1]s
radacctdir = %[1]s
name = radiusd
confdir = %[1]s
run_dir = %[1]s
db_dir = %[1]s
libdir = /usr/lib/freeradius
pidfile = %[1]s/radiusd.pid
max_request_time = 30
cleanup_delay = 1
max_requests = 256
hostname_lookups = no
log {
	destination = stdout
	auth = yes
}
security {
	allow_core_dumps = no
	max_attributes = 200
	reject_delay = 0
	status_server = no
}
client loopback {
	ipaddr = 127.0.0.1
	secret = %[2]s
}
modules {
	eap {
		default_eap_type = tls
		timer_expire = 60
		max_sessions = 64
		tls-config tls-common {
			private_key_file = %[1]s/server.key
			certificate_file = %[1]s/server.pem
			ca_file = %[1]s/ca.pem
			check_crl = %[3]s
			cipher_list = "DEFAULT"
			tls_min_version = "1.2"
			tls_max_version = "1.2"
		}
		tls {
			tls = tls-common
		}
	}
}
server default {
	listen {
		type = auth
		ipaddr = 127.0.0.1
		port = %[4]d
	}
	authorize {
		eap {
			ok = return
		}
	}
	authenticate {
		eap
	}
}
`, s.Dir, s.Secret, crl, s.Port)
}

// Log returns what the server has printed so far (its -X debug output).
func (s *Server) Log() string { return s.log.String() }

func (s *Server) start(bin string, o Options) error {
	if err := os.WriteFile(filepath.Join(s.Dir, "radiusd.conf"), []byte(s.config(o)), 0o600); err != nil {
		return err
	}
	s.log.Reset()
	cmd := exec.Command(bin, "-X", "-d", s.Dir, "-n", "radiusd")
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = &s.log, &s.log
	ready := func() error {
		if !strings.Contains(s.Log(), "Ready to process requests") {
			return errors.New("not ready")
		}
		return nil
	}
	proc, err := testserver.Start(cmd, testserver.Ready{Check: ready, Poll: 20 * time.Millisecond,
		Timeout: StartTimeout, Log: s.Log})
	if err != nil {
		return err
	}
	s.proc = proc
	return nil
}

// stop ends the server (only ever our own child, by its pid) and waits for it.
func (s *Server) stop() {
	if s.proc == nil {
		return
	}
	s.proc.Stop(testserver.Terminate, 5*time.Second)
	s.proc = nil
}

// Result is the outcome of one eapol_test run.
type Result struct {
	// Code is the RADIUS code of the server's last answer: 2 Access-Accept,
	// 3 Access-Reject (RFC 2865 section 3), 0 if none arrived.
	Code int
	// Success is eapol_test's own verdict (it printed SUCCESS and exited 0).
	Success bool
	// Output is eapol_test's output.
	Output string
}

// Accepted reports an Access-Accept that eapol_test also counted as a success.
func (r Result) Accepted() bool { return r.Code == 2 && r.Success }

// Rejected reports an Access-Reject (or no answer at all) and no success.
func (r Result) Rejected() bool { return r.Code != 2 && !r.Success }

var radiusCode = regexp.MustCompile(`RADIUS message: code=(\d+)`)

// Authenticate runs eapol_test against the server with network, the body of a
// wpa_supplicant network block (key_mgmt=WPA-EAP, eap=..., identity=..., ca_cert=...,
// client_cert=..., private_key=..., domain_match=...), written to a file in dir.
func (s *Server) Authenticate(t testing.TB, dir, network string) Result {
	t.Helper()
	bin := lookPath(t, ClientBinary, "eapoltest")
	conf := filepath.Join(dir, "eapol_test.conf")
	if err := os.WriteFile(conf, []byte("network={\n"+network+"}\n"), 0o600); err != nil {
		t.Fatalf("radiustest: %v", err)
	}
	cmd := exec.Command(bin, "-c", conf, "-a", "127.0.0.1", "-p", strconv.Itoa(s.Port), "-s", s.Secret, "-t", "15")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("radiustest: %s: %v", ClientBinary, err)
	}
	r := Result{Output: string(out)}
	if m := radiusCode.FindAllStringSubmatch(r.Output, -1); len(m) > 0 {
		r.Code, _ = strconv.Atoi(m[len(m)-1][1])
	}
	r.Success = err == nil && strings.Contains(r.Output, "\nSUCCESS")
	return r
}
