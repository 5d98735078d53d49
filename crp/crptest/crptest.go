// Package crptest assembles a complete scepkit gateway in memory (CA, RA, challenge
// issuer and verifier, a demo directory and device registry, a profile, templates, the
// registration point and the SCEP server), for tests of code that embeds scepkit. Like
// net/http/httptest, it is for tests and demos, not production: its keys are made on
// the fly (or kept in a directory) and its stores are in memory (a boltstore in the
// directory when Options.Dir is set). It hides the wiring a
// gateway needs; to see it, read examples/minimal or examples/quickstart/gateway.go.
package crptest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/scepkit/scepkit/boltstore"
	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/profile"
	"github.com/scepkit/scepkit/scep"
)

// Options configures [New]. Every zero value has a default.
type Options struct {
	// Gateway is the gateway's identity, the audience of its challenges; zero means
	// "scepkit-gateway".
	Gateway string
	// MDM is the challenge issuer name; zero means "scepkit-mdm".
	MDM string
	// Legacy lets the SCEP server accept SHA-1 and single DES (old clients).
	Legacy bool
	// SubjectFormat is the demo profile's subject; zero means "CN={{UserPrincipalName}}".
	SubjectFormat string
	// ServerURL is written into the demo profile; zero means "http://127.0.0.1/scep".
	ServerURL string
	// Dir, when set, keeps the CA and RA there (created on first use, loaded after).
	Dir string
	// CAKeySize is the CA's RSA key size; zero means 2048.
	CAKeySize int
	// ECDSA gives the CA and the RA signing certificate ECDSA P-256 keys instead of
	// RSA (the RA encryption key stays RSA: CMS key transport needs it).
	ECDSA bool
	// Share, when set, makes a second gateway beside an existing one, as gateways
	// behind one load balancer: the new Env uses Share's CA, RA and MDM
	// (challenge-signing) key instead of making or loading its own, and a zero
	// Gateway or MDM is taken from Share, so a challenge minted by either Env verifies
	// at both. Dir then keeps only the issued certificates. Give both Envs the same
	// shared Replay and Transactions stores (package redisstore) for a challenge to be
	// usable once across both.
	Share *Env
	// CA and RA, when both set, are used instead of making or loading them (keys in
	// an HSM, say); Dir then keeps only the issued certificates.
	CA *catemplate.CA
	RA *catemplate.RA
	// Store keeps what the gateway remembers (challenge claims, transaction records
	// and pending requests, issued certificates, revocations), except what Replay
	// and Transactions take over. Nil means a boltstore in Dir/state.db when Dir is
	// set (certificates of the older Dir/issued layout are migrated into it on first
	// open), in memory otherwise.
	Store crp.Store
	// Replay is the challenge replay store; nil means Store's.
	Replay challenge.ReplayStore
	// Transactions is the transaction store; nil means Store's.
	Transactions crp.TransactionStore
	// Logger receives the server's and the registration point's records.
	Logger *slog.Logger
	// MeterProvider and TracerProvider receive the server's and the registration
	// point's metrics and spans; nil means none.
	MeterProvider  metric.MeterProvider
	TracerProvider trace.TracerProvider
	// Now is the clock of every part; nil means time.Now.
	Now func() time.Time
}

// Env is an assembled gateway and the demo MDM around it.
type Env struct {
	CA         *catemplate.CA
	RA         *catemplate.RA
	Challenges *challenge.Issuer
	Verifier   *challenge.Verifier
	Users      *crp.MemoryDirectory
	Devices    *crp.MemoryRegistry
	Profile    *profile.Profile
	Profiles   crp.MemoryProfiles
	Templates  catemplate.MapStore
	Notifier   *crp.MemoryNotifier
	// Store is the store in use (Options.Store, the boltstore in Options.Dir, or a
	// crp.MemoryStore). Close closes it if New opened it.
	Store    crp.Store
	ownStore bool
	// Certificates remembers what was issued (for GetCert and renewals) when the
	// store is in memory; otherwise RP.Certificates is Store and this stays empty.
	Certificates *crp.MemoryCertificates
	// Issuer counts what the CA signs, so tests can assert that nothing was issued.
	Issuer *CountingIssuer
	RP     *crp.RegistrationPoint
	Server *scep.Server
}

// DemoUser is one user of the demo directory and their device.
type DemoUser struct {
	// UPN is the user's id, user principal name and email address.
	UPN string
	// Device is the id, name and Entra ID device id of the user's one device,
	// compliant, with serial number "SN-" followed by Device.
	Device string
	// Disabled marks a user the directory refuses.
	Disabled bool
}

// DemoUsers returns the demo directory [New] puts in every Env's Users and Devices:
// alice@example.com (alice-laptop) and bob@example.com (bob-phone), active, and
// mallory@example.com (mallory-tablet), disabled. Each call returns a new slice: a
// test may change what it is handed without changing what another test, or New, sees.
func DemoUsers() []DemoUser {
	return []DemoUser{
		{UPN: "alice@example.com", Device: "alice-laptop"},
		{UPN: "bob@example.com", Device: "bob-phone"},
		{UPN: "mallory@example.com", Device: "mallory-tablet", Disabled: true},
	}
}

