// Package stepcatest runs a real step-ca (github.com/smallstep/certificates) for
// tests: its own root and RSA intermediate, a badger database in a temporary
// directory, remote provisioner management enabled (step-ca keeps webhook secrets
// only there), a SCEP provisioner, on free loopback ports, stopped by its own
// process id when the test ends. Webhooks are added through step-ca's admin API, as
// `step ca provisioner webhook add` does, and step-ca generates their secrets.
//
// The step-ca program is looked up in PATH, then in $GOBIN and $HOME/go/bin (where
// `go install github.com/smallstep/certificates/cmd/step-ca@v0.30.2` puts it). When
// it is missing the test is skipped, or fails when the environment variable CI is
// "true" (CI builds it: see .ci/run).
package stepcatest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/scepkit/scepkit/internal/testserver"
)

// Binary returns the path of step-ca, skipping or failing t when it is missing.
func Binary(t testing.TB) string {
	t.Helper()
	var dirs []string
	if d := os.Getenv("GOBIN"); d != "" {
		dirs = append(dirs, d)
	}
	if h, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(h, "go", "bin"))
	}
	return testserver.LookPath(t, "step-ca",
		"stepcatest: go install github.com/smallstep/certificates/cmd/step-ca@v0.30.2", dirs...)
}

// Options configures [Start].
type Options struct {
	// Provisioner names the SCEP provisioner; zero means "scepkit".
	Provisioner string
	// Template is the provisioner's X.509 template; zero means step-ca's default.
	Template string
	// MaxDuration is the longest certificate the provisioner issues; zero means a
	// year and a day.
	MaxDuration time.Duration
	// Challenge, when set, is the provisioner's static challenge password.
	Challenge string
}

// CA is a running step-ca.
type CA struct {
	// Root and Intermediate are the CA's certificates; the intermediate (RSA, as
	// step-ca's SCEP decryption needs) issues.
	Root, Intermediate *x509.Certificate
	// URL is the HTTPS address of the CA; SCEPURL the provisioner's SCEP endpoint
	// (plain HTTP, step-ca's insecureAddress, as SCEP clients use it).
	URL, SCEPURL string
	// Provisioner is the SCEP provisioner's name.
	Provisioner string
	// Dir holds the configuration, keys and database.
	Dir string

	t        testing.TB
	rootKey  crypto.Signer
	intKey   crypto.Signer
	adminKey *ecdsa.PrivateKey
	proc     *testserver.Process
	log      testserver.Output
}

// Log returns what step-ca wrote so far.
func (c *CA) Log() string { return c.log.String() }

// Start makes the PKI, writes the configuration and starts step-ca; it stops it when
// the test ends.
func Start(t testing.TB, o Options) *CA {
	t.Helper()
	bin := Binary(t)
	if o.Provisioner == "" {
		o.Provisioner = "scepkit"
	}
	if o.MaxDuration == 0 {
		o.MaxDuration = 366 * 24 * time.Hour
	}
	c := &CA{t: t, Dir: t.TempDir(), Provisioner: o.Provisioner}
	c.makePKI()
	tlsPort, scepPort := freePorts(t)
	c.URL = "https://127.0.0.1:" + strconv.Itoa(tlsPort)
	c.SCEPURL = "http://127.0.0.1:" + strconv.Itoa(scepPort) + "/scep/" + o.Provisioner
	c.writeConfig(o, tlsPort, scepPort)

	cmd := exec.Command(bin, filepath.Join(c.Dir, "ca.json"))
	cmd.Dir = c.Dir
	cmd.Stdout, cmd.Stderr = &c.log, &c.log
	client := c.Client()
	healthy := func() error {
		res, err := client.Get(c.URL + "/health")
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("/health: HTTP %d", res.StatusCode)
		}
		return nil
	}
	proc, err := testserver.Start(cmd, testserver.Ready{Check: healthy, Poll: 100 * time.Millisecond,
		Timeout: time.Minute, Log: c.Log})
	if err != nil {
		t.Fatalf("stepcatest: starting step-ca: %v", err)
	}
	c.proc = proc
	t.Cleanup(c.stop)
	return c
}

// stop ends step-ca (SIGTERM, then SIGKILL after 5 s) and waits for it.
func (c *CA) stop() { c.proc.Stop(testserver.Terminate, 5*time.Second) }

// freePorts returns two loopback ports that were free a moment ago, and distinct:
// both are held open while the second is chosen. Two probes one after the other
// could return the same port, and step-ca then served its TLS and its plain-HTTP
// address on one port (its SCEP clients got "HTTP request to an HTTPS server").
func freePorts(t testing.TB) (int, int) {
	var ports [2]int
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("stepcatest: %v", err)
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports[0], ports[1]
}

// Client returns an HTTP client that trusts the CA's root.
func (c *CA) Client() *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(c.Root)
	return &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

func (c *CA) must(err error) {
	c.t.Helper()
	if err != nil {
		c.t.Fatalf("stepcatest: %v", err)
	}
}

