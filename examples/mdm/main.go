// Command mdm is the MDM's part of scepkit's flow, as a small HTTP server: it mints the
// one-hour, one-time challenge for a user's device, renders the SCEP profile for them and
// exports it as JSON, as an Apple .mobileconfig or as Windows SyncML, and it publishes
// the public keys that verify its challenges as a JWKS, so that a SCEP gateway in
// another process (examples/gateway) can be configured from it. It also receives the
// gateway's reports of what was issued or refused.
//
//	go run ./examples/mdm -directory examples/directory.json \
//	    -ca-cert gateway-state/ca.crt -scep-url http://127.0.0.1:8080/scep
//
// Endpoints:
//
//   - GET /jwks: the challenge-verification keys (JWKS, RFC 7517). Point the gateway's
//     -jwks at it.
//   - GET /profile?user=U&device=D[&format=json|mobileconfig|syncml][&platform=windows|ios|macos]:
//     the profile for device D of user U with a fresh challenge. U must be an active user
//     of the directory and D a compliant device enrolled to U, else 403. The default
//     format is json; the platform defaults to ios for mobileconfig, windows otherwise.
//     mobileconfig is for ios and macos, syncml for windows, json for all three.
//   - GET /bundle?user=U&device=D[&format=...][&platform=...]: the same checks and
//     formats, but the profile bundle (package profile, Bundle): the trusted root, the
//     SCEP enrollment, and with -wifi-ssid an EAP-TLS Wi-Fi network (and with
//     -vpn-server an IKEv2 VPN, Apple and JSON only) that authenticate with the
//     enrolled certificate.
//   - POST /notify: the gateway reports an outcome (JSON); GET /notifications lists them.
//     Unauthenticated here: a real MDM authenticates its connectors (mutual TLS).
//
// Flags: -directory FILE is the users and devices (see examples/internal/demo,
// DirectoryFile; the gateway reads the same file); -state DIR keeps the MDM's Ed25519
// signing key (mdm-ed25519.pem, PKCS#8, mode 0600), so challenges and the JWKS survive
// a restart; -name is the challenges' issuer and -gateway their audience (the gateway's
// identity); -scep-url goes into profiles; -ca-cert is the root CA devices pin (the
// gateway writes it as ca.crt in its state directory; it is read at each profile
// request, so the MDM may start first and follows a CA rollover without a restart); -ttl shortens the challenge lifetime (at
// most 1h); -log text|json; -wifi-ssid SSID with -radius-server NAMES (the RADIUS
// server certificate's names, comma-separated) and -vpn-server HOST with -vpn-issuer CN
// (the common name of the CA that issued the VPN server's certificate) shape /bundle:
//
//	go run ./examples/mdm -directory examples/directory.json -ca-cert gateway-state/ca.crt \
//	    -wifi-ssid Corp -radius-server radius.example.com &
//	until curl -sf 'http://127.0.0.1:8081/bundle?user=alice@example.com&device=alice-laptop&format=mobileconfig'; do sleep 1; done
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/examples/internal/demo"
	"github.com/scepkit/scepkit/profile"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // -h: the usage is printed, and asking for it is no failure
		}
		fmt.Fprintln(os.Stderr, "mdm:", err)
		os.Exit(1)
	}
}