// ProfileID is the id of the demo profile; TemplateName the demo template's name.
const (
	ProfileID    = "demo-profile"
	TemplateName = "scepkit-device"
)

// CountingIssuer passes requests to Next and counts the certificates it returns.
type CountingIssuer struct {
	Next crp.Issuer
	n    atomic.Int64
}

// Issue implements crp.Issuer.
func (c *CountingIssuer) Issue(ctx context.Context, req *crp.IssueRequest) (*x509.Certificate, error) {
	cert, err := c.Next.Issue(ctx, req)
	if err == nil && cert != nil {
		c.n.Add(1)
	}
	return cert, err
}

// Count returns how many certificates were issued.
func (c *CountingIssuer) Count() int { return int(c.n.Load()) }

// New assembles an Env. Close it when done if it has a Dir.
func New(o Options) (env *Env, err error) {
	if o.Share != nil && o.Gateway == "" {
		o.Gateway = o.Share.Verifier.Audience
	}
	if o.Share != nil && o.MDM == "" {
		o.MDM = o.Share.Challenges.Name
	}
	if o.Gateway == "" {
		o.Gateway = "scepkit-gateway"
	}
	if o.MDM == "" {
		o.MDM = "scepkit-mdm"
	}
	if o.SubjectFormat == "" {
		o.SubjectFormat = "CN={{UserPrincipalName}}"
	}
	if o.ServerURL == "" {
		o.ServerURL = "http://127.0.0.1/scep"
	}
	if o.CAKeySize == 0 {
		o.CAKeySize = 2048
	}
	e := &Env{}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	var mdmKey crypto.Signer
	if o.Share != nil {
		e.CA, e.RA, mdmKey = o.Share.CA, o.Share.RA, o.Share.Challenges.Key
	} else {
		if o.CA != nil && o.RA != nil {
			e.CA, e.RA = o.CA, o.RA
		} else if e.CA, e.RA, err = loadOrCreatePKI(o); err != nil {
			return nil, err
		}
		if mdmKey, err = loadOrCreateMDMKey(o.Dir); err != nil {
			return nil, err
		}
	}
	e.Challenges = &challenge.Issuer{Name: o.MDM, Key: mdmKey, Now: o.Now}
	keys := challenge.NewKeySet()
	if _, err := keys.AddKey(mdmKey.Public()); err != nil {
		return nil, err
	}
	switch {
	case o.Store != nil:
		e.Store = o.Store
	case o.Dir != "":
		if e.Store, err = openStore(o); err != nil {
			return nil, err
		}
		e.ownStore = true
	default:
		m := &crp.MemoryStore{}
		m.MemoryReplayStore.Now, m.MemoryTransactions.Now = o.Now, o.Now
		e.Store = m
	}
	replay := o.Replay
	if replay == nil {
		replay = e.Store
	}
	transactions := o.Transactions
	if transactions == nil {
		transactions = e.Store
	}
	e.Verifier = &challenge.Verifier{Keys: keys, Issuer: o.MDM, Audience: o.Gateway, Replay: replay, Now: o.Now}

	e.Users, e.Devices = &crp.MemoryDirectory{}, &crp.MemoryRegistry{}
	for _, u := range DemoUsers() {
		name := u.UPN[:len(u.UPN)-len("@example.com")]
		e.Users.Put(crp.User{User: profile.User{ID: u.UPN, UserPrincipalName: u.UPN, Email: u.UPN, UserName: name},
			Disabled: u.Disabled})
		e.Devices.Put(crp.Device{Device: profile.Device{ID: u.Device, AADDeviceID: u.Device, Name: u.Device,
			SerialNumber: "SN-" + u.Device}, UserID: u.UPN, Compliant: true})
	}
	e.Profile = &profile.Profile{
		ID: ProfileID, Name: "scepkit demo device certificate",
		CertificateType: profile.UserCertificate, Platform: profile.Windows,
		SubjectNameFormat: o.SubjectFormat,
		Validity:          profile.ValidityPeriod{Value: 1, Unit: profile.Years},
		KeyUsage:          x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		KeySize:           2048, ExtendedKeyUsages: []profile.EKU{profile.EKUClientAuth},
		RenewalThresholdPercent: 20, ServerURLs: []string{o.ServerURL}, RootCA: e.CA.Certificate,
	}
	if err := e.Profile.Validate(); err != nil {
		return nil, err
	}
	e.Profiles = crp.MemoryProfiles{ProfileID: e.Profile}
	e.Templates = catemplate.MapStore{TemplateName: &catemplate.Template{
		Name: TemplateName, Validity: 365 * 24 * time.Hour, Backdate: 5 * time.Minute,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, MinKeySize: 2048,
		KeyTypes: []profile.KeyType{profile.RSA, profile.ECDSAP256, profile.ECDSAP384}, Published: true,
	}}
	e.Notifier = &crp.MemoryNotifier{}
	e.Certificates = &crp.MemoryCertificates{}
	e.Issuer = &CountingIssuer{Next: crp.CAIssuer{CA: e.CA}}
	e.RP = &crp.RegistrationPoint{
		Verifier: e.Verifier, Users: e.Users, Devices: e.Devices, Profiles: e.Profiles,
		Templates: &catemplate.NDESResolver{SignatureTemplate: TemplateName, EncryptionTemplate: TemplateName,
			GeneralPurposeTemplate: TemplateName, Templates: e.Templates},
		Issuer: e.Issuer, CACert: e.CA.Certificate, Notifier: e.Notifier,
		Transactions: transactions, Certificates: e.Store,
		Revocation: crp.RevocationCheckerFunc(func(ctx context.Context, c *x509.Certificate) (bool, error) {
			if e.CA.IsRevoked(c.SerialNumber) {
				return true, nil
			}
			return e.Store.IsRevoked(ctx, c)
		}),
		CRL: func(ctx context.Context) ([]byte, error) {
			return e.CA.CRL(ctx, time.Now().Add(24*time.Hour))
		},
		Logger: o.Logger, Now: o.Now, MeterProvider: o.MeterProvider, TracerProvider: o.TracerProvider,
	}
	if m, ok := e.Store.(*crp.MemoryStore); ok {
		e.Certificates = &m.MemoryCertificates
	}
	if err := e.RP.Validate(); err != nil {
		return nil, err
	}
	e.Server = crp.NewServer(e.RP, e.RA)
	e.Server.CACerts = append([]*x509.Certificate{e.CA.Certificate}, e.CA.Chain...) // the Issuer counts, so NewServer cannot see the CA's chain
	e.Server.AllowLegacy, e.Server.Logger, e.Server.Now = o.Legacy, o.Logger, o.Now
	e.Server.MeterProvider, e.Server.TracerProvider = o.MeterProvider, o.TracerProvider
	if err := e.Server.Validate(); err != nil {
		return nil, err
	}
	return e, nil
}