func (c *CA) makePKI() {
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c.must(err)
	intKey, err := rsa.GenerateKey(rand.Reader, 2048)
	c.must(err)
	now := time.Now()
	root := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "stepcatest root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, root, root, rootKey.Public(), rootKey)
	c.must(err)
	c.Root, err = x509.ParseCertificate(der)
	c.must(err)
	inter := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "stepcatest intermediate"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(5 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true, IsCA: true, MaxPathLenZero: true}
	der, err = x509.CreateCertificate(rand.Reader, inter, c.Root, intKey.Public(), rootKey)
	c.must(err)
	c.Intermediate, err = x509.ParseCertificate(der)
	c.must(err)
	c.rootKey, c.intKey = rootKey, intKey
	c.writePEM("root_ca.crt", "CERTIFICATE", c.Root.Raw)
	c.writePEM("intermediate_ca.crt", "CERTIFICATE", c.Intermediate.Raw)
	kder, err := x509.MarshalPKCS8PrivateKey(intKey)
	c.must(err)
	c.writePEM("intermediate_ca_key", "PRIVATE KEY", kder)
	c.adminKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c.must(err)
}

func (c *CA) writePEM(name, typ string, der []byte) {
	c.must(os.WriteFile(filepath.Join(c.Dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
}

// adminKID names the admin JWK provisioner's key.
const adminKID = "stepcatest-admin"

func (c *CA) writeConfig(o Options, tlsPort, scepPort int) {
	b64 := func(n *big.Int) string {
		buf := make([]byte, 32)
		return base64.RawURLEncoding.EncodeToString(n.FillBytes(buf))
	}
	jwk := map[string]string{"use": "sig", "kty": "EC", "kid": adminKID, "crv": "P-256", "alg": "ES256",
		"x": b64(c.adminKey.X), "y": b64(c.adminKey.Y)}
	scep := map[string]any{"type": "SCEP", "name": o.Provisioner, "minimumPublicKeyLength": 2048,
		"encryptionAlgorithmIdentifier": 2,
		"claims": map[string]any{"maxTLSCertDuration": o.MaxDuration.String(),
			"defaultTLSCertDuration": o.MaxDuration.String()}}
	if o.Challenge != "" {
		scep["challenge"] = o.Challenge
	}
	if o.Template != "" {
		c.must(os.WriteFile(filepath.Join(c.Dir, "scep.tpl"), []byte(o.Template), 0o600))
		scep["options"] = map[string]any{"x509": map[string]any{"templateFile": filepath.Join(c.Dir, "scep.tpl")}}
	}
	cfg := map[string]any{
		"root": filepath.Join(c.Dir, "root_ca.crt"), "crt": filepath.Join(c.Dir, "intermediate_ca.crt"),
		"key":             filepath.Join(c.Dir, "intermediate_ca_key"),
		"address":         "127.0.0.1:" + strconv.Itoa(tlsPort),
		"insecureAddress": "127.0.0.1:" + strconv.Itoa(scepPort),
		"dnsNames":        []string{"127.0.0.1", "localhost"},
		"logger":          map[string]string{"format": "text"},
		"db":              map[string]string{"type": "badgerv2", "dataSource": filepath.Join(c.Dir, "db")},
		"authority": map[string]any{"enableAdmin": true, "provisioners": []any{
			map[string]any{"type": "JWK", "name": "admin", "key": jwk},
			scep,
		}},
		"tls": map[string]any{"minVersion": 1.2, "maxVersion": 1.3, "renegotiation": false},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	c.must(err)
	c.must(os.WriteFile(filepath.Join(c.Dir, "ca.json"), b, 0o600))
}

// Webhook is a webhook to add to the SCEP provisioner.
type Webhook struct {
	// Name is the webhook's name (templates read its data as .Webhooks.<Name>).
	Name string
	// URL must be https.
	URL string
	// Kind is "SCEPCHALLENGE" or "NOTIFYING".
	Kind string
	// BearerToken, or Username and Password, are sent with each call when set.
	BearerToken        string
	Username, Password string
}

// AddWebhook adds a webhook to the SCEP provisioner through step-ca's admin API and
// returns the secret step-ca generated for it (decoded).
func (c *CA) AddWebhook(w Webhook) []byte {
	c.t.Helper()
	body := map[string]any{"name": w.Name, "url": w.URL, "kind": w.Kind, "certType": "X509"}
	switch {
	case w.BearerToken != "":
		body["bearerToken"] = map[string]string{"bearerToken": w.BearerToken}
	case w.Username != "" || w.Password != "":
		body["basicAuth"] = map[string]string{"username": w.Username, "password": w.Password}
	}
	b, err := json.Marshal(body)
	c.must(err)
	path := "/admin/provisioners/" + c.Provisioner + "/webhooks"
	req, err := http.NewRequest(http.MethodPost, c.URL+path, bytes.NewReader(b))
	c.must(err)
	req.Header.Set("Authorization", c.adminToken(path))
	req.Header.Set("Content-Type", "application/json")
	res, err := c.Client().Do(req)
	c.must(err)
	defer res.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode != http.StatusCreated {
		c.t.Fatalf("stepcatest: adding webhook %q: HTTP %d: %s\n%s", w.Name, res.StatusCode, out, c.Log())
	}
	var created struct {
		Secret string `json:"secret"`
	}
	c.must(json.Unmarshal(out, &created))
	secret, err := base64.StdEncoding.DecodeString(created.Secret)
	c.must(err)
	if len(secret) == 0 {
		c.t.Fatalf("stepcatest: step-ca returned no secret for webhook %q: %s", w.Name, out)
	}
	return secret
}

// stepOIDProvisioner is step-ca's provisioner extension (its private enterprise
// arc), naming the provisioner a certificate was issued by.
var stepOIDProvisioner = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 37476, 9000, 64, 1}

// adminToken is an x5c token of the first super admin ("step", of the JWK
// provisioner "admin", whom step-ca creates when it moves ca.json's provisioners into
// its database), for one admin API path. The certificate in its x5c header is signed
// here with the intermediate key, with the provisioner extension step-ca reads.
func (c *CA) adminToken(path string) string {
	type provExt struct {
		Type         int
		Name         []byte
		CredentialID []byte
	}
	ext, err := asn1.Marshal(provExt{Type: 1, Name: []byte("admin"), CredentialID: []byte(adminKID)})
	c.must(err)
	now := time.Now()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	c.must(err)
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "step"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(10 * time.Minute),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		ExtraExtensions: []pkix.Extension{{Id: stepOIDProvisioner, Value: ext}}}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c.must(err)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.Intermediate, leafKey.Public(), c.intKey)
	c.must(err)
	jti := sha256.Sum256(append(der, serial.Bytes()...))
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.RegisteredClaims{
		Issuer: "step-admin-client/1.0", Subject: "step", Audience: jwt.ClaimStrings{c.URL + path},
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
		ExpiresAt: jwt.NewNumericDate(now.Add(5 * time.Minute)), ID: hex.EncodeToString(jti[:16])})
	tok.Header["x5c"] = []string{base64.StdEncoding.EncodeToString(der),
		base64.StdEncoding.EncodeToString(c.Intermediate.Raw)}
	s, err := tok.SignedString(leafKey)
	c.must(err)
	return s
}

