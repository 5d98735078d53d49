// Command gateway is a SCEP gateway with scepkit's Certificate Registration Point, the
// part that NDES, IIS and Intune's certificate connector play together: it serves SCEP
// at /scep and /certsrv/mscep/mscep.dll, verifies each request's challenge against the
// MDM's published keys (a JWKS), runs the three phases against a directory and a device
// registry, resolves the certificate template, issues with its own CA, and reports each
// outcome to the MDM. It shows how to assemble the packages by hand (see newGateway).
//
//	go run ./examples/gateway -state gateway-state -jwks http://127.0.0.1:8081/jwks \
//	    -directory examples/directory.json -notify http://127.0.0.1:8081/notify
//
// or with the same settings in a JSON file (flags given on the command line win):
//
//	go run ./examples/gateway -config gateway.json
//
//	{"listen": "127.0.0.1:8080", "state": "gateway-state", "identity": "scepkit-gateway",
//	 "mdm_issuer": "scepkit-mdm", "jwks": "http://127.0.0.1:8081/jwks", "jwks_refresh": "5m",
//	 "directory": "examples/directory.json", "notify": "http://127.0.0.1:8081/notify",
//	 "url": "http://127.0.0.1:8080/scep", "legacy": false, "redis": "", "log": "json"}
//
// Settings:
//
//   - listen: the address to serve on; url: the public SCEP URL (behind a proxy), for
//     the profiles the gateway checks requests against (default http://LISTEN/scep).
//   - state: a directory for the CA and RA (catemplate.SaveCA/SaveRA: ca.crt, ca.key,
//     ra-*.crt, ra-*.key, created on first start, loaded after) and state.db (package
//     boltstore: challenge claims, transactions, pending requests, issued certificates
//     for renewals and GetCert, revocations), durable before a device is answered, so
//     that a restart or a crash neither forgets a used challenge nor loses a
//     certificate. An issued/ directory of earlier versions is migrated into it. Give ca.crt to the MDM and the
//     devices: the SHA-256 printed at start is what devices pin.
//   - identity: this gateway's identity, the audience the MDM mints its challenges for
//     (the MDM's -gateway); a challenge for another gateway is refused.
//   - mdm_issuer: the MDM's issuer name (its -name).
//   - jwks: the MDM's challenge-verification keys, an http(s) URL or a file, read at
//     start (a URL is retried for ten seconds, the MDM may be starting) and every
//     jwks_refresh (default 5m; 0: never) so that key rotation needs no restart.
//   - directory: the users and devices (the demo cannot reach a real directory; the file
//     format is examples/internal/demo's DirectoryFile, the MDM reads the same file).
//   - notify: where to POST a JSON report of every outcome (the MDM's /notify); empty
//     logs them only.
//   - legacy: accept single DES and SHA-1 from old clients (micromdm's scepclient needs
//     it); without it they get FAILURE badAlg.
//   - ca_envelopes: accept requests encrypted to the CA certificate and sign the replies
//     to them with the CA (scep.Server.CAKey), as clients that pin the CA need
//     (micromdm's scepclient -ca-fingerprint); off, they get a FAILURE badMessageCheck
//     they cannot verify. It uses the CA key for key transport too.
//   - redis: host:port of a Redis that gateways running side by side share (package
//     redisstore): one-time use of challenges and transaction records, so a challenge
//     used at one gateway is refused at the others and a poll or resend finds its
//     transaction wherever the load balancer sends it; redis_prefix namespaces the keys.
//     Empty keeps them in state.db (one gateway). Gateways side by side also share the
//     state directory (the same CA and RA; issued certificates are files in issued/,
//     so one gateway renews what another issued) and the same identity.
//   - postgres: a PostgreSQL connection string (package pgstore) that gateways running
//     side by side share: everything state.db would keep (challenge claims,
//     transactions, pending requests, issued certificates, revocations), so that a
//     challenge is used once across them, a pending request is decided once, and
//     the inventory is one. With redis as well, Redis keeps claims and transactions
//     and PostgreSQL the rest. Gateways side by side share the state directory for
//     the CA and RA.
//   - log: text or json (slog, on stderr; one record per step with the transactionID).
//
// The HTTP server has read, write and idle timeouts and stops gracefully on SIGINT
// and SIGTERM, finishing requests in flight.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scepkit/scepkit/boltstore"
	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/examples/internal/demo"
	"github.com/scepkit/scepkit/internal/mdmfile"
	"github.com/scepkit/scepkit/pgstore"
	"github.com/scepkit/scepkit/redisstore"
	"github.com/scepkit/scepkit/scep"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // -h: the usage is printed, and asking for it is no failure
		}
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

