// Command intune runs a SCEP gateway that serves Microsoft Intune's SCEP profiles
// (third-party CA integration): Intune's challenges are judged by Intune's validation
// service, issued certificates are reported to Intune, and revocations Intune asks for
// are carried out by the built-in CA. scepkit's own challenges work on the same
// gateway.
//
// Against the local emulator (no tenant needed), the whole Intune path in one run:
//
//	go run ./examples/intune -emulate
//
// prints an accepted enrollment and what Intune was told, a refusal the emulator
// decides from the CSR (a subject other than the one the challenge was minted for),
// and a revocation. Add -serve ADDR to keep the gateway and the emulator running; it
// prints an emulated challenge minted for CN=DEMO-DEVICE (-device) and an RSA 2048
// key, for any SCEP client (scepclient needs -legacy).
//
// For a real tenant (an Entra app registration with the "SCEP challenge validation"
// permission of Microsoft Intune API and Graph's Application.Read.All):
//
//	INTUNE_TENANT=contoso.onmicrosoft.com INTUNE_CLIENT_ID=<app id> \
//	INTUNE_CLIENT_SECRET=<secret> go run ./examples/intune -serve :8080 -state ./ca
//
// or a certificate credential instead of the secret: -cert app.pem -key app-key.pem
// (INTUNE_CERT_FILE, INTUNE_KEY_FILE). The secret is read from the environment only,
// never from a flag (flags show in process lists). Sovereign clouds: -authority,
// -graph and -resource. SCEP is served at /scep and /certsrv/mscep/mscep.dll.
//
// It refuses to start, listing what is missing, when a setting is absent.
package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/crp/intune"
	"github.com/scepkit/scepkit/crp/intune/intunetest"
	"github.com/scepkit/scepkit/internal/headerbudget"
	"github.com/scepkit/scepkit/profile"
	"github.com/scepkit/scepkit/scep"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // -h: the usage is printed, and asking for it is no failure
		}
		fmt.Fprintln(os.Stderr, "intune:", err)
		var u usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError is a configuration the program refuses to start with.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

type config struct {
	emulate, legacy                 bool
	serve, state, callerInfo        string
	device                          string
	tenant, clientID, secret        string
	certFile, keyFile               string
	authority, graph, resource, log string
	revocationEvery                 time.Duration
}