// ServerCertificate returns a certificate for a webhook server on 127.0.0.1 (and
// localhost) from the CA's root, which step-ca trusts.
func (c *CA) ServerCertificate() tls.Certificate {
	c.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c.must(err)
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: "webhooks"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.Root, key.Public(), c.rootKey)
	c.must(err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// WriteServerCertificate writes a [CA.ServerCertificate] and its key as PEM files in
// dir and returns their paths.
func (c *CA) WriteServerCertificate(dir string) (certFile, keyFile string) {
	c.t.Helper()
	pair := c.ServerCertificate()
	kder, err := x509.MarshalPKCS8PrivateKey(pair.PrivateKey)
	c.must(err)
	certFile, keyFile = filepath.Join(dir, "webhook.crt"), filepath.Join(dir, "webhook.key")
	c.must(os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pair.Certificate[0]}), 0o600))
	c.must(os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600))
	return certFile, keyFile
}

// ServerTLS returns a TLS configuration for a webhook server with a
// [CA.ServerCertificate], that verifies the client certificate step-ca presents when
// one is given.
func (c *CA) ServerTLS() *tls.Config {
	c.t.Helper()
	clients := x509.NewCertPool()
	clients.AddCert(c.Root)
	clients.AddCert(c.Intermediate)
	return &tls.Config{Certificates: []tls.Certificate{c.ServerCertificate()},
		ClientCAs: clients, ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12}
}

// RootFile is the PEM file of the root certificate.
func (c *CA) RootFile() string { return filepath.Join(c.Dir, "root_ca.crt") }

// IntermediateFile is the PEM file of the intermediate certificate.
func (c *CA) IntermediateFile() string { return filepath.Join(c.Dir, "intermediate_ca.crt") }

// Contains reports whether step-ca's log holds s (step-ca's log lines are written as
// they happen; this waits up to a second for them).
func (c *CA) Contains(s string) bool {
	for i := 0; i < 20; i++ {
		if strings.Contains(c.Log(), s) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// String describes the CA, for test logs.
func (c *CA) String() string { return fmt.Sprintf("step-ca at %s (SCEP %s)", c.URL, c.SCEPURL) }

// ClientTLS returns a TLS client configuration that trusts the CA's root and presents
// a client certificate from the intermediate, as step-ca's own webhook client does.
func (c *CA) ClientTLS() *tls.Config {
	c.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c.must(err)
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: "client"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.Intermediate, key.Public(), c.intKey)
	c.must(err)
	roots := x509.NewCertPool()
	roots.AddCert(c.Root)
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der, c.Intermediate.Raw}, PrivateKey: key}}}
}
