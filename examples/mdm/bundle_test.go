package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/examples/internal/demo"
	"github.com/scepkit/scepkit/examples/internal/exectest"
	"github.com/scepkit/scepkit/internal/radiustest"
	"github.com/scepkit/scepkit/internal/scepclienttest"
	"github.com/scepkit/scepkit/profile"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// radiusName is the RADIUS server's certificate name, given to the MDM as -radius-server.
const radiusName = "radius.scepkit.test"

// world is a gateway (crptest: the built-in CA and RA, the registration point, a SCEP
// server on 127.0.0.1) and this MDM serving bundles for it, in one process.
type world struct {
	env *crptest.Env
	mdm *httptest.Server
}

func newWorld(t *testing.T) *world {
	t.Helper()
	env, err := crptest.New(crptest.Options{Legacy: true}) // Legacy: Debian's scepclient speaks 3DES and SHA-1
	require.NoError(t, err)
	mux := http.NewServeMux()
	scep.Mount(mux, "/scep", env.Server)
	gw := httptest.NewServer(mux)
	t.Cleanup(gw.Close)
	// The gateway checks requests against the MDM's profiles.
	profiles, err := demo.Profiles(gw.URL+"/scep", env.CA.Certificate)
	require.NoError(t, err)
	for id, p := range profiles {
		env.Profiles[id] = p
	}
	caPath := filepath.Join(t.TempDir(), "ca.crt")
	require.NoError(t, os.WriteFile(caPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: env.CA.Certificate.Raw}), 0o644))
	dir, err := demo.LoadDirectory("../directory.json")
	require.NoError(t, err)
	cfg := &config{gateway: env.Verifier.Audience, ttl: time.Hour, scepURL: gw.URL + "/scep", caCert: caPath,
		wifiSSID: "scepkit corp", radiusServers: radiusName, vpnServer: "vpn.scepkit.test", vpnIssuer: "scepkit VPN CA"}
	require.NoError(t, checkNetworks(cfg))
	m := &mdm{issuer: env.Challenges, cfg: cfg, dir: dir, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	srv := httptest.NewServer(m.routes())
	t.Cleanup(srv.Close)
	return &world{env: env, mdm: srv}
}

func (w *world) bundle(t *testing.T, format, platform string) []byte {
	t.Helper()
	code, _, body := get(t, w.mdm.URL+"/bundle?user=alice@example.com&device=alice-laptop&format="+format+"&platform="+platform)
	require.Equal(t, http.StatusOK, code, string(body))
	return body
}

// device is what a device ends up with: the files eapol_test reads and the network
// block derived from the bundle.
type device struct {
	dir     string
	cert    *x509.Certificate
	network string
}

func writePEM(t *testing.T, path, typ string, der []byte) string {
	t.Helper()
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
	return path
}

func writeKey(t *testing.T, path string, key crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return writePEM(t, path, "PRIVATE KEY", der)
}

// wpaNetwork is the wpa_supplicant network block for EAP-TLS as a bundle describes
// it: the EAP type, the anchor the server must chain to, the server name it must
// carry. Every value is checked to be one wpa_supplicant token before it is quoted.
func wpaNetwork(t *testing.T, eapType int, anchor, serverName, identity, cert, key string) string {
	t.Helper()
	require.Equal(t, profile.EAPTLS, eapType, "the bundle asks for EAP-TLS")
	for _, v := range []string{anchor, serverName, identity, cert, key} {
		require.NotContains(t, v, `"`)
		require.NotContains(t, v, "\n")
	}
	return fmt.Sprintf("key_mgmt=WPA-EAP\neap=TLS\nidentity=%q\nca_cert=%q\nclient_cert=%q\nprivate_key=%q\ndomain_match=%q\n",
		identity, anchor, cert, key, serverName)
}

// appleRefs reads a .mobileconfig with Python's plistlib through the checker the
// profile package's golden tests use; it fails on a reference to nothing.
type appleRefs struct {
	Payloads []struct {
		Type               string        `json:"type"`
		UUID               string        `json:"uuid"`
		Certificate        string        `json:"certificate"`
		CertificateUUID    string        `json:"certificateUuid"`
		URL                string        `json:"url"`
		Challenge          string        `json:"challenge"`
		Subject            [][][2]string `json:"subject"`
		CAFingerprint      string        `json:"caFingerprint"`
		EAPTypes           []int         `json:"eapTypes"`
		TrustedServerNames []string      `json:"trustedServerNames"`
		AnchorUUIDs        []string      `json:"anchorUuids"`
	} `json:"payloads"`
}