func parse(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("intune", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&c.emulate, "emulate", false, "run against the local Intune emulator (no tenant needed)")
	fs.StringVar(&c.serve, "serve", "", "serve SCEP on this address until interrupted (required with a real tenant)")
	fs.StringVar(&c.device, "device", "DEMO-DEVICE", "with -emulate -serve: the subject CN the printed challenge is minted for")
	fs.BoolVar(&c.legacy, "legacy", false, "accept single DES and SHA-1 (micromdm's scepclient needs it)")
	fs.StringVar(&c.state, "state", "", "directory keeping the CA, RA and state.db (challenge claims, transactions, issued certificates) across restarts (empty: new ones each run, in memory)")
	fs.StringVar(&c.callerInfo, "caller-info", "scepkit-intune-example/1.0", "this CA's name and version, as Intune logs it")
	fs.StringVar(&c.tenant, "tenant", getenv("INTUNE_TENANT"), "Entra tenant id or domain (INTUNE_TENANT)")
	fs.StringVar(&c.clientID, "client-id", getenv("INTUNE_CLIENT_ID"), "app registration's client id (INTUNE_CLIENT_ID)")
	fs.StringVar(&c.certFile, "cert", getenv("INTUNE_CERT_FILE"), "PEM certificate credential of the app (INTUNE_CERT_FILE)")
	fs.StringVar(&c.keyFile, "key", getenv("INTUNE_KEY_FILE"), "PEM RSA private key of -cert (INTUNE_KEY_FILE; Entra takes RSA only)")
	fs.StringVar(&c.authority, "authority", getenv("INTUNE_AUTHORITY"), "sign-in authority (default "+intune.DefaultAuthority+")")
	fs.StringVar(&c.graph, "graph", getenv("INTUNE_GRAPH_URL"), "Microsoft Graph root (default "+intune.DefaultGraphURL+")")
	fs.StringVar(&c.resource, "resource", getenv("INTUNE_RESOURCE"), "Intune resource (default "+intune.DefaultResource+")")
	fs.DurationVar(&c.revocationEvery, "revocation-interval", 5*time.Minute, "pause between revocation polls")
	fs.StringVar(&c.log, "log", "text", "log format on stderr: text, json or off")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err.Error()}
	}
	c.secret = getenv("INTUNE_CLIENT_SECRET")
	if c.emulate {
		return c, nil
	}
	var missing []string
	if c.tenant == "" {
		missing = append(missing, "-tenant (or INTUNE_TENANT)")
	}
	if c.clientID == "" {
		missing = append(missing, "-client-id (or INTUNE_CLIENT_ID)")
	}
	switch {
	case c.secret != "" && (c.certFile != "" || c.keyFile != ""):
		return nil, usageError{"set INTUNE_CLIENT_SECRET or -cert and -key, not both"}
	case c.secret == "" && (c.certFile == "") != (c.keyFile == ""):
		missing = append(missing, "both -cert and -key (or INTUNE_CERT_FILE and INTUNE_KEY_FILE)")
	case c.secret == "" && c.certFile == "":
		missing = append(missing, "a credential: INTUNE_CLIENT_SECRET, or -cert and -key")
	}
	if c.serve == "" {
		missing = append(missing, "-serve ADDR")
	}
	if len(missing) > 0 {
		return nil, usageError{"missing settings for a real tenant: " + strings.Join(missing, "; ") +
			" (or run -emulate to try the whole path against the local emulator)"}
	}
	return c, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	c, err := parse(args, getenv, stderr)
	if err != nil {
		return err
	}
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	if c.emulate && c.serve == "" {
		opts.Level = slog.LevelError // the emulated run tells its own story on stdout
	}
	var logger *slog.Logger
	switch c.log {
	case "json":
		logger = slog.New(slog.NewJSONHandler(stderr, opts))
	case "off":
		logger = slog.New(slog.DiscardHandler)
	default:
		logger = slog.New(slog.NewTextHandler(stderr, opts))
	}

	var client *intune.Client
	var emu *intunetest.Server
	if c.emulate {
		emu = intunetest.NewServer()
		defer emu.Close()
		client = emu.Client(c.callerInfo)
		fmt.Fprintf(stdout, "Intune emulator at %s (tenant %s)\n", emu.URL, emu.Tenant)
	} else {
		client = &intune.Client{Tenant: c.tenant, ClientID: c.clientID, ClientSecret: c.secret, CallerInfo: c.callerInfo,
			Authority: c.authority, GraphURL: c.graph, Resource: c.resource}
		if c.certFile != "" {
			if client.Certificate, client.Key, err = loadCredential(c.certFile, c.keyFile); err != nil {
				return usageError{err.Error()}
			}
		}
	}
	client.Logger = logger
	if err := client.Validate(); err != nil {
		return usageError{err.Error()}
	}

	env, err := gateway(c, client, logger)
	if err != nil {
		return err
	}
	defer env.Close()
	// Intune's revocations are recorded in the store (state.db with -state) and put
	// back into the CA's CRL at startup.
	revoker := &intune.CARevoker{CA: env.CA, Certificates: env.Store, Revocations: env.Store}
	restoreCtx, restored := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	err = revoker.Restore(restoreCtx)
	restored()
	if err != nil {
		return err
	}
	poller := &intune.Poller{Client: client, Revoker: revoker, Interval: c.revocationEvery, Logger: logger}

	if c.emulate && c.serve == "" {
		return demo(ctx, env, emu, poller, stdout)
	}
	return serve(ctx, c, env, emu, poller, stdout)
}

