// Command quickstart runs scepkit's whole flow in one process on 127.0.0.1, over real
// HTTP: a CA and RA, an MDM with a demo directory, a SCEP gateway with the Certificate
// Registration Point, and a device that enrolls with scep.Client. It prints every step
// (profile, challenge, gateway, phases 1-3, template, CA, notification), the issued
// certificate, and two refusals (a replayed challenge, a disabled user), and exits
// non-zero if any step did not happen as printed.
//
// gateway.go wires the gateway by hand from scepkit's packages (the MDM's challenge
// key, CA and RA, directory, profile, template, registration point, SCEP server): it
// is the code to copy. mdm.go is the MDM's profile endpoint, demo.go the story.
//
//	go run ./examples/quickstart
//
// With -serve ADDR it keeps the MDM and the gateway running until interrupted, so that
// any SCEP client can enroll:
//
//	go run ./examples/quickstart -serve 127.0.0.1:8080 -legacy
//	curl 'http://127.0.0.1:8080/mdm/profile?user=alice@example.com&device=my-laptop'
//	cd "$(mktemp -d)"  # scepclient leaves csr.pem (and self.pem after a failure) here and reuses them
//	scepclient -server-url http://127.0.0.1:8080/scep -challenge '<challenge>' \
//	    -cn alice@example.com -organization '' -ou '' -country '' \
//	    -ca-fingerprint '<ca_fingerprint>' -private-key key.pem -certificate cert.pem
//
// Endpoints in -serve mode:
//
//   - SCEP at /scep and at /certsrv/mscep/mscep.dll (where NDES clients look), each
//     also with /pkiclient.exe appended (as Intune-managed devices ask for it).
//   - GET /mdm/profile?user=U&device=D enrolls device D to user U in the demo registry
//     (U must be an active user of the demo directory, else 403; D must not be another
//     user's device, else 409) and answers JSON: scep_url, challenge, subject, sans,
//     key_size, ca_fingerprint (SHA-256 hex of the CA certificate) and expires (RFC
//     3339). The endpoint is unauthenticated, as a demo's is: it enrolls 200,000
//     devices at most (503 beyond).
//
// Flags: -legacy accepts single DES and SHA-1 (micromdm's scepclient needs it);
// -ca-envelopes (on by default) accepts requests encrypted to the CA certificate and
// signs the replies to them with the CA, as clients that pin the CA need; -ttl
// shortens the challenge lifetime (at most 1h); -state DIR keeps the CA, RA, MDM key,
// the devices /mdm/profile enrolled (mdm-devices.jsonl), and the gateway's store
// (state.db: used challenges, transactions, issued certificates, revocations) across
// restarts; -log text|json chooses the log format
// (logs go to stderr, one line per step with the transactionID).
package main

import (
	"context"
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
	"time"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/internal/headerbudget"
	"github.com/scepkit/scepkit/scep"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // -h: the usage is printed, and asking for it is no failure
		}
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

type config struct {
	serve  string
	legacy bool
	caEnv  bool
	ttl    time.Duration
	state  string
	log    string
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	fs.StringVar(&c.serve, "serve", "", "keep the MDM and the gateway running on `ADDR` (for example 127.0.0.1:8080)")
	fs.BoolVar(&c.legacy, "legacy", false, "accept single-DES requests and SHA-1 signatures from old clients")
	fs.BoolVar(&c.caEnv, "ca-envelopes", true, "accept requests encrypted to the CA certificate and answer them signed by the CA, as clients that pin the CA need (scep.Server.CAKey)")
	fs.DurationVar(&c.ttl, "ttl", time.Hour, "challenge lifetime (at most 1h)")
	fs.StringVar(&c.state, "state", "", "keep the CA, RA and issued certificates in `DIR` (default: a temporary directory)")
	fs.StringVar(&c.log, "log", "text", "log format: text or json")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.ttl <= 0 || c.ttl > challenge.MaxLifetime {
		return nil, fmt.Errorf("-ttl %v: a challenge lives at most %v (and more than zero)", c.ttl, challenge.MaxLifetime)
	}
	if c.log != "text" && c.log != "json" {
		return nil, fmt.Errorf("-log %q: want text or json", c.log)
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if c.serve == "" {
		level = slog.LevelError // the demo prints its own trace on stdout
	}
	var handler slog.Handler = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
	if c.log == "json" {
		handler = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})
	}
	logger := slog.New(handler)

	dir := c.state
	if dir == "" {
		if dir, err = os.MkdirTemp("", "scepkit-quickstart-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	addr := c.serve
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	base := "http://" + ln.Addr().String()
	gw, err := newGateway(dir, base+"/scep", c.legacy, c.caEnv, logger) // gateway.go: the wiring
	if err != nil {
		ln.Close()
		return err
	}
	defer gw.Close()
	// An expiring RA certificate takes a SCEP service down: say so at start.
	for _, cert := range gw.Server.ExpiringSoon(30 * 24 * time.Hour) {
		logger.Warn("certificate expires within 30 days", "subject", cert.Subject.String(), "notAfter", cert.NotAfter)
	}
	mdm := &mdm{gw: gw, base: base, ttl: c.ttl, log: logger}
	srv := newHTTPServer(gw, mdm)
	serveErr := make(chan error, 1)
	// Headers being received hold memory until they end: bounded for all connections.
	ln = new(headerbudget.Budget).Install(srv, ln)
	go func() { serveErr <- srv.Serve(ln) }()

	if c.serve == "" {
		err = runDemo(ctx, gw, mdm, stdout)
		shutdown(srv)
		return err
	}
	fmt.Fprintf(stdout, "scepkit quickstart serving on %s\n", base)
	fmt.Fprintf(stdout, "  SCEP:    %s/scep  (also %s/certsrv/mscep/mscep.dll)\n", base, base)
	fmt.Fprintf(stdout, "  profile: %s/mdm/profile?user=alice@example.com&device=my-laptop\n", base)
	fmt.Fprintf(stdout, "  state:   %s\n", dir)
	logger.Info("serving", "addr", base, "legacy", c.legacy, "caEnvelopes", c.caEnv, "ttl", c.ttl, "state", dir)
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	logger.Info("shutting down: finishing in-flight requests (for up to 10 s)")
	shutdown(srv)
	// The state closed before the last line, so that the log says how it ended.
	if err := gw.Close(); err != nil {
		logger.Error("closing the state failed; the next start replays the store's journal", "err", err)
		return err
	}
	logger.Info("stopped")
	return nil
}

// newHTTPServer mounts the gateway and the MDM, with timeouts that a slow client cannot
// hold open forever.
func newHTTPServer(gw *gateway, m *mdm) *http.Server {
	mux := http.NewServeMux()
	scep.Mount(mux, "/scep", gw.Server)
	scep.Mount(mux, "/certsrv/mscep/mscep.dll", gw.Server)
	mux.Handle("/mdm/profile", m)
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    128 << 10, // above the SCEP server's 64 KiB query limit, so it answers 414 itself
	}
}

func shutdown(srv *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		srv.Close()
	}
}