// openStore opens the boltstore in o.Dir (migrating the older layout, o.Dir/issued).
func openStore(o Options) (*boltstore.Store, error) {
	s, n, err := boltstore.OpenDir(o.Dir, &boltstore.Options{Now: o.Now, Logger: o.Logger})
	if err == nil && n > 0 && o.Logger != nil {
		o.Logger.Info("crptest: migrated issued certificates into the store", "count", n, "dir", o.Dir)
	}
	return s, err
}

// Close closes the store New opened (the boltstore in Options.Dir); it does nothing
// otherwise.
func (e *Env) Close() error {
	if c, ok := e.Store.(*boltstore.Store); ok && e.ownStore {
		return c.Close()
	}
	return nil
}

func loadOrCreatePKI(o Options) (*catemplate.CA, *catemplate.RA, error) {
	if o.Dir != "" {
		ca, err := catemplate.LoadCA(o.Dir)
		if err == nil {
			ra, err := catemplate.LoadRA(o.Dir)
			if err != nil {
				return nil, nil, fmt.Errorf("crptest: CA found in %s but not its RA: %w", o.Dir, err)
			}
			return ca, ra, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, nil, err
		}
	}
	caKeyType, raOpts := profile.RSA, catemplate.RAOptions{Subject: pkix.Name{CommonName: "scepkit demo RA"}}
	if o.ECDSA {
		caKeyType = profile.ECDSAP256
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		raOpts.SigningKey = k
	}
	ca, err := catemplate.NewCA(catemplate.CAOptions{KeySize: o.CAKeySize, KeyType: caKeyType,
		Subject: pkix.Name{CommonName: "scepkit demo CA", Organization: []string{"scepkit"}}, Now: o.Now})
	if err != nil {
		return nil, nil, err
	}
	ra, err := catemplate.NewRA(ca, raOpts)
	if err != nil {
		return nil, nil, err
	}
	if o.Dir != "" {
		if err := os.MkdirAll(o.Dir, 0o700); err != nil {
			return nil, nil, err
		}
		if err := catemplate.SaveCA(o.Dir, ca); err != nil {
			return nil, nil, err
		}
		if err := catemplate.SaveRA(o.Dir, ra); err != nil {
			return nil, nil, err
		}
	}
	return ca, ra, nil
}

// CAFingerprint returns the SHA-256 of the CA certificate, what a scep.Client pins.
func (e *Env) CAFingerprint() []byte {
	sum := sha256.Sum256(e.CA.Certificate.Raw)
	return sum[:]
}

// Challenge mints a challenge for user (its UPN) and device, for the demo profile.
func (e *Env) Challenge(user, device string, lifetime time.Duration) (string, *challenge.Claims, error) {
	return e.Challenges.Issue(challenge.Request{UserID: user, DeviceID: device, ProfileID: ProfileID,
		Audience: e.Verifier.Audience, Lifetime: lifetime})
}

// Rendered renders the demo profile for a user and device of the demo directory.
func (e *Env) Rendered(ctx context.Context, user, device string) (*profile.Rendered, error) {
	u, err := e.Users.LookupUser(ctx, user)
	if err != nil {
		return nil, err
	}
	d, err := e.Devices.LookupDevice(ctx, device)
	if err != nil {
		return nil, err
	}
	return profile.Render(e.Profile, u.User, d.Device, nil)
}