type config struct {
	listen, state, name, gateway, scepURL, caCert, directory, log string
	wifiSSID, radiusServers, vpnServer, vpnIssuer                 string
	ttl                                                           time.Duration
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("mdm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8081", "listen on `ADDR`")
	fs.StringVar(&c.state, "state", "scepkit-mdm-state", "keep the challenge-signing key in `DIR`")
	fs.StringVar(&c.name, "name", "scepkit-mdm", "issuer name of the challenges (the gateway's -mdm-issuer)")
	fs.StringVar(&c.gateway, "gateway", "scepkit-gateway", "identity of the gateway the challenges are for (its -identity)")
	fs.StringVar(&c.scepURL, "scep-url", "http://127.0.0.1:8080/scep", "SCEP `URL` written into profiles")
	fs.StringVar(&c.caCert, "ca-cert", "", "root CA certificate `FILE` (PEM) devices pin; required")
	fs.StringVar(&c.directory, "directory", "", "users and devices JSON `FILE`; required")
	fs.DurationVar(&c.ttl, "ttl", time.Hour, "challenge lifetime (at most 1h)")
	fs.StringVar(&c.log, "log", "text", "log format: text or json")
	fs.StringVar(&c.wifiSSID, "wifi-ssid", "", "bundles add an EAP-TLS Wi-Fi network of this `SSID`")
	fs.StringVar(&c.radiusServers, "radius-server", "", "the RADIUS server certificate's `NAMES` (comma-separated) the Wi-Fi trusts")
	fs.StringVar(&c.vpnServer, "vpn-server", "", "bundles add an IKEv2 VPN to this `HOST` (certificate authentication)")
	fs.StringVar(&c.vpnIssuer, "vpn-issuer", "", "common `NAME` of the CA that issued the VPN server's certificate (with -vpn-server)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	case c.directory == "":
		return nil, errors.New("-directory is required")
	case c.caCert == "":
		return nil, errors.New("-ca-cert is required")
	case c.ttl <= 0 || c.ttl > challenge.MaxLifetime:
		return nil, fmt.Errorf("-ttl %v: a challenge lives at most %v (and more than zero)", c.ttl, challenge.MaxLifetime)
	case (c.wifiSSID == "") != (c.radiusServers == ""):
		return nil, errors.New("-wifi-ssid and -radius-server go together")
	case (c.vpnServer == "") != (c.vpnIssuer == ""):
		return nil, errors.New("-vpn-server and -vpn-issuer go together")
	}
	if err := checkNetworks(c); err != nil {
		return nil, err
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	log, err := demo.NewLogger(c.log, stderr)
	if err != nil {
		return err
	}
	dir, err := demo.LoadDirectory(c.directory)
	if err != nil {
		return err
	}
	key, err := demo.LoadOrCreateEd25519Key(filepath.Join(c.state, "mdm-ed25519.pem"))
	if err != nil {
		return err
	}
	keys := challenge.NewKeySet()
	kid, err := keys.AddKey(key.Public())
	if err != nil {
		return err
	}
	m := &mdm{
		issuer: &challenge.Issuer{Name: c.name, Key: key}, keys: keys, cfg: c, dir: dir, log: log,
	}
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return err
	}
	base := "http://" + ln.Addr().String()
	fmt.Fprintf(stdout, "scepkit mdm serving on %s\n", base)
	fmt.Fprintf(stdout, "  JWKS:    %s/jwks\n", base)
	fmt.Fprintf(stdout, "  profile: %s/profile?user=alice@example.com&device=alice-laptop&format=json\n", base)
	log.Info("serving", "addr", base, "issuer", c.name, "audience", c.gateway, "kid", kid, "ttl", c.ttl)
	return demo.Serve(ctx, ln, m.routes(), log)
}

// mdm mints challenges and profiles.
type mdm struct {
	issuer *challenge.Issuer
	keys   *challenge.KeySet
	cfg    *config
	dir    *demo.Directory
	log    *slog.Logger

	mu            sync.Mutex
	profiles      crp.MemoryProfiles // built from caPEM
	caPEM         []byte             // the CA certificate file as last read
	notifications []json.RawMessage
}

func (m *mdm) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /jwks", m.jwks)
	mux.HandleFunc("GET /profile", m.profile)
	mux.HandleFunc("GET /bundle", m.bundle)
	mux.HandleFunc("POST /notify", m.notify)
	mux.HandleFunc("GET /notifications", m.listNotifications)
	return mux
}

func (m *mdm) jwks(w http.ResponseWriter, r *http.Request) {
	b, err := m.keys.MarshalJSON()
	if err != nil {
		m.log.Error("jwks", "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error"})
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "max-age=300")
	w.Write(b)
}

// formats maps a format to its content type and default platform.
var formats = map[string]struct {
	contentType, platform string
}{
	"json":         {"application/json", "windows"},
	"mobileconfig": {"application/x-apple-aspen-config", "ios"},
	"syncml":       {"application/vnd.syncml.dm+xml", "windows"},
}

var platforms = map[string]string{"windows": demo.ProfileWindows, "ios": demo.ProfileIOS, "macos": demo.ProfileMacOS}