func readAppleBundle(t *testing.T, b []byte) *appleRefs {
	t.Helper()
	py, err := exec.LookPath("/usr/bin/python3") // a version manager's shim can take seconds
	if err != nil {
		py, err = exec.LookPath("python3")
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3 is required under CI=true: %v", err)
		}
		t.Skip("python3 not installed")
	}
	f := filepath.Join(t.TempDir(), "bundle.mobileconfig")
	require.NoError(t, os.WriteFile(f, b, 0o644))
	out, err := exec.Command(py, "../../profile/testdata/mobileconfig_refs.py", f).CombinedOutput()
	require.NoError(t, err, "%s", out)
	var refs appleRefs
	require.NoError(t, json.Unmarshal(out, &refs))
	return &refs
}

// enrollApple plays an Apple device: it installs the bundle's root, enrolls with
// scep.Client as the SCEP payload says (URL, subject, challenge, the root pinned by
// the payload's CAFingerprint), and derives its EAP-TLS settings from the Wi-Fi
// payload: the certificate it names, the anchor it names, the server name it trusts.
func enrollApple(t *testing.T, w *world) *device {
	t.Helper()
	refs := readAppleBundle(t, w.bundle(t, "mobileconfig", "macos"))
	byUUID := map[string]int{}
	wifi := -1
	for i, p := range refs.Payloads {
		byUUID[p.UUID] = i
		if p.Type == "com.apple.wifi.managed" {
			wifi = i
		}
	}
	require.GreaterOrEqual(t, wifi, 0, "the bundle has a Wi-Fi payload")
	wp := refs.Payloads[wifi]
	scepP := refs.Payloads[byUUID[wp.CertificateUUID]]
	require.Equal(t, "com.apple.security.scep", scepP.Type)
	require.Len(t, wp.AnchorUUIDs, 1)
	anchorP := refs.Payloads[byUUID[wp.AnchorUUIDs[0]]]
	require.Equal(t, "com.apple.security.root", anchorP.Type)
	rootDER, err := base64.StdEncoding.DecodeString(anchorP.Certificate)
	require.NoError(t, err)
	fp := sha1.Sum(rootDER)
	require.Equal(t, hex.EncodeToString(fp[:]), scepP.CAFingerprint, "the SCEP payload pins the installed root")

	dir := t.TempDir()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	var rdns pkix.RDNSequence
	for _, rdn := range scepP.Subject {
		var set pkix.RelativeDistinguishedNameSET
		for _, pair := range rdn {
			require.Equal(t, "CN", pair[0])
			set = append(set, pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: pair[1]})
		}
		rdns = append(rdns, set)
	}
	raw, err := asn1.Marshal(rdns)
	require.NoError(t, err)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{RawSubject: raw}, key)
	require.NoError(t, err)
	csr, err = scep.AddChallengePassword(csr, scepP.Challenge, key, nil)
	require.NoError(t, err)
	pin := sha256.Sum256(rootDER)
	client := &scep.Client{URL: scepP.URL, CAFingerprint: pin[:]}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cert, err := client.Enroll(ctx, csr, key)
	require.NoError(t, err)

	identity := scepP.Subject[0][0][1]
	network := wpaNetwork(t, wp.EAPTypes[0], writePEM(t, filepath.Join(dir, "anchor.pem"), "CERTIFICATE", rootDER),
		wp.TrustedServerNames[0], identity, writePEM(t, filepath.Join(dir, "cert.pem"), "CERTIFICATE", cert.Raw),
		writeKey(t, filepath.Join(dir, "key.pem"), key))
	return &device{dir: dir, cert: cert, network: network}
}

type windowsBundle struct {
	Body struct {
		Cmds []struct {
			XMLName xml.Name
			LocURI  string `xml:"Item>Target>LocURI"`
			Data    string `xml:"Item>Data"`
			Cmds    []struct {
				LocURI string `xml:"Item>Target>LocURI"`
				Data   string `xml:"Item>Data"`
			} `xml:",any"`
		} `xml:",any"`
	} `xml:"SyncBody"`
}