// gateway assembles a scepkit gateway (crptest: built-in CA and RA, demo directory
// for scepkit's own challenges) and wires Intune into its registration point.
func gateway(c *config, client *intune.Client, logger *slog.Logger) (*crptest.Env, error) {
	env, err := crptest.New(crptest.Options{Dir: c.state, Legacy: c.legacy, Logger: logger})
	if err != nil {
		return nil, err
	}
	env.Templates["intune-device"] = &catemplate.Template{Name: "intune-device", Validity: 365 * 24 * time.Hour,
		Backdate: 5 * time.Minute, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, MinKeySize: 2048,
		KeyTypes:           []profile.KeyType{profile.RSA, profile.ECDSAP256, profile.ECDSAP384},
		SubjectFromRequest: true, SANsFromRequest: true, Published: true} // Intune checked the CSR
	rp := env.RP
	rp.Templates = &catemplate.ProfileResolver{ByProfile: map[string]string{"intune": "intune-device"},
		Fallback: rp.Templates, Templates: env.Templates}
	rp.Validators = []crp.ChallengeValidator{&intune.Validator{Client: client, Profile: &profile.Profile{ID: "intune"}}}
	rp.Notifier = &intune.Notifier{Client: client, Others: rp.Notifier}
	rp.RequireNotification = true
	if err := rp.Validate(); err != nil {
		env.Close()
		return nil, err
	}
	return env, nil
}

func mux(env *crptest.Env) *http.ServeMux {
	m := http.NewServeMux()
	scep.Mount(m, "/scep", env.Server)
	scep.Mount(m, "/certsrv/mscep/mscep.dll", env.Server)
	return m
}

// demo enrolls one device with an accepted challenge and one with a refused one,
// then revokes the certificate as Intune asks, printing each step.
func demo(ctx context.Context, env *crptest.Env, emu *intunetest.Server, poller *intune.Poller, out io.Writer) error {
	ts := httptest.NewServer(mux(env))
	defer ts.Close()
	sc := &scep.Client{URL: ts.URL + "/scep", CAFingerprint: env.CAFingerprint()}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	request := func(cn, ch string) ([]byte, error) {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
		if err != nil {
			return nil, err
		}
		return scep.AddChallengePassword(der, ch, key, nil)
	}

	// Intune mints each challenge for what the SCEP profile resolved to on one device;
	// the emulator remembers it and judges the CSR against it.
	minted := func(cn string) string {
		return emu.Mint(intunetest.Profile{Subject: pkix.Name{CommonName: cn}, KeySize: 2048, DeviceID: cn})
	}
	ch := minted("DEMO-DEVICE")
	fmt.Fprintf(out, "1. Intune minted an opaque challenge for CN=DEMO-DEVICE, RSA 2048 (%d characters)\n", len(ch))
	csr, err := request("DEMO-DEVICE", ch)
	if err != nil {
		return err
	}
	cert, err := sc.Enroll(ctx, csr, key)
	if err != nil {
		return fmt.Errorf("the accepted enrollment failed: %w", err)
	}
	fmt.Fprintf(out, "2. validateRequest: Success; certificate issued: subject %s, serial %s\n",
		cert.Subject, intune.SerialHex(cert.SerialNumber))
	s := emu.Successes()
	if len(s) != 1 || s[0].Notification.CertificateThumbprint != intune.Thumbprint(cert) {
		return errors.New("the emulator did not record the success notification")
	}
	fmt.Fprintf(out, "3. successNotification: thumbprint %s, serial %s, expires %s\n", s[0].Notification.CertificateThumbprint,
		s[0].Notification.CertificateSerialNumber, s[0].Notification.CertificateExpirationDateUtc)

	// A device given a challenge for DEMO-DEVICE-2 asks for CN=evil-admin instead: the
	// emulator compares the CSR with what the challenge was minted for and refuses.
	issued := env.Issuer.Count()
	refusals := newRefusals(env)
	csr, err = request("evil-admin", minted("DEMO-DEVICE-2"))
	if err != nil {
		return err
	}
	_, err = sc.Enroll(ctx, csr, key)
	var fe *scep.FailError
	if !errors.As(err, &fe) || env.Issuer.Count() != issued {
		return fmt.Errorf("the mismatched enrollment was not refused: %v", err)
	}
	se := refusals.last()
	if se == nil {
		return errors.New("no refusal from validateRequest was recorded")
	}
	fmt.Fprintf(out, "4. CSR for CN=evil-admin with DEMO-DEVICE-2's challenge: validateRequest answered %s (%s); the device got FAILURE %s, no certificate\n",
		se.Code, se.Description, fe.Info)

	emu.QueueRevocation(intune.SerialHex(cert.SerialNumber), "")
	r, err := poller.Poll(ctx)
	if err != nil {
		return err
	}
	if recorded, err := env.Store.IsRevoked(ctx, cert); !env.CA.IsRevoked(cert.SerialNumber) || !recorded || err != nil {
		return fmt.Errorf("the certificate was not revoked and recorded (%v)", err)
	}
	fmt.Fprintf(out, "5. revocation: %d request downloaded, %d revoked, result uploaded (%d pending)\n",
		r.Downloaded, r.Revoked, len(emu.PendingRevocations()))
	if v := emu.Violations(); len(v) > 0 {
		return fmt.Errorf("protocol violations: %v", v)
	}
	fmt.Fprintln(out, "The whole Intune path ran against the emulator.")
	return nil
}