func (m *mdm) profile(w http.ResponseWriter, r *http.Request) {
	m.serve(w, r, "profile", func(rendered *profile.Rendered, _ *crp.Device, format string, opts profile.ExportOptions) ([]byte, error) {
		switch format {
		case "json":
			return profile.ExportJSON(rendered, opts)
		case "mobileconfig":
			return profile.MobileConfig(rendered, opts)
		}
		return profile.SyncML(rendered, opts)
	})
}

// bundle serves the profile bundle: the root, the SCEP enrollment and, per the flags,
// the EAP-TLS Wi-Fi network and the IKEv2 VPN that use the certificate.
func (m *mdm) bundle(w http.ResponseWriter, r *http.Request) {
	m.serve(w, r, "bundle", func(rendered *profile.Rendered, d *crp.Device, format string, opts profile.ExportOptions) ([]byte, error) {
		b := newBundle(m.cfg, rendered, d.ID)
		switch format {
		case "json":
			return b.JSON(opts)
		case "mobileconfig":
			return b.MobileConfig(opts)
		}
		b.VPN = nil // the Windows export has no VPN; -vpn-server is for Apple and JSON
		return b.SyncML(opts)
	})
}

// newBundle binds rendered to the networks of the flags.
func newBundle(c *config, rendered *profile.Rendered, deviceID string) *profile.Bundle {
	b := &profile.Bundle{SCEP: rendered, DeviceID: deviceID}
	if c.wifiSSID != "" {
		b.WiFi = &profile.WiFi{SSID: c.wifiSSID, TrustedServerNames: strings.Split(c.radiusServers, ",")}
	}
	if c.vpnServer != "" {
		b.VPN = &profile.VPN{Name: "scepkit example VPN", RemoteAddress: c.vpnServer,
			ServerCertificateIssuerCommonName: c.vpnIssuer}
		if len(rendered.Attributes) > 0 {
			// The demo certificates carry no SAN: the device's IKE identity is its CN, the UPN.
			b.VPN.LocalIdentifier = rendered.Attributes[0].Value
		}
	}
	return b
}

