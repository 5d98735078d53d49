package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/miekg/pkcs11"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/scepkit/scepkit/boltstore"
	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/intune"
	"github.com/scepkit/scepkit/internal/atomicfile"
	"github.com/scepkit/scepkit/internal/filelock"
	"github.com/scepkit/scepkit/internal/mdmfile"
	"github.com/scepkit/scepkit/internal/pemfile"
	"github.com/scepkit/scepkit/pgstore"
	"github.com/scepkit/scepkit/pkcs11key"
	"github.com/scepkit/scepkit/profile"
	"github.com/scepkit/scepkit/redisstore"
	"github.com/scepkit/scepkit/scep"
)

// gateway is the assembled gateway.
type gateway struct {
	cfg      *config
	log      *slog.Logger
	ca       *catemplate.CA
	ra       *catemplate.RA
	store    crp.Store // the durable store: boltstore, or pgstore with postgres.dsn
	closeDB  func() error
	pending  crp.PendingLister // nil when the transactions are in a store that cannot list them
	rp       *crp.RegistrationPoint
	server   *scep.Server
	crl      *crp.CRLPublisher
	next     *catemplate.CA    // the CA of rollover.dir; nil without one
	nextRA   *catemplate.RA    // the RA of rollover.dir; nil without a rollover
	nextCRL  *crp.CRLPublisher // next's CRL; nil without next
	switchAt time.Time         // rollover.at, parsed once; zero without a rollover
	redis    *redis.Client     // nil without redis.addr
	token    *pkcs11key.Token  // nil without pkcs11.module
	meter    *sdkmetric.MeterProvider
	tracer   *sdktrace.TracerProvider // nil without otlp.traces_url
	registry *prometheus.Registry

	intune        *intune.Client // nil without intune.tenant
	intunePoller  *intune.Poller // Intune's revocation requests; nil without intune.tenant
	intuneMu      sync.Mutex
	intuneChecked time.Time // when /readyz last asked Intune
	intuneErr     error

	readiness readiness // the last outcome of /readyz

	keyCheckMu sync.Mutex
	keyChecked time.Time // when the CA and RA keys last signed for /readyz
	keyErr     error
	// When the store last made a write durable for /readyz (storeWrites).
	storeWritten time.Time

	keys *challenge.KeySet // the MDM's keys, which refreshKeys keeps in step with jwks

	closeOnce sync.Once
	closeErr  error // the store's, when close could not close it cleanly
}

// close releases what the gateway holds (the tracer's and meter's exports, Redis, the
// store, the token), once: later calls do nothing. A store that did not close cleanly
// is logged, and kept in closeErr.
func (g *gateway) close() {
	g.closeOnce.Do(g.release)
}

func (g *gateway) release() {
	if g.tracer != nil {
		// Flushes the spans still batched.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		g.tracer.Shutdown(ctx)
		cancel()
	}
	if g.meter != nil {
		g.meter.Shutdown(context.Background())
	}
	if g.redis != nil {
		g.redis.Close()
	}
	if g.closeDB != nil {
		if err := g.closeDB(); err != nil {
			// A last checkpoint that failed (a full disk, a file system gone
			// read-only): what the journal holds is replayed at the next start, but
			// the operator must know the store did not close cleanly.
			g.log.Error("closing the store failed; the next start replays its journal", "err", err)
			g.closeErr = err
		}
	}
	if g.token != nil {
		g.token.Close()
	}
}

