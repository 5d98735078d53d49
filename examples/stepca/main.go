// Command stepca is a webhook server for step-ca's SCEP provisioner: step-ca keeps
// serving SCEP and signing, and asks scepkit's Certificate Registration Point whether
// to issue (SCEPCHALLENGE) and tells it what it issued (NOTIFYING). Devices then get
// certificates only with a one-hour challenge from the MDM, for their own user and
// device, matching the MDM's profile; the certificate's subject, SANs, key usages and
// validity are scepkit's decision (the step-ca template of -print-template writes
// them). docs/stepca.md takes a step-ca installation from `step ca init` to enrolled
// devices.
//
//	go run ./examples/mdm -gateway scepkit-stepca -directory examples/directory.json \
//	    -ca-cert $(step path)/certs/root_ca.crt -scep-url https://ca.example:9000/scep/scepkit &
//	SCEPKIT_CHALLENGE_SECRET=... SCEPKIT_NOTIFY_SECRET=... SCEPKIT_WEBHOOK_TOKEN=... \
//	go run ./examples/stepca -jwks http://127.0.0.1:8081/jwks -directory examples/directory.json \
//	    -step-root $(step path)/certs/root_ca.crt -step-ca-cert $(step path)/certs/intermediate_ca.crt \
//	    -tls-cert webhook.crt -tls-key webhook.key
//
// The secrets are the ones step-ca printed when the webhooks were added (base64, as
// printed); SCEPKIT_WEBHOOK_TOKEN is the bearer token they were added with, if any.
// step-ca's own TLS client certificate, verified against -step-root, is required on
// every call. Flags: -listen, -identity (the audience of the MDM's challenges),
// -mdm-issuer, -jwks (URL or file), -directory, -step-root, -step-ca-cert (the
// certificate that signs, step-ca's intermediate), -tls-cert and -tls-key (the
// server's certificate, which step-ca must trust: one from step-ca itself will do),
// -state (state.db: challenge claims, transaction records and the inventory of what
// step-ca issued, package boltstore: a challenge is used once, also across a restart
// or a crash), -print-template, -log text|json.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/scepkit/scepkit/boltstore"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/stepca"
	"github.com/scepkit/scepkit/examples/internal/demo"
	"github.com/scepkit/scepkit/internal/pemfile"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "stepca:", err)
		os.Exit(1)
	}
}

type config struct {
	listen, identity, mdmIssuer, jwks, directory, stepRoot, stepCACert, tlsCert, tlsKey, log, state string
	printTemplate                                                                                   bool
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("stepca", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8443", "listen on `ADDR` (HTTPS: step-ca calls webhooks over https only)")
	fs.StringVar(&c.identity, "identity", "scepkit-stepca", "this registration point's identity: the audience of its challenges (the MDM's -gateway)")
	fs.StringVar(&c.mdmIssuer, "mdm-issuer", "scepkit-mdm", "the MDM's issuer `name`")
	fs.StringVar(&c.jwks, "jwks", "", "the MDM's challenge keys: JWKS `URL or FILE`; required")
	fs.StringVar(&c.directory, "directory", "", "users and devices JSON `FILE`; required")
	fs.StringVar(&c.stepRoot, "step-root", "", "step-ca's root certificate `FILE` (PEM): its TLS client certificate must chain to it; required")
	fs.StringVar(&c.stepCACert, "step-ca-cert", "", "the certificate step-ca signs with, its intermediate `FILE` (PEM); required")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "this server's certificate `FILE` (PEM, with its chain); required")
	fs.StringVar(&c.tlsKey, "tls-key", "", "this server's key `FILE` (PEM); required")
	fs.StringVar(&c.state, "state", "scepkit-stepca-state", "challenge claims, transaction records and issued certificates `DIR`")
	fs.BoolVar(&c.printTemplate, "print-template", false, "print the step-ca X.509 template for the SCEP provisioner and exit")
	fs.StringVar(&c.log, "log", "text", "log format: text or json")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	case c.printTemplate:
	case c.jwks == "" || c.directory == "" || c.stepRoot == "" || c.stepCACert == "" || c.tlsCert == "" || c.tlsKey == "":
		return nil, errors.New("-jwks, -directory, -step-root, -step-ca-cert, -tls-cert and -tls-key are required")
	}
	return c, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if c.printTemplate {
		_, err := io.WriteString(stdout, stepca.Template)
		return err
	}
	log, err := demo.NewLogger(c.log, stderr)
	if err != nil {
		return err
	}
	h, store, err := newHandler(ctx, c, getenv, log)
	if err != nil {
		return err
	}
	defer store.Close()
	roots, err := pemfile.ReadCertificates(c.stepRoot)
	if err != nil {
		return err
	}
	clientCAs := x509.NewCertPool()
	for _, r := range roots {
		clientCAs.AddCert(r)
	}
	pair, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return err
	}
	tc := &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: clientCAs,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	mux := http.NewServeMux()
	mux.Handle("POST /challenge", h)
	mux.Handle("POST /notify", h)
	base := "https://" + ln.Addr().String()
	fmt.Fprintf(stdout, "scepkit stepca serving on %s\n", base)
	fmt.Fprintf(stdout, "  SCEPCHALLENGE webhook: %s/challenge\n  NOTIFYING webhook:     %s/notify\n", base, base)
	log.Info("serving", "addr", base, "identity", c.identity, "mdm", c.mdmIssuer)
	return demo.ServeTLS(ctx, ln, tc, mux, log)
}