// checkNetworks refuses, at start, Wi-Fi and VPN flags that no bundle could carry.
func checkNetworks(c *config) error {
	if c.wifiSSID == "" && c.vpnServer == "" {
		return nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "check"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return err
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	profiles, err := demo.Profiles(c.scepURL, root)
	if err != nil {
		return err
	}
	rendered, err := profile.Render(profiles[demo.ProfileWindows], profile.User{UserPrincipalName: "check@example.com"},
		profile.Device{ID: "check"}, nil)
	if err != nil {
		return err
	}
	if err := newBundle(c, rendered, "check").Validate(); err != nil {
		return fmt.Errorf("-wifi-ssid, -radius-server, -vpn-server or -vpn-issuer: %w", err)
	}
	return nil
}

// exportFunc writes a rendered profile for device d in format (json, mobileconfig or
// syncml) with opts.
type exportFunc func(rendered *profile.Rendered, d *crp.Device, format string, opts profile.ExportOptions) ([]byte, error)

// serve checks who asks, renders the profile with a fresh challenge and writes what
// export makes of it.
func (m *mdm) serve(w http.ResponseWriter, r *http.Request, what string, export exportFunc) {
	q := r.URL.Query()
	userID, deviceID := q.Get("user"), q.Get("device")
	format := q.Get("format")
	if format == "" {
		format = "json"
	}
	f, ok := formats[format]
	if !ok || userID == "" || deviceID == "" || len(userID) > 256 || len(deviceID) > 256 {
		writeJSON(w, http.StatusBadRequest, map[string]string{
			"error": "user and device are required; format is json, mobileconfig or syncml"})
		return
	}
	platform := q.Get("platform")
	if platform == "" {
		platform = f.platform
	}
	profileID, ok := platforms[platform]
	apple := platform == "ios" || platform == "macos"
	// A .mobileconfig is Apple's and SyncML Windows'; JSON, for an MDM that renders
	// its own payloads, carries the profile of any platform.
	if !ok || format == "mobileconfig" && !apple || format == "syncml" && apple {
		writeJSON(w, http.StatusBadRequest, map[string]string{
			"error": "platform is windows, ios or macos; mobileconfig is for ios and macos only, syncml for windows only"})
		return
	}

	// The MDM hands out a profile only for an active user's compliant device: the
	// gateway checks all of it again (phases 2 and 3), since the challenge outlives
	// this decision by up to an hour.
	u, err := m.dir.LookupUser(r.Context(), userID)
	if err != nil || u.Disabled {
		m.log.Info("profile refused", "user", userID, "device", deviceID, "why", "user unknown or disabled")
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "user unknown or disabled"})
		return
	}
	d, err := m.dir.LookupDevice(r.Context(), deviceID)
	if err != nil || d.UserID != u.ID || !d.Compliant {
		m.log.Info("profile refused", "user", userID, "device", deviceID, "why", "device unknown, not the user's, or not compliant")
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "device unknown, not enrolled to this user, or not compliant"})
		return
	}
	profiles, err := m.loadProfiles()
	if err != nil {
		m.log.Error("profile: CA certificate", "file", m.cfg.caCert, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "CA certificate not available yet"})
		return
	}
	rendered, err := profile.Render(profiles[profileID], u.User, d.Device, nil)
	if err != nil {
		m.log.Warn("profile: render", "user", userID, "device", deviceID, "err", err)
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": "the profile cannot be rendered for this user and device"})
		return
	}
	ch, claims, err := m.issuer.Issue(challenge.Request{UserID: u.ID, DeviceID: d.ID, ProfileID: profileID,
		Audience: m.cfg.gateway, Lifetime: m.cfg.ttl})
	if err != nil {
		m.log.Error("profile: challenge", "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error"})
		return
	}
	opts := profile.ExportOptions{Challenge: ch, UniqueID: "scepkit-" + profileID}
	body, err := export(rendered, d, format, opts)
	if err != nil {
		m.log.Error(what+": export", "format", format, "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error"})
		return
	}
	m.log.Info(what+" issued", "user", u.ID, "device", d.ID, "profile", profileID, "format", format,
		"challenge", challenge.Fingerprint(ch), "expires", claims.Expires)
	w.Header().Set("Content-Type", f.contentType)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Challenge-Expires", claims.Expires.UTC().Format(time.RFC3339))
	w.Write(body)
}

// loadProfiles builds the profiles from the root CA certificate file, once it can be
// read, and again whenever its content changes (a CA rollover promoted, the certificate
// renewed), so that profiles pin the CA the gateway serves now rather than the one it
// served when the MDM started. The file is small and read at each profile request.
func (m *mdm) loadProfiles() (crp.MemoryProfiles, error) {
	f, err := os.Open(m.cfg.caCert)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	f.Close()
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.profiles != nil && bytes.Equal(b, m.caPEM) {
		return m.profiles, nil
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	ca, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, err
	}
	p, err := demo.Profiles(m.cfg.scepURL, ca)
	if err != nil {
		return nil, err
	}
	if m.profiles != nil {
		m.log.Info("CA certificate changed: profiles now pin it", "file", m.cfg.caCert, "subject", ca.Subject.String())
	}
	m.profiles, m.caPEM = p, b
	return p, nil
}

// notify records a gateway's report (the JSON the gateway's Notifier posts).
func (m *mdm) notify(w http.ResponseWriter, r *http.Request) {
	var n json.RawMessage
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&n); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "want a JSON notification of at most 64 KiB"})
		return
	}
	var summary struct {
		TransactionID string `json:"transaction_id"`
		Outcome       string `json:"outcome"`
		User          string `json:"user"`
		Device        string `json:"device"`
		Serial        string `json:"serial"`
		Reason        string `json:"reason"`
	}
	json.Unmarshal(n, &summary)
	m.log.Info("gateway reported", "transactionID", summary.TransactionID, "outcome", summary.Outcome,
		"user", summary.User, "device", summary.Device, "serial", summary.Serial, "reason", summary.Reason)
	m.mu.Lock()
	if len(m.notifications) >= 1000 {
		m.notifications = m.notifications[1:]
	}
	m.notifications = append(m.notifications, n)
	m.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (m *mdm) listNotifications(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	list := append([]json.RawMessage{}, m.notifications...)
	m.mu.Unlock()
	writeJSON(w, http.StatusOK, list)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