// refusals keeps the last refusal of Intune's validation service, read from the
// registration point's notifications (the crp.Error of a failed transaction).
type refusals struct{ errs []error }

func newRefusals(env *crptest.Env) *refusals {
	r := &refusals{}
	next := env.RP.Notifier
	env.RP.Notifier = crp.NotifierFunc(func(ctx context.Context, n *crp.Notification) error {
		if n.Outcome == crp.OutcomeFailed {
			r.errs = append(r.errs, n.Err)
		}
		return next.Notify(ctx, n)
	})
	return r
}

func (r *refusals) last() *intune.ServiceError {
	var se *intune.ServiceError
	if len(r.errs) == 0 || !errors.As(r.errs[len(r.errs)-1], &se) {
		return nil
	}
	return se
}

func serve(ctx context.Context, c *config, env *crptest.Env, emu *intunetest.Server, poller *intune.Poller, out io.Writer) error {
	ln, err := net.Listen("tcp", c.serve)
	if err != nil {
		return err
	}
	// The same timeouts as the other examples: without ReadTimeout, a client that
	// sends its headers and then nothing holds its connection forever.
	srv := &http.Server{Handler: mux(env), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 128 << 10}
	fmt.Fprintf(out, "SCEP gateway at http://%s/scep (and /certsrv/mscep/mscep.dll)\n", ln.Addr())
	if emu != nil {
		fmt.Fprintf(out, "emulated Intune challenge for CN=%s, RSA 2048 (valid 1h; another subject or key size is refused):\n%s\n",
			c.device, emu.Mint(intunetest.Profile{Subject: pkix.Name{CommonName: c.device}, KeySize: 2048, DeviceID: c.device}))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	polled := make(chan error, 1)
	go func() { polled <- poller.Run(ctx) }()
	served := make(chan error, 1)
	ln = new(headerbudget.Budget).Install(srv, ln) // headers being received: bounded
	go func() { served <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err = <-served:
	}
	cancel()
	shut, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	_ = srv.Shutdown(shut)
	<-polled
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func loadCredential(certFile, keyFile string) (*x509.Certificate, crypto.Signer, error) {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, err
	}
	blk, _ := pem.Decode(cb)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("%s: no PEM CERTIFICATE", certFile)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, nil, err
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, err
	}
	if blk, _ = pem.Decode(kb); blk == nil {
		return nil, nil, fmt.Errorf("%s: no PEM key", keyFile)
	}
	var k any
	switch blk.Type {
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("%s: not a signing key", keyFile)
	}
	return cert, signer, nil
}