// config is the gateway's configuration, from a JSON file and flags.
type config struct {
	Listen      string   `json:"listen"`
	URL         string   `json:"url"`
	State       string   `json:"state"`
	Identity    string   `json:"identity"`
	MDMIssuer   string   `json:"mdm_issuer"`
	JWKS        string   `json:"jwks"`
	JWKSRefresh duration `json:"jwks_refresh"`
	Directory   string   `json:"directory"`
	Notify      string   `json:"notify"`
	Legacy      bool     `json:"legacy"`
	CAEnvelopes bool     `json:"ca_envelopes"`
	Redis       string   `json:"redis"`
	Postgres    string   `json:"postgres"`
	RedisPrefix string   `json:"redis_prefix"`
	Log         string   `json:"log"`
}

// duration is a time.Duration written as "5m" in JSON.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"5m\": %w", err)
	}
	v, err := time.ParseDuration(s)
	*d = duration(v)
	return err
}

// configFile finds -config FILE among args before the flags are parsed, so that the
// file's values become the flags' defaults.
func configFile(args []string) string {
	for i, a := range args {
		if a == "--" {
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "config" {
			continue
		}
		if hasValue {
			return value
		}
		if i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func parseConfig(args []string, stderr io.Writer) (*config, error) {
	c := &config{Listen: "127.0.0.1:8080", State: "scepkit-gateway-state", Identity: "scepkit-gateway",
		MDMIssuer: "scepkit-mdm", JWKSRefresh: duration(5 * time.Minute), Log: "text"}
	if path := configFile(args); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(c); err != nil {
			return nil, fmt.Errorf("-config %s: %w", path, err)
		}
	}
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.String("config", "", "read settings from a JSON `FILE` (flags override it)")
	fs.StringVar(&c.Listen, "listen", c.Listen, "listen on `ADDR`")
	fs.StringVar(&c.URL, "url", c.URL, "public SCEP `URL` (default http://LISTEN/scep)")
	fs.StringVar(&c.State, "state", c.State, "CA, RA and issued certificates `DIR`")
	fs.StringVar(&c.Identity, "identity", c.Identity, "this gateway's identity: the audience of its challenges")
	fs.StringVar(&c.MDMIssuer, "mdm-issuer", c.MDMIssuer, "the MDM's issuer `name`")
	fs.StringVar(&c.JWKS, "jwks", c.JWKS, "the MDM's challenge keys: JWKS `URL or FILE`; required")
	fs.DurationVar((*time.Duration)(&c.JWKSRefresh), "jwks-refresh", time.Duration(c.JWKSRefresh), "re-read the JWKS this often (0: never)")
	fs.StringVar(&c.Directory, "directory", c.Directory, "users and devices JSON `FILE`; required")
	fs.StringVar(&c.Notify, "notify", c.Notify, "POST each outcome as JSON to this `URL` (the MDM's /notify)")
	fs.BoolVar(&c.Legacy, "legacy", c.Legacy, "accept single DES and SHA-1 from old clients")
	fs.BoolVar(&c.CAEnvelopes, "ca-envelopes", c.CAEnvelopes, "accept requests encrypted to the CA certificate (clients that pin the CA)")
	fs.StringVar(&c.Redis, "redis", c.Redis, "share challenge use and transactions with other gateways in Redis at `ADDR` (host:port)")
	fs.StringVar(&c.Postgres, "postgres", c.Postgres, "keep everything in PostgreSQL at `DSN`, shared with other gateways (with -redis: certificates and revocations)")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", c.RedisPrefix, "key `prefix` in Redis (default \""+redisstore.DefaultPrefix+"\")")
	fs.StringVar(&c.Log, "log", c.Log, "log format: text or json")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	case c.JWKS == "":
		return nil, errors.New("-jwks is required: the MDM's JWKS URL (its /jwks) or file")
	case c.Directory == "":
		return nil, errors.New("-directory is required")
	case c.Identity == "" || c.MDMIssuer == "" || c.State == "":
		return nil, errors.New("-identity, -mdm-issuer and -state must not be empty")
	case c.JWKSRefresh < 0:
		return nil, errors.New("-jwks-refresh must not be negative")
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseConfig(args, stderr)
	if err != nil {
		return err
	}
	log, err := demo.NewLogger(c.Log, stderr)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	if c.URL == "" {
		c.URL = "http://" + ln.Addr().String() + "/scep"
	}
	g, err := newGateway(ctx, c, log)
	if err != nil {
		return err
	}
	if c.JWKSRefresh > 0 {
		go g.refreshKeys(ctx, c.JWKS, time.Duration(c.JWKSRefresh))
	}
	defer g.close()
	mux := http.NewServeMux()
	scep.Mount(mux, "/scep", g.server)
	scep.Mount(mux, "/certsrv/mscep/mscep.dll", g.server)

	sum := sha256.Sum256(g.ca.Certificate.Raw)
	base := "http://" + ln.Addr().String()
	fmt.Fprintf(stdout, "scepkit gateway serving on %s\n", base)
	fmt.Fprintf(stdout, "  SCEP:           %s/scep  (also %s/certsrv/mscep/mscep.dll)\n", base, base)
	fmt.Fprintf(stdout, "  CA certificate: %s\n", filepath.Join(c.State, catemplate.CACertFile))
	fmt.Fprintf(stdout, "  CA SHA-256:     %s\n", hex.EncodeToString(sum[:]))
	log.Info("serving", "addr", base, "identity", c.Identity, "mdm", c.MDMIssuer, "keys", g.keys.KeyIDs(),
		"legacy", c.Legacy, "caEnvelopes", c.CAEnvelopes, "state", c.State, "redis", c.Redis, "postgres", c.Postgres != "")
	return demo.Serve(ctx, ln, mux, log)
}

// gateway is the assembled gateway.
type gateway struct {
	ca     *catemplate.CA
	keys   *challenge.KeySet
	rp     *crp.RegistrationPoint
	server *scep.Server
	log    *slog.Logger
	stores *storeSet
}

func (g *gateway) close() { g.stores.close() }

// stores returns where the gateway keeps what it remembers. By default, everything
// (challenge claims, transactions and pending requests, issued certificates,
// revocations) is in one file, state.db in the state directory (package boltstore):
// it survives restarts and crashes, for one gateway. With -postgres, everything is in
// that database (package pgstore), shared by every gateway that uses it. With -redis,
// challenge claims and transactions are in Redis, shared by every gateway that uses
// the same Redis and prefix (so a challenge used at one is refused at the others, and
// a poll or resend finds its transaction wherever it lands), and issued certificates
// are in PostgreSQL with -postgres, or files in the shared state directory (issued/).
func stores(ctx context.Context, c *config, log *slog.Logger) (*storeSet, error) {
	set := &storeSet{}
	var closers []func() error
	set.close = func() error {
		for _, f := range closers {
			f()
		}
		return nil
	}
	switch {
	case c.Postgres != "":
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		s, err := pgstore.Open(ctx, c.Postgres, nil)
		if err != nil {
			return nil, fmt.Errorf("-postgres: %w", err)
		}
		closers = append(closers, func() error { s.Close(); return nil })
		set.replay, set.transactions, set.certificates, set.revocation, set.revocations = s, s, s, s, s
	case c.Redis == "":
		s, migrated, err := boltstore.OpenDir(c.State, &boltstore.Options{Logger: log})
		if err != nil {
			return nil, err
		}
		if migrated > 0 {
			log.Info("migrated issued certificates into the store", "count", migrated)
		}
		set.replay, set.transactions, set.certificates, set.revocation, set.revocations = s, s, s, s, s
		set.close = s.Close
		return set, nil
	default:
		issued, err := demo.OpenCertificateDir(filepath.Join(c.State, "issued"))
		if err != nil {
			return nil, err
		}
		set.certificates = issued
	}
	if c.Redis == "" {
		return set, nil
	}
	// Fail fast while Redis is down: a device then gets its FAILURE in about a second
	// instead of waiting out go-redis's default retries, and the gateway recovers within
	// a second of Redis coming back.
	client := redis.NewClient(&redis.Options{Addr: c.Redis, DialTimeout: time.Second,
		ReadTimeout: time.Second, WriteTimeout: time.Second, MaxRetries: 1, DialerRetries: 1})
	closers = append(closers, client.Close)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		set.close()
		return nil, fmt.Errorf("-redis %s: %w", c.Redis, err)
	}
	store := &redisstore.Store{Client: client, Prefix: c.RedisPrefix}
	set.replay, set.transactions = store, store
	return set, nil
}

// storeSet is the stores a gateway uses, and how to close them.
type storeSet struct {
	replay       challenge.ReplayStore
	transactions crp.TransactionStore
	certificates crp.CertificateStore
	revocation   crp.RevocationChecker // nil: only the CA's own
	// revocations are what the CRL lists (the store's, so that they survive a restart
	// and show at every gateway sharing it); nil: the CA's own, in memory.
	revocations crp.RevocationStore
	close       func() error
}

// newGateway assembles the gateway from the packages: CA and RA, the MDM's keys, a
// challenge verifier for this gateway, the directory and device registry, the profiles
// and template, the registration point, and the SCEP server in front of it.
func newGateway(ctx context.Context, c *config, log *slog.Logger) (*gateway, error) {
	ca, ra, err := demo.LoadOrCreatePKI(c.State, "scepkit example")
	if err != nil {
		return nil, err
	}
	keys, err := loadKeysRetrying(ctx, c.JWKS, log)
	if err != nil {
		return nil, err
	}
	dir, err := demo.LoadDirectory(c.Directory)
	if err != nil {
		return nil, err
	}
	root := ca.Certificate
	if len(ca.Chain) > 0 {
		root = ca.Chain[len(ca.Chain)-1]
	}
	profiles, err := demo.Profiles(c.URL, root)
	if err != nil {
		return nil, err
	}
	st, err := stores(ctx, c, log)
	if err != nil {
		return nil, err
	}
	crl := func(ctx context.Context) ([]byte, error) { return ca.CRL(ctx, time.Now().Add(24*time.Hour)) }
	if st.revocations != nil {
		// The store's revocations, signed again only when one is added here or the CRL
		// is an hour old: a flood of GetCRL costs no signature each.
		crl = (&crp.CRLPublisher{CA: ca, Revocations: st.revocations, Logger: log}).CRL
	}
	rp := &crp.RegistrationPoint{
		Verifier: &challenge.Verifier{Keys: keys, Issuer: c.MDMIssuer, Audience: c.Identity,
			Replay: st.replay},
		Transactions: st.transactions,
		Users:        &dir.MemoryDirectory, Devices: &dir.MemoryRegistry, Profiles: profiles,
		Templates: demo.Templates(), Issuer: crp.CAIssuer{CA: ca},
		Notifier:     &notifier{url: c.Notify, log: log, client: &http.Client{Timeout: 5 * time.Second}},
		Certificates: st.certificates,
		Revocation: crp.RevocationCheckerFunc(func(ctx context.Context, cert *x509.Certificate) (bool, error) {
			if ca.IsRevoked(cert.SerialNumber) {
				return true, nil
			}
			if st.revocation == nil {
				return false, nil
			}
			return st.revocation.IsRevoked(ctx, cert)
		}),
		CRL:    crl,
		Logger: log,
	}
	if err := rp.Validate(); err != nil {
		st.close()
		return nil, err
	}
	srv := crp.NewServer(rp, ra) // the CA chain, the RA's keys, rp deciding
	srv.AllowLegacy, srv.Logger = c.Legacy, log
	if c.CAEnvelopes {
		srv.CAKey = ca.Signer
	}
	if err := srv.Validate(); err != nil {
		st.close()
		return nil, err
	}
	return &gateway{ca: ca, keys: keys, rp: rp, server: srv, log: log, stores: st}, nil
}

// loadKeysRetrying reads the JWKS, retrying a URL for a few seconds: the MDM may be
// starting at the same time.
func loadKeysRetrying(ctx context.Context, src string, log *slog.Logger) (*challenge.KeySet, error) {
	var err error
	for i := 0; i < 20; i++ {
		var ks *challenge.KeySet
		if ks, err = demo.LoadKeySet(ctx, src); err == nil {
			return ks, nil
		}
		if !errors.Is(err, demo.ErrUnreachable) {
			return nil, err // a file, or an answer that waiting will not change
		}
		log.Warn("MDM keys not available yet", "jwks", src, "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return nil, err
}

// refreshKeys re-reads the JWKS every interval; on failure the keys in use stay.
func (g *gateway) refreshKeys(ctx context.Context, src string, every time.Duration) {
	mdmfile.FollowKeySet(ctx, src, g.keys, every, g.log)
}

// notifier reports outcomes to the MDM, as Intune's connector reports to Intune.
type notifier struct {
	url    string
	log    *slog.Logger
	client *http.Client
}

// report is the JSON the MDM's /notify receives.
type report struct {
	TransactionID string    `json:"transaction_id"`
	Outcome       string    `json:"outcome"`
	User          string    `json:"user,omitempty"`
	Device        string    `json:"device,omitempty"`
	Profile       string    `json:"profile,omitempty"`
	Phase         string    `json:"phase,omitempty"`
	Reason        string    `json:"reason,omitempty"`
	Serial        string    `json:"serial,omitempty"`
	Thumbprint    string    `json:"thumbprint,omitempty"`
	NotAfter      time.Time `json:"not_after,omitzero"`
	Template      string    `json:"template,omitempty"`
	Renewal       bool      `json:"renewal,omitempty"`
	Challenge     string    `json:"challenge_fingerprint,omitempty"`
}

// Notify implements crp.Notifier.
func (n *notifier) Notify(ctx context.Context, x *crp.Notification) error {
	r := report{TransactionID: x.TransactionID, Outcome: string(x.Outcome), User: x.UserID, Device: x.DeviceID,
		Profile: x.ProfileID, Thumbprint: x.Thumbprint, NotAfter: x.NotAfter, Template: x.Template,
		Renewal: x.Renewal, Challenge: x.ChallengeFingerprint}
	if x.Outcome == crp.OutcomeFailed {
		r.Phase, r.Reason = x.Phase.String(), string(x.Reason)
	}
	if x.Serial != nil {
		r.Serial = fmt.Sprintf("%x", x.Serial)
	}
	n.log.InfoContext(ctx, "outcome", "transactionID", r.TransactionID, "outcome", r.Outcome, "user", r.User,
		"device", r.Device, "serial", r.Serial, "phase", r.Phase, "reason", r.Reason, "renewal", r.Renewal)
	if n.url == "" {
		return nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.client.Do(req)
	if err != nil {
		n.log.WarnContext(ctx, "MDM notification failed", "transactionID", r.TransactionID, "err", err)
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		n.log.WarnContext(ctx, "MDM notification refused", "transactionID", r.TransactionID, "status", resp.Status)
		return fmt.Errorf("MDM answered %s", resp.Status)
	}
	return nil
}