func newGateway(ctx context.Context, c *config, log *slog.Logger) (_ *gateway, err error) {
	g := &gateway{cfg: c, log: log}
	defer func() {
		if err != nil {
			g.close() // what was opened before the error: token, stores, meter
		}
	}()
	g.registry = prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(g.registry))
	if err != nil {
		return nil, err
	}
	g.meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	if c.OTLP.TracesURL != "" {
		te, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(c.OTLP.TracesURL))
		if err != nil {
			return nil, settingError("otlp.traces_url", err)
		}
		g.tracer = sdktrace.NewTracerProvider(sdktrace.WithBatcher(te), sdktrace.WithResource(resource.NewSchemaless(
			attribute.String("service.name", "scepkit"), attribute.String("service.instance.id", c.Identity))))
	}
	// Whoever may write there may put a CA and RA of his own (a key beside its
	// certificate) in place of the gateway's.
	if err := othersMayWrite(c.StateDir); err != nil {
		return nil, settingError("state_dir", err)
	}
	// The MDM's keys, the directory, the next CA certificate and the Intune
	// credential before the CA, which a first start makes: a start refused for one of
	// them leaves no CA behind.
	var tenant *intune.Client
	if c.Intune.Tenant != "" {
		if tenant, err = intuneClient(g); err != nil {
			return nil, err
		}
	}
	if !mdmfile.IsURL(c.JWKS) {
		if err := othersMayWrite(c.JWKS); err != nil {
			return nil, settingError("jwks", err)
		}
	}
	if err := othersMayWrite(c.Directory); err != nil {
		return nil, settingError("directory", err)
	}
	if d := c.Rollover.Dir; d != "" {
		for _, p := range []string{d, filepath.Join(d, catemplate.CACertFile), filepath.Join(d, catemplate.RASigningCertFile)} {
			if err := othersMayWrite(p); err != nil {
				return nil, settingError("rollover.dir", err)
			}
		}
	}
	// The next CA announced through GetNextCACert, which devices are told to trust
	// next: never from a file others may write.
	var nextCACerts []*x509.Certificate
	if c.NextCACert != "" {
		if err := othersMayWrite(c.NextCACert); err != nil {
			return nil, settingError("next_ca_cert", err)
		}
		if nextCACerts, err = pemfile.ReadCertificates(c.NextCACert); err != nil {
			return nil, settingError("next_ca_cert", err)
		}
		if !nextCACerts[0].IsCA || time.Now().After(nextCACerts[0].NotAfter) {
			return nil, settingError("next_ca_cert", errors.New("not a valid CA certificate"))
		}
	}
	keys, err := mdmfile.LoadKeySet(ctx, c.JWKS)
	if err != nil {
		if errors.Is(err, mdmfile.ErrUnreachable) {
			return nil, unavailableSetting("jwks", err) // the MDM may be starting
		}
		return nil, settingError("jwks", err)
	}
	g.keys = keys
	dir, err := mdmfile.LoadDirectory(c.Directory)
	if err != nil {
		return nil, settingError("directory", err)
	}
	if c.Postgres.DSN != "" {
		// Before the CA, which a first start makes: a wrong DSN leaves no CA behind
		// (a gateway meant to share the first one's would have made its own).
		pg, err := pgstore.Open(ctx, c.Postgres.DSN, nil)
		switch {
		case errors.Is(err, pgstore.ErrConnString), errors.Is(err, pgstore.ErrNewerSchema):
			// A restart fails the same way: the string is wrong, or a newer release
			// migrated the database (this one must not write it).
			return nil, settingError("postgres.dsn", err)
		case err != nil:
			return nil, unavailableSetting("postgres.dsn", err) // the database may not be up yet
		}
		g.store, g.closeDB = pg, func() error { pg.Close(); return nil }
	}
	if g.ca, g.ra, err = g.loadPKI(ctx); err != nil {
		return nil, err
	}
	if c.PKCS11.Module == "" { // the token's keys are checked as they are loaded
		if err := softKeysSign("state_dir", g.ca, g.ra); err != nil {
			return nil, err
		}
	}
	base := strings.TrimSuffix(c.PublicURL, "/")
	g.ca.CRLDistributionPoints = []string{base + "/crl"}
	// The caIssuers URL names this CA for good: /ca.cer names the CA in force, which
	// after a rollover is another (RFC 5280 section 4.2.2.1: the issuer of this
	// certificate).
	g.ca.IssuingCertificateURL = []string{base + "/ca/" + caID(g.ca)}
	var rollover *crp.Rollover
	if c.Rollover.Dir != "" {
		if g.next, g.nextRA, err = g.loadRollover(); err != nil {
			return nil, err
		}
		g.switchAt, _ = c.rolloverAt() // validated
		rollover = &crp.Rollover{At: g.switchAt, CA: g.next, RA: g.nextRA}
		if g.next != nil {
			// Certificates of each CA name that CA's own CRL: relying parties check a
			// certificate of the previous CA against its CRL after the switch too.
			id := caID(g.next)
			g.next.CRLDistributionPoints = []string{base + "/crl/" + id}
			g.next.IssuingCertificateURL = []string{base + "/ca/" + id}
		}
	}

	profiles, err := g.profileSource(base + "/scep")
	if err != nil {
		return nil, err
	}
	if c.Postgres.DSN == "" {
		// Whoever may write the store or its journal may un-revoke a certificate or
		// un-claim a challenge (the journal is replayed at the next start).
		for _, name := range []string{boltstore.FileName, boltstore.FileName + "-journal"} {
			path := filepath.Join(c.StateDir, name)
			if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o022 != 0 {
				return nil, settingError("state_dir", fmt.Errorf("%s may be written by other users (mode %v): chmod go-w it",
					path, fi.Mode().Perm()))
			}
		}
		bs, migrated, err := boltstore.OpenDir(c.StateDir, &boltstore.Options{Logger: log})
		switch {
		case errors.Is(err, boltstore.ErrNeedsOperator):
			// Damaged or incomplete state: an operator must look (the error says how);
			// starting again changes nothing.
			return nil, settingError("state_dir", err)
		case err != nil:
			return nil, unavailableSetting("state_dir", err) // held by a gateway still stopping, say
		}
		if migrated > 0 {
			log.Info("migrated issued certificates into the store", "count", migrated)
		}
		g.store, g.closeDB = bs, bs.Close
	}
	var replay challenge.ReplayStore = g.store
	var transactions crp.TransactionStore = g.store
	if c.Redis.Addr != "" {
		g.redis = redis.NewClient(&redis.Options{Addr: c.Redis.Addr, DialTimeout: time.Second,
			ReadTimeout: time.Second, WriteTimeout: time.Second, MaxRetries: 1})
		rs := &redisstore.Store{Client: g.redis, Prefix: c.Redis.Prefix}
		replay, transactions = rs, rs
	}
	g.pending, _ = transactions.(crp.PendingLister)
	g.crl = &crp.CRLPublisher{CA: g.ca, Revocations: g.store,
		Validity: time.Duration(c.CRL.Validity), Refresh: time.Duration(c.CRL.Refresh), Logger: log}
	if g.next != nil {
		g.nextCRL = &crp.CRLPublisher{CA: g.next, Revocations: g.store,
			Validity: time.Duration(c.CRL.Validity), Refresh: time.Duration(c.CRL.Refresh), Logger: log}
		rollover.CRL = g.nextCRL.CRL
	}
	tmpl := &catemplate.Template{Name: "scepkit-user", Validity: time.Duration(c.CertValidity), Backdate: 5 * time.Minute,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, MinKeySize: 2048,
		KeyTypes:  []profile.KeyType{profile.RSA, profile.ECDSAP256, profile.ECDSAP384},
		Published: true, RequiresApproval: c.RequireApproval}
	// The lines about each request, at log_level or above.
	level, _ := c.requestLevel() // validate has checked it
	reqLog := slog.New(levelFloor{log.Handler(), level})
	g.rp = &crp.RegistrationPoint{
		Verifier:  &challenge.Verifier{Keys: keys, Issuer: c.MDMIssuer, Audience: c.Identity, Replay: replay},
		Decisions: replay,
		Users:     &dir.MemoryDirectory, Devices: &dir.MemoryRegistry, Profiles: profiles,
		Templates: &catemplate.NDESResolver{SignatureTemplate: tmpl.Name, EncryptionTemplate: tmpl.Name,
			GeneralPurposeTemplate: tmpl.Name, Templates: catemplate.MapStore{tmpl.Name: tmpl}},
		Issuer: crp.CAIssuer{CA: g.ca}, Transactions: transactions, Certificates: g.store,
		Revocation: g.store, CRL: g.crl.CRL, Logger: reqLog, MeterProvider: g.meter, Rollover: rollover,
	}
	if g.tracer != nil {
		g.rp.TracerProvider = g.tracer
	}
	if tenant != nil {
		if err := g.wireIntune(tmpl, tenant); err != nil {
			return nil, err
		}
	}
	if err := g.rp.Validate(); err != nil {
		return nil, err
	}
	g.server = crp.NewServer(g.rp, g.ra)
	g.server.NextCACerts = nextCACerts
	g.server.AllowLegacy, g.server.Logger, g.server.MeterProvider = c.Legacy, reqLog, g.meter
	if c.CAEnvelopes {
		g.server.CAKey = g.ca.Signer
		if err := caDecrypts("the CA key", g.ca); err != nil {
			return nil, err
		}
		// From the switch on, clients that pin the next CA encrypt to it.
		if g.next != nil && g.server.Rollover != nil {
			if err := caDecrypts("the next CA key", g.next); err != nil {
				return nil, err
			}
			g.server.Rollover.CAKey = g.next.Signer
		}
	}
	if g.tracer != nil {
		g.server.TracerProvider = g.tracer
	}
	if err := g.server.Validate(); err != nil {
		return nil, err
	}
	return g, nil
}

// caID names a CA in the URLs of its CRL and certificate: its subject key identifier
// in hex (or, for a certificate without one, the first 20 bytes of the SHA-256 of its
// public key).
func caID(ca *catemplate.CA) string {
	if id := ca.Certificate.SubjectKeyId; len(id) > 0 {
		return hex.EncodeToString(id)
	}
	sum := sha256.Sum256(ca.Certificate.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:20])
}