type windowsWLAN struct {
	Type int `xml:"MSM>security>OneX>EAPConfig>EapHostConfig>EapMethod>Type"`
	TLS  struct {
		ServerNames   string `xml:"ServerValidation>ServerNames"`
		TrustedRootCA string `xml:"ServerValidation>TrustedRootCA"`
	} `xml:"MSM>security>OneX>EAPConfig>EapHostConfig>Config>Eap>EapType"`
}

// enrollWindows plays a Windows device with Debian's scepclient: it takes the
// ServerURL, Challenge and SubjectName of the ClientCertificateInstall nodes, and its
// EAP-TLS settings from the WLAN profile: the EAP type, the server names, and the
// root named by TrustedRootCA, found among the RootCATrustedCertificates nodes.
func enrollWindows(t *testing.T, w *world) *device {
	t.Helper()
	sc := scepclienttest.NewDevice(t)
	var doc windowsBundle
	require.NoError(t, xml.Unmarshal(w.bundle(t, "syncml", "windows"), &doc))
	roots := map[string][]byte{}
	nodes := map[string]string{}
	var wlan windowsWLAN
	for _, c := range doc.Body.Cmds {
		switch {
		case strings.Contains(c.LocURI, "/RootCATrustedCertificates/Root/"):
			der, err := base64.StdEncoding.DecodeString(c.Data)
			require.NoError(t, err)
			roots[strings.Split(c.LocURI, "/")[6]] = der
		case strings.HasSuffix(c.LocURI, "/WlanXml"):
			require.NoError(t, xml.Unmarshal([]byte(c.Data), &wlan))
		case c.XMLName.Local == "Atomic":
			for _, n := range c.Cmds {
				nodes[n.LocURI[strings.LastIndex(n.LocURI, "/")+1:]] = n.Data
			}
		}
	}
	anchor := roots[strings.ToUpper(strings.ReplaceAll(wlan.TLS.TrustedRootCA, " ", ""))]
	require.NotNil(t, anchor, "TrustedRootCA %q names a root the bundle installs", wlan.TLS.TrustedRootCA)
	require.Equal(t, nodes["CAThumbprint"], strings.ToUpper(strings.ReplaceAll(wlan.TLS.TrustedRootCA, " ", "")))
	ch, err := base64.StdEncoding.DecodeString(nodes["Challenge"])
	require.NoError(t, err)
	cn, ok := strings.CutPrefix(nodes["SubjectName"], "CN=")
	require.True(t, ok, nodes["SubjectName"])

	out, err := sc.Enroll(nodes["ServerURL"], cn, string(ch))
	require.NoError(t, err, "scepclient: %s", out)
	cert, err := sc.Certificate()
	require.NoError(t, err)
	dir := sc.Dir

	network := wpaNetwork(t, wlan.Type, writePEM(t, filepath.Join(dir, "anchor.pem"), "CERTIFICATE", anchor),
		strings.Split(wlan.TLS.ServerNames, ";")[0], cn, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	return &device{dir: dir, cert: cert, network: network}
}

// impostor is a device with a certificate the bundle's network must refuse, using the
// EAP-TLS settings of a device that enrolled properly.
func impostor(t *testing.T, like *device, issuer *x509.Certificate, issuerKey crypto.Signer, notBefore, notAfter time.Time) *device {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: like.cert.Subject,
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), issuerKey)
	require.NoError(t, err)
	dir := t.TempDir()
	network := strings.Replace(like.network, filepath.Join(like.dir, "cert.pem"), writePEM(t, filepath.Join(dir, "cert.pem"), "CERTIFICATE", der), 1)
	network = strings.Replace(network, filepath.Join(like.dir, "key.pem"), writeKey(t, filepath.Join(dir, "key.pem"), key), 1)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &device{dir: dir, cert: c, network: network}
}

