// Command scepkit runs a SCEP gateway assembled from scepkit's packages: SCEP for
// devices (RFC 8894, at /scep and /certsrv/mscep/mscep.dll), the Certificate
// Registration Point's three phases against the MDM's challenges, the built-in CA
// (keys in files or in a PKCS#11 token), its CRL over HTTP, health and readiness
// endpoints, Prometheus metrics, and an admin API on its own HTTPS listener to decide
// pending requests, revoke certificates and look them up.
//
//	scepkit serve -config /etc/scepkit/scepkit.toml
//	scepkit admin -url https://127.0.0.1:8443 -ca admin-ca.pem -token-file token pending
//	scepkit rollover-prepare -config /etc/scepkit/scepkit.toml -dir /var/lib/scepkit/next
//	scepkit -h
//
// The configuration file is TOML; every setting can also be given in the environment
// (SCEPKIT_ and the setting's path in upper case, dots as underscores), which wins.
// "scepkit -h" lists them all. See docs/operations.md.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/scepkit/scepkit/internal/headerbudget"
	"go.opentelemetry.io/otel"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "scepkit:", err)
		os.Exit(exitStatus(err))
	}
}

// Exit statuses. dist/scepkit.service lists exitConfig in RestartPreventExitStatus:
// a start refused for its configuration fails the same way on every restart, and a
// refused PIN retried every few seconds locks the token's user PIN.
const (
	exitFailure = 1 // anything else, a restart may mend it: a store or token not there yet, a port busy
	exitConfig  = 2 // the configuration is refused: a setting, a file it names, a key, a PIN, the command line
)