// announceRollover logs the switch to the next CA and RA when its time comes.
func (g *gateway) announceRollover(ctx context.Context) {
	if g.nextRA == nil {
		return
	}
	at := g.switchAt
	if d := time.Until(at); d > 0 {
		g.log.Info("rollover prepared: the next CA and RA are announced through GetNextCACert", "at", at)
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	ca := g.ca
	if g.next != nil {
		ca = g.next
	}
	g.log.Info("rollover: serving the next CA and RA", "at", at, "ca", ca.Certificate.Subject.String(),
		"ca_serial", ca.Certificate.SerialNumber.Text(16), "ra_serial", g.nextRA.SigningCertificate.SerialNumber.Text(16))
}

// crlFor is the CRL publisher of the CA that issued cert.
func (g *gateway) crlFor(cert *x509.Certificate) *crp.CRLPublisher {
	if g.nextCRL != nil && cert.CheckSignatureFrom(g.next.Certificate) == nil {
		return g.nextCRL
	}
	return g.crl
}

// loadRollover loads the next CA (nil when rollover.dir has no CA certificate: only
// the RA rolls over) and the next RA, and checks that the RA's certificates are
// issued by the CA that will be current at the switch.
func (g *gateway) loadRollover() (*catemplate.CA, *catemplate.RA, error) {
	c := g.cfg
	dir := c.Rollover.Dir
	bad := func(err error) error {
		if se := (*badSetting)(nil); errors.As(err, &se) {
			return err // a key's label, already named
		}
		return settingError("rollover.dir", err)
	}
	var ca *catemplate.CA
	var ra *catemplate.RA
	caPath := filepath.Join(dir, catemplate.CACertFile)
	if c.PKCS11.Module == "" {
		if err := privateKeyFiles(dir); err != nil {
			return nil, nil, bad(err)
		}
		var err error
		if ca, err = catemplate.LoadCA(dir); errors.Is(err, os.ErrNotExist) {
			ca, err = nil, nil
		}
		if err != nil {
			return nil, nil, bad(err)
		}
		if ra, err = catemplate.LoadRA(dir); err != nil {
			return nil, nil, bad(err)
		}
		if err := softKeysSign("rollover.dir", ca, ra); err != nil {
			return nil, nil, err
		}
	} else {
		if _, err := os.Stat(caPath); err == nil {
			if ca, err = tokenCA(g.token, "rollover.ca_key", c.Rollover.CAKey, caPath); err != nil {
				return nil, nil, bad(err)
			}
		}
		var err error
		if ra, err = tokenRA(g.token, "rollover", c.Rollover.RASignKey, c.Rollover.RAEncryptKey, dir); err != nil {
			return nil, nil, bad(err)
		}
	}
	if ca != nil && !ca.Certificate.IsCA {
		return nil, nil, bad(errors.New(catemplate.CACertFile + " is not a CA certificate"))
	}
	issuer := g.ca.Certificate
	if ca != nil {
		issuer = ca.Certificate
	}
	for _, cert := range ra.Certificates() {
		if err := cert.CheckSignatureFrom(issuer); err != nil {
			return nil, nil, bad(fmt.Errorf("RA certificate %q is not issued by %q, the CA at the switch: %w",
				cert.Subject.String(), issuer.Subject.String(), err))
		}
	}
	return ca, ra, nil
}

// tokenKey finds the token's key labelled label, named in errors by its setting.
func tokenKey(tok *pkcs11key.Token, setting, label string) (*pkcs11key.Key, error) {
	k, err := tok.Key(label)
	if err != nil {
		return nil, tokenKeyError(setting, err)
	}
	return k, nil
}

// tokenKeyError is the error of a failed lookup of the key setting names: a token
// that failed for want of itself may be back at the next start.
func tokenKeyError(setting string, err error) error {
	if transientTokenError(err) {
		return unavailableSetting(setting, err)
	}
	return settingError(setting, err)
}

// tokenCA is the CA whose key is the token's key labelled label (named in errors by
// its setting) and whose certificate, then chain, is the file at path.
func tokenCA(tok *pkcs11key.Token, setting, label, path string) (*catemplate.CA, error) {
	key, err := tokenKey(tok, setting, label)
	if err != nil {
		return nil, err
	}
	certs, err := readCertFile(path, setting, label, key)
	if err != nil {
		return nil, err
	}
	if err := checkSigns(setting, key, certs[0].PublicKey, caSigns); err != nil {
		return nil, err
	}
	return &catemplate.CA{Certificate: certs[0], Signer: key, Chain: certs[1:]}, nil
}

// tokenRA is the RA whose keys are the token's keys labelled signLabel and encLabel
// (the settings section's ra_sign_key and ra_encrypt_key) and whose certificates are
// in dir.
func tokenRA(tok *pkcs11key.Token, section, signLabel, encLabel, dir string) (*catemplate.RA, error) {
	signKey, err := tokenKey(tok, section+".ra_sign_key", signLabel)
	if err != nil {
		return nil, err
	}
	encKey, err := tokenKey(tok, section+".ra_encrypt_key", encLabel)
	if err != nil {
		return nil, err
	}
	if err := rsaEncryptKey(section+".ra_encrypt_key", encKey); err != nil {
		return nil, err
	}
	signCerts, err := readCertFile(filepath.Join(dir, catemplate.RASigningCertFile), section+".ra_sign_key", signLabel, signKey)
	if err != nil {
		return nil, err
	}
	encCerts, err := readCertFile(filepath.Join(dir, catemplate.RAEncryptCertFile), section+".ra_encrypt_key", encLabel, encKey)
	if err != nil {
		return nil, err
	}
	if err := checkSigns(section+".ra_sign_key", signKey, signCerts[0].PublicKey, raSigns); err != nil {
		return nil, err
	}
	return &catemplate.RA{SigningCertificate: signCerts[0], Signer: signKey, EncryptionCertificate: encCerts[0], Decrypter: encKey}, nil
}

// tokenTimeout bounds each signature and decryption in the token, and how long
// closing the token waits for those in flight: a token that stops answering fails
// the requests (and /readyz) instead of holding them past their deadline. A variable
// for the tests.
var tokenTimeout = 10 * time.Second

// openToken logs in to the token of [pkcs11].
func openToken(c *config) (*pkcs11key.Token, error) {
	pin, err := readSecretFile(c.PKCS11.PINFile)
	if err != nil {
		return nil, settingError("pkcs11.pin_file", err)
	}
	tok, err := pkcs11key.Open(pkcs11key.Config{Module: c.PKCS11.Module, TokenLabel: c.PKCS11.TokenLabel,
		PIN: strings.TrimSpace(string(pin)), Timeout: tokenTimeout})
	if err != nil {
		return nil, tokenOpenError(err)
	}
	return tok, nil
}

// tokenOpenError names the setting a failure of pkcs11key.Open is about: the PIN's
// when the token refuses it, the label's when the module has no such token, else the
// module's.
func tokenOpenError(err error) error {
	if errors.Is(err, pkcs11key.ErrNoCgo) {
		return settingError("pkcs11.module", err) // no restart mends it: another build does
	}
	if code, ok := tokenCode(err); ok {
		switch code {
		case pkcs11.CKR_PIN_INCORRECT, pkcs11.CKR_PIN_LEN_RANGE, pkcs11.CKR_PIN_INVALID:
			return settingError("pkcs11.pin_file", fmt.Errorf("the token refused the user PIN (tokens lock it after a few "+
				"wrong ones: correct the PIN before starting again): %w", err))
		case pkcs11.CKR_PIN_LOCKED:
			return settingError("pkcs11.pin_file", fmt.Errorf("the token's user PIN is locked: the token's security "+
				"officer (SO) must unlock it (set a new user PIN with the SO PIN) before the gateway can log in: %w", err))
		case pkcs11.CKR_PIN_EXPIRED:
			return settingError("pkcs11.pin_file", fmt.Errorf("the token's user PIN has expired: set a new one "+
				"(with the token's tools) and put it in the file: %w", err))
		}
	}
	// No PIN was tried: restarts until the token (or the module's daemon) is there
	// lock nothing.
	if errors.Is(err, pkcs11key.ErrTokenNotFound) {
		return unavailableSetting("pkcs11.token_label", err)
	}
	return unavailableSetting("pkcs11.module", err)
}

// transientTokenError reports whether err is a token's failure that may pass without
// a change of configuration (the device removed or in error, a session lost, no
// answer within tokenTimeout), as opposed to a key that cannot make the signature
// (CKR_MECHANISM_INVALID, say).
func transientTokenError(err error) bool {
	if errors.Is(err, pkcs11key.ErrTimeout) {
		return true
	}
	code, ok := tokenCode(err)
	if !ok {
		return false
	}
	switch code {
	case pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_DEVICE_MEMORY, pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_TOKEN_NOT_PRESENT,
		pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_COUNT,
		pkcs11.CKR_FUNCTION_FAILED, pkcs11.CKR_GENERAL_ERROR, pkcs11.CKR_HOST_MEMORY:
		return true
	}
	return false
}

// writeCerts writes the certificates of ca (unless nil; with its chain) and ra into
// dir, as state_dir holds them when the keys are in a token.
func writeCerts(dir string, ca *catemplate.CA, ra *catemplate.RA) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	files := map[string][]*x509.Certificate{catemplate.RASigningCertFile: {ra.SigningCertificate},
		catemplate.RAEncryptCertFile: {ra.EncryptionCertificate}}
	if ca != nil {
		files[catemplate.CACertFile] = append([]*x509.Certificate{ca.Certificate}, ca.Chain...)
	}
	for name, certs := range files {
		if err := atomicfile.Write(filepath.Join(dir, name), pemfile.Encode(certs), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// loadPKI loads the CA and RA from the state directory, or creates them on first
// start. With pkcs11 the keys are the token's (found by label) and only the
// certificates are files.
func (g *gateway) loadPKI(ctx context.Context) (*catemplate.CA, *catemplate.RA, error) {
	c := g.cfg
	// A state directory that holds the certificates is loaded without a lock, so that
	// it may be read-only (keys mounted from a secret store, with PostgreSQL for the
	// state); should that fail, the locked path below says why.
	complete := true
	for _, name := range []string{catemplate.CACertFile, catemplate.RASigningCertFile, catemplate.RAEncryptCertFile} {
		_, err := os.Stat(filepath.Join(c.StateDir, name))
		switch {
		case errors.Is(err, os.ErrNotExist):
			complete = false
		case err != nil:
			// There, but not for this user (a directory's mode, an ownership changed
			// under it): not a missing CA, which the operator might make anew.
			return nil, nil, settingError("state_dir", fmt.Errorf("the CA and RA cannot be read: %w", err))
		}
	}
	var fastErr error
	if complete && c.PKCS11.Module == "" {
		ca, ra, err := loadSoftPKI(c.StateDir)
		if err == nil {
			return ca, ra, nil
		}
		fastErr = err
	}
	// Gateways started together on a new state directory take turns: the first makes
	// the CA, the others load it (each making its own would leave all but the last
	// one's key overwritten, and their certificates chaining to a lost key).
	if err := os.MkdirAll(c.StateDir, 0o700); err != nil {
		return nil, nil, settingError("state_dir", err)
	}
	lctx, cancel := context.WithTimeout(ctx, pkiLockWait)
	defer cancel()
	lock, err := filelock.Acquire(lctx, filepath.Join(c.StateDir, pkiLockFile))
	if err != nil {
		if fastErr != nil {
			return nil, nil, fastErr
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return nil, nil, unavailableSetting("state_dir", fmt.Errorf("waiting for another gateway to make the CA: %w", err))
		}
		// Not a wait: the lock file cannot be made (a read-only or missing state_dir).
		return nil, nil, settingError("state_dir", fmt.Errorf("the CA and RA are missing and cannot be made here: %w", err))
	}
	defer lock.Unlock()
	if c.PKCS11.Module == "" {
		ca, ra, err := loadSoftPKI(c.StateDir)
		if err == nil {
			return ca, ra, nil
		}
		if !errors.Is(err, os.ErrNotExist) || ca != nil {
			// A CA or RA file missing beside the others, or unreadable: no restart
			// brings it back. (An error that names its setting already stays so.)
			if errors.As(err, new(*badSetting)) {
				return nil, nil, err
			}
			return nil, nil, settingError("state_dir", err)
		}
		if err := noPriorState(c.StateDir, err); err != nil {
			return nil, nil, err
		}
		ca, ra, err = newPKI(c.caName(), "", nil, nil, nil)
		if err != nil {
			return nil, nil, err
		}
		if err := catemplate.SaveCA(c.StateDir, ca); err != nil {
			return nil, nil, err
		}
		if err := catemplate.SaveRA(c.StateDir, ra); err != nil {
			return nil, nil, err
		}
		g.log.Info("created a CA and an RA", "state_dir", c.StateDir)
		return ca, ra, nil
	}
	tok, err := openToken(c)
	if err != nil {
		return nil, nil, err
	}
	g.token = tok
	ca, err := tokenCA(tok, "pkcs11.ca_key", c.PKCS11.CAKey, filepath.Join(c.StateDir, catemplate.CACertFile))
	if errors.Is(err, os.ErrNotExist) {
		if err := noPriorState(c.StateDir, err); err != nil {
			return nil, nil, err
		}
		caKey, err := tokenKey(tok, "pkcs11.ca_key", c.PKCS11.CAKey)
		if err != nil {
			return nil, nil, err
		}
		signKey, err := tokenKey(tok, "pkcs11.ra_sign_key", c.PKCS11.RASignKey)
		if err != nil {
			return nil, nil, err
		}
		encKey, err := tokenKey(tok, "pkcs11.ra_encrypt_key", c.PKCS11.RAEncryptKey)
		if err != nil {
			return nil, nil, err
		}
		// Before the certificates are made: a key that cannot sign would otherwise
		// leave them behind, and every later start would refuse them.
		if err := checkSigns("pkcs11.ca_key", caKey, caKey.Public(), caSigns); err != nil {
			return nil, nil, err
		}
		if err := checkSigns("pkcs11.ra_sign_key", signKey, signKey.Public(), raSigns); err != nil {
			return nil, nil, err
		}
		if err := rsaEncryptKey("pkcs11.ra_encrypt_key", encKey); err != nil {
			return nil, nil, err
		}
		ca, ra, err := newPKI(c.caName(), "", caKey, signKey, encKey)
		if err != nil {
			return nil, nil, err
		}
		if err := writeCerts(c.StateDir, ca, ra); err != nil {
			return nil, nil, err
		}
		g.log.Info("created a CA and an RA with keys in the token", "token", c.PKCS11.TokenLabel, "state_dir", c.StateDir)
		return ca, ra, nil
	}
	if err != nil {
		return nil, nil, err
	}
	ra, err := tokenRA(tok, "pkcs11", c.PKCS11.RASignKey, c.PKCS11.RAEncryptKey, c.StateDir)
	if err != nil {
		return nil, nil, err
	}
	return ca, ra, nil
}

// loadSoftPKI loads the CA and RA whose keys are files in dir. A missing CA gives an
// error wrapping os.ErrNotExist and a nil CA; a CA without its RA, an error (and the
// CA, so that the caller does not take it for a first start).
func loadSoftPKI(dir string) (*catemplate.CA, *catemplate.RA, error) {
	if err := privateKeyFiles(dir); err != nil {
		return nil, nil, settingError("state_dir", err)
	}
	ca, err := catemplate.LoadCA(dir)
	if err != nil {
		return nil, nil, err
	}
	ra, err := catemplate.LoadRA(dir)
	if err != nil {
		return ca, nil, fmt.Errorf("CA found in %s but not its RA: %w", dir, err)
	}
	return ca, ra, nil
}

// privateKeyFiles refuses the CA and RA key files in dir (those present) when other
// users may read or write them, as readSecretFile refuses a token: whoever reads the
// CA's key issues certificates in its name.
func privateKeyFiles(dir string) error {
	for _, name := range []string{catemplate.CAKeyFile, catemplate.RASigningKeyFile, catemplate.RAEncryptKeyFile} {
		path := filepath.Join(dir, name)
		fi, err := os.Stat(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := privateMode(path, fi); err != nil {
			return err
		}
	}
	return nil
}

// pkiLockFile, in the state directory, is locked while a gateway loads or makes the
// CA and RA; pkiLockWait bounds the wait for it.
const (
	pkiLockFile = "pki.lock"
	pkiLockWait = time.Minute
)

// priorStateFiles are what a state directory holds once a gateway has run in it.
var priorStateFiles = []string{catemplate.CACertFile, catemplate.CAKeyFile, catemplate.RASigningCertFile,
	catemplate.RASigningKeyFile, catemplate.RAEncryptCertFile, catemplate.RAEncryptKeyFile, boltstore.FileName, "issued", "issued.migrated"}

// noPriorState refuses to make a new CA in a state directory a gateway has run in:
// its CA's files are missing (missing says how), not absent. A new CA there would
// serve under the same name as the old one, with another key: the certificates it
// issued would no longer verify, and their CRL would be signed by a stranger.
func noPriorState(dir string, missing error) error {
	for _, name := range priorStateFiles {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			return settingError("state_dir", fmt.Errorf("state directory %s holds %s from an earlier run but not its CA (%w): restore the CA's files "+
				"(%s, %s, and the RA's), or start on an empty directory to make a new CA", dir, name, missing,
				catemplate.CACertFile, catemplate.CAKeyFile))
		}
	}
	return nil
}

// newPKI makes a CA named after name, with suffix appended to its CN, and its RA,
// with the given keys or fresh software keys.
func newPKI(name caName, suffix string, caKey, signKey crypto.Signer, encKey crypto.Decrypter) (*catemplate.CA, *catemplate.RA, error) {
	ca, err := catemplate.NewCA(catemplate.CAOptions{KeySize: 3072, Signer: caKey, Subject: name.subject("CA", suffix)})
	if err != nil {
		return nil, nil, err
	}
	raName, err := raNameFor(ca.Certificate.RawSubject, suffix) // as rollover-prepare -ra-only names one
	if err != nil {
		return nil, nil, err
	}
	ra, err := catemplate.NewRA(ca, catemplate.RAOptions{Subject: raName, SigningKey: signKey, EncryptionKey: encKey})
	if err != nil {
		return nil, nil, err
	}
	return ca, ra, nil
}

// signRole says what a key signs for the gateway, and so with which algorithm.
type signRole int

const (
	caSigns signRole = iota // certificates and CRLs (and GetNextCACert with ca_envelopes)
	raSigns                 // CertReps and GetNextCACert
)

// signAlgorithm is the algorithm the gateway signs with a key whose public key is
// pub: for the CA, the one crypto/x509 picks by default and catemplate's own
// encoder writes (SHA-256 with RSA PKCS#1 v1.5; ECDSA with the curve's hash;
// Ed25519); for the RA, the one scep signs CertReps with (RSA PKCS#1 v1.5 or ECDSA,
// SHA-256 unless the request's digest is SHA-384 or SHA-512, which the same
// mechanisms make). opts are what the Signer is handed. TestSignAlgorithmIsTheCAs
// holds the CA's choice to catemplate's.
func signAlgorithm(pub crypto.PublicKey, role signRole) (x509.SignatureAlgorithm, crypto.SignerOpts, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return x509.SHA256WithRSA, crypto.SHA256, nil
	case *ecdsa.PublicKey:
		if role == raSigns {
			return x509.ECDSAWithSHA256, crypto.SHA256, nil
		}
		switch k.Curve {
		case elliptic.P256():
			return x509.ECDSAWithSHA256, crypto.SHA256, nil
		case elliptic.P384():
			return x509.ECDSAWithSHA384, crypto.SHA384, nil
		case elliptic.P521():
			return x509.ECDSAWithSHA512, crypto.SHA512, nil
		}
	case ed25519.PublicKey:
		if role == caSigns {
			return x509.PureEd25519, crypto.Hash(0), nil
		}
	}
	if role == raSigns {
		return 0, nil, fmt.Errorf("a %T key cannot sign CertReps: the RA signs with RSA or ECDSA", pub)
	}
	return 0, nil, fmt.Errorf("a %T key cannot sign certificates here: the CA signs with RSA, ECDSA (P-256, P-384, P-521) or Ed25519", pub)
}

// checkSigns has key make one signature, with the algorithm and options the gateway
// signs with in role, and checks that pub (its certificate's public key) verifies
// it. A key the token will not sign with that way (one restricted to RSA-PSS, say,
// which answers CKR_MECHANISM_INVALID) would otherwise let the gateway start and
// fail every enrollment after issuing its certificate. Errors name setting.
func checkSigns(setting string, key crypto.Signer, pub crypto.PublicKey, role signRole) error {
	if err := signsAs(key, pub, role); err != nil {
		if transientTokenError(err) {
			return unavailableSetting(setting, err) // a restart may find the token back
		}
		return settingError(setting, err)
	}
	return nil
}

// signsAs has key, whose certificate holds pub, sign as the gateway will in role and
// checks the signature with pub.
func signsAs(key crypto.Signer, pub crypto.PublicKey, role signRole) error {
	alg, opts, err := signAlgorithm(pub, role)
	if err != nil {
		return err
	}
	msg := []byte("scepkit: does this key sign?")
	digest := msg
	if h := opts.HashFunc(); h != 0 {
		d := h.New()
		d.Write(msg)
		digest = d.Sum(nil)
	}
	sig, err := key.Sign(rand.Reader, digest, opts)
	if err != nil {
		return fmt.Errorf("the key cannot make the %v signatures the gateway needs: %w", alg, err)
	}
	if err := (&x509.Certificate{PublicKey: pub}).CheckSignature(alg, msg, sig); err != nil {
		return fmt.Errorf("the key's %v signature does not verify with its certificate's public key: %w", alg, err)
	}
	return nil
}

// softKeysSign checks that the CA's key (unless ca is nil) and the RA's signing key,
// files in the directory of setting, sign as the gateway will.
func softKeysSign(setting string, ca *catemplate.CA, ra *catemplate.RA) error {
	if ca != nil {
		if err := checkSigns(setting, ca.Signer, ca.Certificate.PublicKey, caSigns); err != nil {
			return err
		}
	}
	return checkSigns(setting, ra.Signer, ra.SigningCertificate.PublicKey, raSigns)
}

// readCertFile reads PEM certificates and checks that the first is key's, the
// token's key labelled label, which setting names.
func readCertFile(path, setting, label string, key crypto.Signer) ([]*x509.Certificate, error) {
	certs, err := pemfile.ReadCertificates(path)
	if err != nil {
		return nil, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(certs[0].PublicKey) {
		return nil, settingError(setting, fmt.Errorf("%s is not the certificate of the token's key labelled %q: "+
			"the label names another key than the one the certificate was made for", path, label))
	}
	return certs, nil
}

// rsaEncryptKey refuses an RA encryption key that is not RSA or that does not
// decrypt what is encrypted to its public key, naming its setting: clients encrypt
// their requests to it with RSA key transport (PKCS#1 v1.5), and a key the token will
// not decrypt with (one restricted to RSA-PSS signatures, say) would let the gateway
// start and answer every request badMessageCheck.
func rsaEncryptKey(setting string, key crypto.Signer) error {
	pub, ok := key.Public().(*rsa.PublicKey)
	if !ok {
		return settingError(setting, fmt.Errorf("the RA encryption key must be RSA (clients encrypt their requests to it), not %s", keyType(key.Public())))
	}
	dec, ok := key.(crypto.Decrypter)
	if !ok {
		return settingError(setting, fmt.Errorf("the RA encryption key (%T) cannot decrypt", key))
	}
	probe := []byte("scepkit: does this key decrypt?")
	if err := decryptsTo(pub, dec, probe); err != nil {
		err = fmt.Errorf("the key cannot decrypt what clients encrypt to it: %w", err)
		if transientTokenError(err) {
			return unavailableSetting(setting, err) // a restart may find the token back
		}
		return settingError(setting, err)
	}
	return nil
}

// caDecrypts refuses, for ca_envelopes, a CA key (which names) that cannot decrypt
// what clients encrypt to its certificate (RSA key transport, PKCS#1 v1.5): a key
// that is not RSA, or a token's RSA key the token will not decrypt with
// (CKA_DECRYPT false, say). A token's key is a crypto.Decrypter whatever its type,
// so only a decryption tells.
func caDecrypts(which string, ca *catemplate.CA) error {
	pub, isRSA := ca.Certificate.PublicKey.(*rsa.PublicKey)
	dec, ok := ca.Signer.(crypto.Decrypter)
	if !isRSA || !ok {
		return settingError("ca_envelopes", fmt.Errorf("%s cannot decrypt (an RSA key is needed)", which))
	}
	if err := decryptsTo(pub, dec, []byte("scepkit: does this CA key decrypt?")); err != nil {
		err = fmt.Errorf("%s cannot decrypt what clients encrypt to the CA certificate: %w", which, err)
		if transientTokenError(err) {
			return unavailableSetting("ca_envelopes", err) // a restart may find the token back
		}
		return settingError("ca_envelopes", err)
	}
	return nil
}

// keyType names a public key's type for an operator: "ECDSA", "Ed25519" or its Go type.
func keyType(pub crypto.PublicKey) string {
	switch pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA"
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", pub)
}

// profileSource is the built-in profiles, whose root CA is the root of the CA in force
// when they are looked up: the next CA's from a rollover's switch on, since the
// certificates issued from then on chain to it.
func (g *gateway) profileSource(scepURL string) (crp.ProfileSource, error) {
	cur, err := newProfiles(g.cfg, scepURL, g.ca)
	if err != nil || g.next == nil {
		return cur, err
	}
	next, err := newProfiles(g.cfg, scepURL, g.next)
	if err != nil {
		return nil, err
	}
	return crp.ProfileSourceFunc(func(ctx context.Context, id string) (*profile.Profile, error) {
		if g.server.RolledOver(g.now()) {
			return next.LookupProfile(ctx, id)
		}
		return cur.LookupProfile(ctx, id)
	}), nil
}

func newProfiles(c *config, scepURL string, ca *catemplate.CA) (crp.MemoryProfiles, error) {
	root := ca.Certificate
	if len(ca.Chain) > 0 {
		root = ca.Chain[len(ca.Chain)-1]
	}
	out := crp.MemoryProfiles{}
	for _, id := range c.Profiles {
		p := &profile.Profile{ID: id, Name: "scepkit " + id, CertificateType: profile.UserCertificate,
			Platform: profile.Windows, SubjectNameFormat: "CN={{UserPrincipalName}}",
			Validity: profileValidity(time.Duration(c.CertValidity)),
			KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, KeySize: 2048,
			ExtendedKeyUsages: []profile.EKU{profile.EKUClientAuth}, RenewalThresholdPercent: 20,
			ServerURLs: []string{scepURL}, RootCA: root}
		if err := p.Validate(); err != nil {
			return nil, settingError("profiles", err)
		}
		out[id] = p
	}
	return out, nil
}

// profileValidity is the validity the built-in profiles carry for cert_validity d:
// whole days, rounded up, so that the template's validity, which is d exactly, is the
// shorter and decides (issuance keeps the shorter of the two).
func profileValidity(d time.Duration) profile.ValidityPeriod {
	return profile.ValidityPeriod{Value: int((d + 24*time.Hour - 1) / (24 * time.Hour)), Unit: profile.Days}
}

// withDeadline gives each request's context a deadline d after it reaches h, so that
// the work behind an answer (Intune's validation and notification, with their
// retries, can take minutes) ends while the answer can still be written: past the
// server's WriteTimeout the device would get no answer at all, while a certificate
// might be signed. Work cut short is transient: the device gets a FAILURE and its
// challenge is released.
func withDeadline(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// publicHandler serves SCEP, the CRL and CA certificate, health, readiness and
// metrics.
func (g *gateway) publicHandler() http.Handler {
	mux := http.NewServeMux()
	sh := withDeadline(g.server, answerWithin)
	scep.Mount(mux, "/scep", sh)
	scep.Mount(mux, "/certsrv/mscep/mscep.dll", sh)
	mux.Handle("GET /crl", g.crl)
	mux.HandleFunc("GET /ca.cer", func(w http.ResponseWriter, r *http.Request) {
		ca, maxAge := g.caInForce(g.now())
		serveCert(w, ca.Certificate, maxAge)
	})
	// Each CA also by its key identifier: the URLs in the certificates of a CA that
	// a rollover brought in.
	mux.HandleFunc("GET /crl/{id}", func(w http.ResponseWriter, r *http.Request) {
		if p := g.crlByID(r.PathValue("id")); p != nil {
			p.ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
	})
	mux.HandleFunc("GET /ca/{id}", func(w http.ResponseWriter, r *http.Request) {
		if p := g.crlByID(r.PathValue("id")); p != nil {
			serveCert(w, p.CA.Certificate, time.Hour)
			return
		}
		http.NotFound(w, r)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", g.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.registry, promhttp.HandlerOpts{}))
	return mux
}

// serveCert answers with c, DER, cacheable for maxAge.
func serveCert(w http.ResponseWriter, c *x509.Certificate, maxAge time.Duration) {
	w.Header().Set("Content-Type", "application/pkix-cert")
	w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(maxAge/time.Second)))
	w.Write(c.Raw)
}

// now is the clock of the rollover's switch: the RegistrationPoint's.
func (g *gateway) now() time.Time {
	if g.rp.Now != nil {
		return g.rp.Now()
	}
	return time.Now()
}

// caInForce is the CA that issues at now: the next CA of a rollover from its switch
// on, else the current one; and how long a cache may keep it (an hour, but never
// past the switch).
func (g *gateway) caInForce(now time.Time) (*catemplate.CA, time.Duration) {
	if g.next == nil {
		return g.ca, time.Hour
	}
	if g.server.RolledOver(now) {
		return g.next, time.Hour
	}
	return g.ca, min(time.Hour, g.switchAt.Sub(now))
}

// crlByID is the CRL publisher of the CA caID names.
func (g *gateway) crlByID(id string) *crp.CRLPublisher {
	for _, p := range []*crp.CRLPublisher{g.crl, g.nextCRL} {
		if p != nil && caID(p.CA) == id {
			return p
		}
	}
	return nil
}

// readyInterval is how long /readyz answers with the outcome of its last checks: a
// flood of probes costs the store and Redis at most one check each per interval.
const readyInterval = time.Second

// readiness is the last outcome of the /readyz checks.
type readiness struct {
	mu    sync.Mutex // held while checking: probes meanwhile wait for the outcome
	at    time.Time  // when it was checked; zero: never
	ready bool
	body  []byte
}

// readyz reports whether the gateway can serve enrollments: the stores answer, the
// CA and RA certificates are valid now, their keys sign. The checks run at most once
// per readyInterval; the probes in between get their outcome.
func (g *gateway) readyz(w http.ResponseWriter, r *http.Request) {
	rd := &g.readiness
	rd.mu.Lock()
	if now := g.now(); rd.at.IsZero() || now.Before(rd.at) || now.Sub(rd.at) >= readyInterval {
		// Checked for every waiting probe, not for this one alone: its going away
		// does not cut the checks short.
		rd.ready, rd.body = g.checkReady(context.WithoutCancel(r.Context()))
		// From the end of the checks: the probes that waited for them (up to their
		// timeout each) get this outcome instead of checking again in turn.
		rd.at = g.now()
	}
	ready, body := rd.ready, rd.body
	rd.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	w.Write(body)
}

// readyTimeout bounds each readiness check that asks another service: the store,
// Redis, Intune. They run side by side, each on its own time, so that one that hangs
// neither spends another's time nor has it reported failed (a failed Intune check is
// kept for a minute).
const readyTimeout = 3 * time.Second

// checkReady runs the readiness checks and returns their outcome and its JSON.
func (g *gateway) checkReady(ctx context.Context) (bool, []byte) {
	type check struct {
		Name   string `json:"name"`
		OK     bool   `json:"ok"`
		Detail string `json:"detail,omitempty"`
	}
	var checks []check
	// A failed check's error goes to the log only: its text (a store's address, a
	// token's error) is not for whoever reaches the public listener.
	add := func(name string, err error, detail string) {
		c := check{Name: name, OK: err == nil, Detail: detail}
		if err != nil {
			c.Detail = "failed; see the gateway's log"
			g.log.WarnContext(ctx, "readyz: check failed", "check", name, "err", err)
		}
		checks = append(checks, c)
	}
	var storeErr, redisErr, intuneErr error
	var wg sync.WaitGroup
	within := func(check func(context.Context) error) error {
		ctx, cancel := context.WithTimeout(ctx, readyTimeout)
		defer cancel()
		return check(ctx)
	}
	wg.Go(func() { storeErr = within(g.storeReady) })
	if g.redis != nil {
		wg.Go(func() { redisErr = within(func(ctx context.Context) error { return g.redis.Ping(ctx).Err() }) })
	}
	if g.intune != nil {
		wg.Go(func() { intuneErr = within(g.intuneReady) })
	}
	// The keys alongside: each call into a token is bounded by its own timeout
	// (tokenTimeout), and a stalled token is not waited for once per key in turn.
	var keysErr error
	wg.Go(func() { keysErr = g.keysSign() })
	wg.Wait()
	add("store", storeErr, "")
	if g.redis != nil {
		add("redis", redisErr, "")
	}
	add("certificates", g.server.Validate(), expiringDetail(g.server, time.Duration(g.cfg.ExpiryWarning)))
	add("keys", keysErr, "")
	if g.intune != nil {
		add("intune", intuneErr, "")
	}
	ready := true
	for _, c := range checks {
		ready = ready && c.OK
	}
	body, err := json.Marshal(struct {
		Ready  bool    `json:"ready"`
		Checks []check `json:"checks"`
	}{ready, checks})
	if err != nil { // strings and booleans only: cannot fail
		return false, []byte(`{"ready":false}` + "\n")
	}
	return ready, append(body, '\n')
}

// storeReady checks that the store reads, makes a write durable (storeWrites) and
// answers a ping.
func (g *gateway) storeReady(ctx context.Context) error {
	if _, err := g.store.Pending(ctx, "", 1); err != nil {
		return err
	}
	if err := g.storeWrites(ctx); err != nil {
		return err
	}
	if p, ok := g.store.(crp.Pinger); ok {
		// A write can succeed where the store cannot go on: boltstore writes into its
		// journal while its checkpoints fail on a full disk, until the journal is full.
		return p.Ping(ctx)
	}
	return nil
}

func expiringDetail(s *scep.Server, within time.Duration) string {
	var parts []string
	for _, c := range s.ExpiringSoon(within) {
		parts = append(parts, fmt.Sprintf("%s expires %s", c.Subject.CommonName, c.NotAfter.UTC().Format(time.RFC3339)))
	}
	return strings.Join(parts, "; ")
}

// keysSign has the CA and RA keys sign as the gateway does (signsAs: an Ed25519 CA
// with no digest, a P-384 one with SHA-384), and the RA's decryption keys decrypt a
// probe, at most every 30 seconds (a token may have been removed, or its session lost).
// The keys are tried side by side, so that a token that stalls costs one call's
// timeout, not one per key; the error is the first failing key's, in the order below.
func (g *gateway) keysSign() error {
	g.keyCheckMu.Lock()
	defer g.keyCheckMu.Unlock()
	if time.Since(g.keyChecked) < 30*time.Second {
		return g.keyErr
	}
	digest := sha256.Sum256([]byte("scepkit readiness"))
	type keyCheck struct {
		name  string
		check func() error
	}
	signs := func(key crypto.Signer, cert *x509.Certificate, role signRole) func() error {
		return func() error { return signsAs(key, cert.PublicKey, role) }
	}
	checks := []keyCheck{{"CA", signs(g.ca.Signer, g.ca.Certificate, caSigns)},
		{"RA signing", signs(g.ra.Signer, g.ra.SigningCertificate, raSigns)},
		// The RA's decryption key too: without it every request is answered
		// badMessageCheck although the signing keys work.
		{"RA encryption", func() error { return decrypts(g.ra, digest[:]) }}}
	if g.next != nil {
		checks = append(checks, keyCheck{"next CA", signs(g.next.Signer, g.next.Certificate, caSigns)})
	}
	if g.nextRA != nil {
		checks = append(checks, keyCheck{"next RA signing", signs(g.nextRA.Signer, g.nextRA.SigningCertificate, raSigns)},
			keyCheck{"next RA encryption", func() error { return decrypts(g.nextRA, digest[:]) }})
	}
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() { errs[i] = c.check() })
	}
	wg.Wait()
	g.keyErr = nil
	for i, err := range errs {
		if err != nil {
			g.keyErr = fmt.Errorf("%s key: %w", checks[i].name, err)
			break
		}
	}
	g.keyChecked = time.Now()
	return g.keyErr
}

// storeWriteInterval is how long a write the store made durable for /readyz stands
// for the next ones: at most one probe write per interval while it succeeds, one per
// readiness check while it fails.
const storeWriteInterval = 10 * time.Second

// storeWrites has the store make one claim durable and give it back. A store that
// still reads but cannot write (a full disk, a file system remounted read-only, a
// read-only database) refuses every enrollment while a read answers. It runs under
// the readiness lock (readyz), so probes never write at once.
func (g *gateway) storeWrites(ctx context.Context) error {
	if !g.storeWritten.IsZero() && time.Since(g.storeWritten) < storeWriteInterval {
		return nil
	}
	var b [12]byte
	rand.Read(b[:])
	id := "readyz:" + hex.EncodeToString(b[:])
	if err := g.store.Claim(ctx, id, g.now().Add(time.Minute)); err != nil {
		return fmt.Errorf("a write to the store: %w", err)
	}
	if err := g.store.Release(ctx, id); err != nil {
		return fmt.Errorf("a write to the store: %w", err)
	}
	g.storeWritten = time.Now()
	return nil
}

// decrypts encrypts probe to the RA's encryption certificate and has its key decrypt it.
func decrypts(ra *catemplate.RA, probe []byte) error {
	pub, ok := ra.EncryptionCertificate.PublicKey.(*rsa.PublicKey)
	if !ok || ra.Decrypter == nil {
		return errors.New("no RSA encryption certificate and key")
	}
	return decryptsTo(pub, ra.Decrypter, probe)
}

// decryptsTo encrypts probe to pub (RSA PKCS#1 v1.5, as clients encrypt the content
// key of their requests) and has dec decrypt it.
func decryptsTo(pub *rsa.PublicKey, dec crypto.Decrypter, probe []byte) error {
	ct, err := rsa.EncryptPKCS1v15(rand.Reader, pub, probe)
	if err != nil {
		return err
	}
	pt, err := dec.Decrypt(rand.Reader, ct, nil)
	if err != nil {
		return err
	}
	if !bytes.Equal(pt, probe) {
		return errors.New("the key does not decrypt what is encrypted to its certificate")
	}
	return nil
}

// refreshKeys reads jwks again every jwks_refresh and makes the Verifier's keys those
// it holds: a key the MDM adds is trusted, one it removes no longer is. On failure the
// keys in use stay, and the failure is logged.
func (g *gateway) refreshKeys(ctx context.Context) {
	mdmfile.FollowKeySet(ctx, g.cfg.JWKS, g.keys, time.Duration(g.cfg.JWKSRefresh), g.log)
}

// warnExpiring logs the CA and RA certificates that expire within the warning
// period, now and then every hour.
func (g *gateway) warnExpiring(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		for _, c := range g.server.ExpiringSoon(time.Duration(g.cfg.ExpiryWarning)) {
			g.log.Warn("certificate expires soon: prepare a rollover", "subject", c.Subject.String(),
				"serial", c.SerialNumber.Text(16), "not_after", c.NotAfter)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// levelFloor passes on to h the records at min or above.
type levelFloor struct {
	h   slog.Handler
	min slog.Level
}

func (f levelFloor) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.h.Enabled(ctx, l)
}

func (f levelFloor) Handle(ctx context.Context, r slog.Record) error { return f.h.Handle(ctx, r) }

func (f levelFloor) WithAttrs(as []slog.Attr) slog.Handler {
	return levelFloor{f.h.WithAttrs(as), f.min}
}

func (f levelFloor) WithGroup(name string) slog.Handler {
	return levelFloor{f.h.WithGroup(name), f.min}
}