// TestBundleAuthenticatesWithFreeRADIUS is the flow's last step: a device that
// installed the bundle enrolls (scep.Client as an Apple device, Debian's scepclient as
// a Windows one) and joins the network by EAP-TLS with the issued certificate, against
// a real FreeRADIUS that trusts the scepkit CA and checks its CRL, with eapol_test
// configured from the bundle's Wi-Fi payload and WLAN profile. A certificate from
// another CA, an expired one and a revoked one are rejected.
func TestBundleAuthenticatesWithFreeRADIUS(t *testing.T) {
	radiustest.Require(t)
	w := newWorld(t)
	ctx := context.Background()

	apple := enrollApple(t, w)
	windows := enrollWindows(t, w)
	revoked := enrollApple(t, w)
	for _, d := range []*device{apple, windows, revoked} {
		require.NoError(t, d.cert.CheckSignatureFrom(w.env.CA.Certificate))
		require.Contains(t, d.cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth, "EAP-TLS servers may require clientAuth")
		require.NotZero(t, d.cert.KeyUsage&x509.KeyUsageDigitalSignature, "TLS client signatures need digitalSignature")
	}
	require.NoError(t, w.env.CA.Revoke(revoked.cert.SerialNumber, 1, time.Now())) // keyCompromise
	crl, err := w.env.CA.CRL(ctx, time.Now().Add(time.Hour))
	require.NoError(t, err)

	// Another CA that takes the scepkit CA's name.
	other, err := catemplate.NewCA(catemplate.CAOptions{KeyType: profile.ECDSAP256, Subject: w.env.CA.Certificate.Subject})
	require.NoError(t, err)
	stranger := impostor(t, apple, other.Certificate, other.Signer, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	// The built-in CA will not sign an expired certificate; its key will.
	expired := impostor(t, apple, w.env.CA.Certificate, w.env.CA.Signer, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))

	// The RADIUS server's own certificate, from the scepkit CA, with the name the
	// bundle trusts.
	radius := func(ca *catemplate.CA, name string) *radiustest.Server {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
		require.NoError(t, err)
		cert, err := ca.Sign(ctx, &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name},
			DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, key.Public())
		require.NoError(t, err)
		return radiustest.Start(t, radiustest.Options{ClientCAs: []*x509.Certificate{w.env.CA.Certificate},
			CRLs: [][]byte{crl}, CheckCRL: true, ServerCertificate: []*x509.Certificate{cert}, ServerKey: key})
	}
	rs := radius(w.env.CA, radiusName)

	for name, d := range map[string]*device{"scep.Client (Apple bundle)": apple, "scepclient (Windows bundle)": windows} {
		r := rs.Authenticate(t, d.dir, d.network)
		require.True(t, r.Accepted(), "%s: want Access-Accept, got code %d\n%s\n--- server:\n%s", name, r.Code, r.Output, rs.Log())
	}
	require.Equal(t, w.env.CA.Certificate.RawSubject, stranger.cert.RawIssuer)
	for _, tc := range []struct {
		name    string
		d       *device
		reasons []string // what FreeRADIUS's OpenSSL says, one of
	}{
		{"another CA of the same name", stranger, []string{"unable to get local issuer certificate", "certificate signature failure"}},
		{"expired", expired, []string{"certificate has expired"}},
		{"revoked", revoked, []string{"certificate revoked"}},
	} {
		before := len(rs.Log())
		r := rs.Authenticate(t, tc.d.dir, tc.d.network)
		require.Equal(t, 3, r.Code, "%s: want Access-Reject\n%s", tc.name, r.Output)
		require.True(t, r.Rejected(), tc.name)
		// FreeRADIUS may log the reason a moment after its Access-Reject left.
		var log string
		found := func() bool {
			log = rs.Log()[before:]
			for _, reason := range tc.reasons {
				if strings.Contains(log, reason) {
					return true
				}
			}
			return false
		}
		require.Eventually(t, found, 10*time.Second, 20*time.Millisecond, "%s: the server says why (%q)", tc.name, tc.reasons)
	}

	// The device, as the bundle configured it, refuses a server that does not chain to
	// the bundle's anchor or does not carry the trusted name: no Access-Accept.
	for name, rogue := range map[string]*radiustest.Server{
		"server certificate from another CA": radius(other, radiusName),
		"server of another name":             radius(w.env.CA, "radius.elsewhere.test"),
	} {
		r := rogue.Authenticate(t, apple.dir, apple.network)
		require.False(t, r.Success, "%s\n%s", name, r.Output)
		require.NotEqual(t, 2, r.Code, name)
		require.True(t, strings.Contains(r.Output, "CTRL-EVENT-EAP-TLS-CERT-ERROR"), "%s: the device refused the server's certificate", name)
	}
}