// newHandler assembles the registration point (the MDM's keys and a verifier for this
// identity, the directory and device registry, the MDM's profiles, the template) and
// the webhook handler around it, and opens the store it remembers in (the caller
// closes it). Nothing here issues: step-ca does.
func newHandler(ctx context.Context, c *config, getenv func(string) string, log *slog.Logger) (_ *stepca.Handler, _ *boltstore.Store, err error) {
	secret := func(name string) ([]byte, error) {
		b, err := base64.StdEncoding.DecodeString(getenv(name))
		if err != nil || len(b) < 16 {
			return nil, fmt.Errorf("%s must hold the webhook secret step-ca printed (base64)", name)
		}
		return b, nil
	}
	chSecret, err := secret("SCEPKIT_CHALLENGE_SECRET")
	if err != nil {
		return nil, nil, err
	}
	notifySecret, err := secret("SCEPKIT_NOTIFY_SECRET")
	if err != nil {
		return nil, nil, err
	}
	issuing, err := pemfile.ReadCertificates(c.stepCACert)
	if err != nil {
		return nil, nil, err
	}
	roots, err := pemfile.ReadCertificates(c.stepRoot)
	if err != nil {
		return nil, nil, err
	}
	keys, err := demo.LoadKeySet(ctx, c.jwks)
	if err != nil {
		return nil, nil, err
	}
	dir, err := demo.LoadDirectory(c.directory)
	if err != nil {
		return nil, nil, err
	}
	// The profiles the MDM hands out: the server URL does not matter here, only what
	// the CSR must carry.
	profiles, err := demo.Profiles("https://step-ca.invalid/scep", roots[0])
	if err != nil {
		return nil, nil, err
	}
	// Challenge claims and transaction records survive restarts and crashes in one
	// file: kept in memory, a challenge used before a restart would pass again after it.
	store, migrated, err := boltstore.OpenDir(c.state, &boltstore.Options{Logger: log})
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			store.Close()
		}
	}()
	if migrated > 0 {
		log.Info("migrated issued certificates into the store", "count", migrated)
	}
	rp := &crp.RegistrationPoint{
		Verifier: &challenge.Verifier{Keys: keys, Issuer: c.mdmIssuer, Audience: c.identity,
			Replay: store},
		Transactions: store, Certificates: store,
		Users: &dir.MemoryDirectory, Devices: &dir.MemoryRegistry, Profiles: profiles,
		Templates: demo.Templates(), CACert: issuing[0],
		// The webhook judges challenges only: step-ca's SCEP renewals never reach
		// this registration point, so it renews nothing (and needs no revocation
		// checker).
		Renewal: crp.RenewalPolicy{Disabled: true},
		// Decide and Complete never call the Issuer: step-ca signs. Enroll would.
		Issuer: crp.IssuerFunc(func(context.Context, *crp.IssueRequest) (*x509.Certificate, error) {
			return nil, fmt.Errorf("%w: step-ca issues, not this process", crp.ErrRefused)
		}),
		Notifier: crp.NotifierFunc(func(ctx context.Context, n *crp.Notification) error {
			log.InfoContext(ctx, "outcome", "transactionID", n.TransactionID, "outcome", n.Outcome,
				"user", n.UserID, "device", n.DeviceID, "serial", fmt.Sprintf("%x", n.Serial), "reason", n.Reason)
			return nil
		}),
		Logger: log,
	}
	if err := rp.Validate(); err != nil {
		return nil, nil, err
	}
	return &stepca.Handler{RP: rp, ChallengeSecret: chSecret, NotifySecret: notifySecret,
		BearerToken: getenv("SCEPKIT_WEBHOOK_TOKEN"), RequireClientCert: true, Logger: log}, store, nil
}