// configError is an error of the configuration that is not about one setting: the
// file, the environment, the command line.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// exitStatus is the exit status for err: exitConfig for a refused configuration (a
// badSetting unless it may be retried, a configError), else exitFailure.
func exitStatus(err error) int {
	if bs := (*badSetting)(nil); errors.As(err, &bs) {
		if bs.Retry {
			return exitFailure
		}
		return exitConfig
	}
	if ce := (*configError)(nil); errors.As(err, &ce) {
		return exitConfig
	}
	return exitFailure
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  scepkit serve [-config FILE]     run the gateway
  scepkit admin [flags] COMMAND    call the admin API (scepkit admin -h)
  scepkit rollover-prepare -dir DIR [-ra-only] [-generate-keys]
                                   write a next CA and RA for rollover.dir

settings (in the TOML file, or in the environment variable in brackets, which wins):
`)
	printSettings(w)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return &configError{errors.New("a command is required: serve or admin")}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return flag.ErrHelp
	case "serve":
		return serve(ctx, args[1:], stdout, stderr)
	case "admin":
		return adminCommand(ctx, args[1:], stdout, stderr)
	case "rollover-prepare":
		return rolloverPrepare(ctx, args[1:], stdout, stderr)
	}
	usage(stderr)
	return &configError{fmt.Errorf("unknown command %q", args[0])}
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", os.Getenv("SCEPKIT_CONFIG"), "TOML configuration `FILE` (also SCEPKIT_CONFIG)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: scepkit serve [-config FILE]")
		fs.PrintDefaults()
		fmt.Fprintln(stderr, "\nsettings:")
		printSettings(stderr)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &configError{err}
	}
	otherEnv, err := unknownEnv(os.Environ())
	if err != nil {
		return &configError{err}
	}
	c, err := loadConfig(*path, os.LookupEnv)
	if err != nil {
		return err
	}
	var h slog.Handler = slog.NewTextHandler(stderr, nil)
	if c.Log == "json" {
		h = slog.NewJSONHandler(stderr, nil)
	}
	log := slog.New(h)
	// SIGHUP, which operators and renewal hooks send to mean "reload": scepkit reads
	// its settings at start only, so it says so and goes on (the signal's default
	// action ended the process at once, dropping requests in flight, without a word).
	hup, served := make(chan os.Signal, 1), make(chan struct{})
	signal.Notify(hup, syscall.SIGHUP)
	defer func() { signal.Stop(hup); close(served) }()
	go func() {
		for {
			select {
			case <-hup:
				log.Warn("SIGHUP ignored: scepkit serve reads its settings at start only; restart it to apply a change")
			case <-served:
				return
			}
		}
	}()
	// OpenTelemetry's export errors in the gateway's log, in its format (by default
	// they went to stderr as plain text, breaking JSON log pipelines).
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("opentelemetry export", "err", err)
	}))
	if len(otherEnv) > 0 {
		log.Warn("SCEPKIT_ variables that are no setting of scepkit serve, ignored", "names", otherEnv)
	}

	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return unavailableSetting("listen", err) // busy, perhaps for a moment
	}
	defer ln.Close()
	if c.PublicURL == "" {
		scheme := "http"
		if c.TLSCert != "" {
			scheme = "https"
		}
		c.PublicURL = scheme + "://" + ln.Addr().String()
	}
	// What can refuse the start is read before newGateway, which makes the CA on a
	// first start: a start refused for a missing file or a busy port leaves no CA.
	public := newHTTPServer(nil, log)
	if c.TLSCert != "" {
		cert, err := loadKeyPair("", c.TLSCert, c.TLSKey)
		if err != nil {
			return err
		}
		public.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	servers := []*http.Server{public}
	listeners := []net.Listener{ln}
	var (
		adminTC *tls.Config
		token   []byte
		aln     net.Listener
	)
	if c.Admin.Listen != "" {
		if adminTC, err = adminTLS(c); err != nil {
			return err
		}
		if token, err = adminToken(c); err != nil {
			return err
		}
		if aln, err = net.Listen("tcp", c.Admin.Listen); err != nil {
			return unavailableSetting("admin.listen", err)
		}
		defer aln.Close()
		if a, ok := aln.Addr().(*net.TCPAddr); ok && a.IP.IsUnspecified() {
			log.Warn("the admin API listens on every interface: prefer a loopback or management address",
				"admin.listen", c.Admin.Listen)
		}
	}
	g, err := newGateway(ctx, c, log)
	if err != nil {
		return err
	}
	defer g.close()
	var running inflight
	public.Handler = running.track(g.publicHandler())

	var adminAddr string
	if aln != nil {
		issuing := [][]*x509.Certificate{append([]*x509.Certificate{g.ca.Certificate}, g.ca.Chain...)}
		if len(g.server.NextCACerts) > 0 {
			issuing = append(issuing, g.server.NextCACerts)
		}
		if g.next != nil { // the CA a rollover switches to issues device certificates too
			issuing = append(issuing, append([]*x509.Certificate{g.next.Certificate}, g.next.Chain...))
		}
		if err := checkClientCA(adminTC.ClientCAs, issuing); err != nil {
			return err
		}
		as := newHTTPServer(running.track(newAdmin(g, adminTC.ClientCAs, token).handler()), log)
		as.TLSConfig = adminTC
		servers, listeners = append(servers, as), append(listeners, aln)
		adminAddr = aln.Addr().String()
	}
	go g.warnExpiring(ctx)
	go g.announceRollover(ctx)
	go g.refreshKeys(ctx)
	if g.intunePoller != nil {
		go g.intunePoller.Run(ctx)
	}

	errc := make(chan error, len(servers))
	var headers headerbudget.Budget // one bound for the headers being received on both
	for i, s := range servers {
		listeners[i] = headers.Install(s, listeners[i])
		go func(s *http.Server, ln net.Listener) {
			if s.TLSConfig != nil {
				errc <- s.ServeTLS(ln, "", "")
			} else {
				errc <- s.Serve(ln)
			}
		}(s, listeners[i])
	}
	fmt.Fprintf(stdout, "scepkit serving SCEP on %s/scep\n", c.PublicURL)
	if adminAddr != "" {
		fmt.Fprintf(stdout, "scepkit admin API on https://%s\n", adminAddr)
	}
	log.Info("serving", "listen", ln.Addr().String(), "public_url", c.PublicURL, "admin", adminAddr,
		"identity", c.Identity, "pkcs11", c.PKCS11.Module != "", "redis", c.Redis.Addr)

	var serveErr error
	select {
	case serveErr = <-errc:
	case <-ctx.Done():
	}
	// Graceful shutdown: stop accepting, finish the requests in flight (a device's
	// enrollment is not cut in half), then close the stores and the token.
	log.Info("shutting down: finishing requests in flight")
	if n := stopServers(servers, &running); n > 0 {
		log.Warn("closing the stores while requests are still running: they fail", "requests", n)
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	// The stores closed before "stopped", so that the log's last line says how the
	// gateway ended, and the exit status too.
	g.close()
	if g.closeErr != nil {
		return fmt.Errorf("stopped, but the store did not close cleanly (the next start replays its journal): %w", g.closeErr)
	}
	log.Info("stopped")
	return nil
}

// shutdownGrace is how long a stop waits for the requests in flight to end;
// drainAfterClose is how long it then waits, once their connections are closed (their
// contexts end), for the handlers still running to wind down (release a challenge,
// write a record) before the stores are closed under them; work that takes longer (a
// record write or an Intune notification that retries, a call into a stalled token)
// is cut off then, and counted in the log. Together they end within the unit's
// TimeoutStopSec (30 s).
var (
	shutdownGrace   = 20 * time.Second
	drainAfterClose = 8 * time.Second
)

// inflight counts the requests the listeners' handlers are running.
type inflight struct{ n atomic.Int64 }

// track is h, counted in f while it runs.
func (f *inflight) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.n.Add(1)
		defer f.n.Add(-1)
		h.ServeHTTP(w, r)
	})
}

// stopServers stops the servers: it stops accepting, waits up to shutdownGrace for
// the requests in flight, closes the connections of those still running, then waits
// up to drainAfterClose for their handlers (net/http does not wait for a handler once
// its connection is closed). It returns how many handlers are still running.
func stopServers(servers []*http.Server, running *inflight) int64 {
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil {
			s.Close()
		}
	}
	deadline := time.Now().Add(drainAfterClose)
	for running.n.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return running.n.Load()
}

// writeTimeout bounds the time from a request's headers to the end of its answer.
// answerWithin bounds the work behind a SCEP answer; once a certificate is signed,
// recording it and notifying (Intune's success notification) take up to 30 s more
// (crp's own bound), and the answer still leaves before writeTimeout.
const (
	writeTimeout = 2 * time.Minute
	answerWithin = 80 * time.Second
)

func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    128 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// envOr returns the environment variable's value, or def.
func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}