// TestBundleEndpoint: /bundle answers in the three formats with the networks of the
// flags, refuses who /profile refuses, and flags no bundle could carry stop the start.
func TestBundleEndpoint(t *testing.T) {
	w := newWorld(t)
	var j profile.JSONBundle
	require.NoError(t, json.Unmarshal(w.bundle(t, "json", "windows"), &j))
	require.Equal(t, "scepkit corp", j.WiFi.SSID)
	require.Equal(t, []string{radiusName}, j.WiFi.TrustedServerNames)
	require.Equal(t, j.SCEP.UUID, j.WiFi.CertificateUUID)
	require.Equal(t, []string{j.Root.UUID}, j.WiFi.AnchorUUIDs)
	require.Equal(t, "vpn.scepkit.test", j.VPN.RemoteAddress)
	require.Equal(t, "alice@example.com", j.VPN.LocalIdentifier)
	require.Equal(t, "scepkit VPN CA", j.VPN.ServerCertificateIssuerCommonName)
	require.NotEmpty(t, j.SCEP.Profile.Challenge)
	require.Contains(t, string(w.bundle(t, "mobileconfig", "ios")), "<string>com.apple.vpn.managed</string>")
	require.Contains(t, string(w.bundle(t, "syncml", "windows")), "/Vendor/MSFT/WiFi/Profile/scepkit%20corp/WlanXml")

	for q, want := range map[string]int{
		"user=mallory@example.com&device=mallory-tablet":                        http.StatusForbidden,
		"user=alice@example.com&device=bob-phone":                               http.StatusForbidden,
		"user=alice@example.com&device=alice-laptop&format=pdf":                 http.StatusBadRequest,
		"user=alice@example.com&device=alice-laptop&format=syncml&platform=ios": http.StatusBadRequest,
	} {
		code, _, _ := get(t, w.mdm.URL+"/bundle?"+q)
		require.Equal(t, want, code, q)
	}

	base := []string{"-directory", "../directory.json", "-ca-cert", "ca.crt"}
	for _, bad := range [][]string{
		{"-wifi-ssid", "corp"},
		{"-radius-server", radiusName},
		{"-wifi-ssid", strings.Repeat("x", 33), "-radius-server", radiusName},
		{"-wifi-ssid", "corp", "-radius-server", "radius.example;evil.example"},
		{"-vpn-server", "vpn.example/x", "-vpn-issuer", "VPN CA"},
		{"-vpn-server", "vpn.example"},
		{"-vpn-issuer", "VPN CA"},
		{"-vpn-server", "vpn.example", "-vpn-issuer", "VPN\nCA"},
	} {
		_, err := parseFlags(append(base, bad...), io.Discard)
		require.Error(t, err, "%q", bad)
	}
	_, err := parseFlags(append(base, "-wifi-ssid", "corp", "-radius-server", "a.example,b.example"), io.Discard)
	require.NoError(t, err)
	_, err = parseFlags(append(base, "-vpn-server", "vpn.example", "-vpn-issuer", "VPN CA"), io.Discard)
	require.NoError(t, err)
}

// TestBundleBinary: the built command serves /bundle with the networks of its flags,
// and refuses at start a server name no bundle could carry.
func TestBundleBinary(t *testing.T) {
	bin := exectest.Build(t, ".")
	caPath := filepath.Join(t.TempDir(), "ca.crt")
	writeCA(t, caPath)
	m := exectest.Start(t, bin, "-listen", "127.0.0.1:0", "-state", t.TempDir(), "-directory", "../directory.json",
		"-ca-cert", caPath, "-wifi-ssid", "Corp", "-radius-server", "radius.example.com,nps.example.com")
	code, h, body := get(t, m.Base+"/bundle?user=alice@example.com&device=alice-laptop")
	require.Equal(t, http.StatusOK, code, string(body))
	require.Equal(t, "application/json", h.Get("Content-Type"))
	var j profile.JSONBundle
	require.NoError(t, json.Unmarshal(body, &j))
	require.Equal(t, "Corp", j.WiFi.SSID)
	require.Equal(t, []string{"radius.example.com", "nps.example.com"}, j.WiFi.TrustedServerNames)
	require.Nil(t, j.VPN)
	m.Stop(t)

	_, stderr, exit := exectest.Run(t, bin, "-directory", "../directory.json", "-ca-cert", caPath,
		"-wifi-ssid", "Corp", "-radius-server", "radius.example.com;evil.example")
	require.NotEqual(t, 0, exit)
	require.Contains(t, stderr, "WiFi.TrustedServerNames[0]")
}
