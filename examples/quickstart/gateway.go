package main

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/scepkit/scepkit/boltstore"
	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/examples/internal/demo"
	"github.com/scepkit/scepkit/profile"
	"github.com/scepkit/scepkit/scep"
)

// The names that tie the parts together: the MDM mints challenges as mdmName for
// gatewayIdentity and the profile profileID; the gateway accepts exactly those.
const (
	mdmName         = "quickstart-mdm"
	gatewayIdentity = "quickstart-gateway"
	profileID       = "demo-profile"
	templateName    = "scepkit-device"
)

// demoUsers is the demo directory: two active users and one disabled, each with a
// device.
var demoUsers = []struct {
	upn, device string
	disabled    bool
}{
	{"alice@example.com", "alice-laptop", false},
	{"bob@example.com", "bob-phone", false},
	{"mallory@example.com", "mallory-tablet", true},
}

// gateway is everything the quickstart runs but the device: the MDM's challenge
// issuer, the CA and RA, the directory, the profile, the registration point and the
// SCEP server in front of it.
type gateway struct {
	Challenges *challenge.Issuer // the MDM's half: it keeps the private key
	CA         *catemplate.CA
	RA         *catemplate.RA
	Users      *crp.MemoryDirectory
	Devices    *crp.MemoryRegistry
	Enrolled   *deviceBook // the devices the MDM endpoint enrolled, kept in dir
	Profile    *profile.Profile
	Notifier   *crp.MemoryNotifier // what the MDM was told
	Store      *boltstore.Store
	RP         *crp.RegistrationPoint
	Server     *scep.Server
}

// Close closes the store and the MDM's device file.
func (g *gateway) Close() error {
	var errs []error
	if g.Enrolled != nil {
		errs = append(errs, g.Enrolled.Close())
	}
	if g.Store != nil {
		errs = append(errs, g.Store.Close())
	}
	return errors.Join(errs...)
}

// newGateway wires the gateway by hand from scepkit's packages: this is the code to
// copy. The CA, RA, MDM key and the store (state.db) are kept in dir across restarts
// (package demo only reads and writes the key files). Close the gateway when done; it
// is closed here on error.
func newGateway(dir, scepURL string, legacy, caEnvelopes bool, logger *slog.Logger) (_ *gateway, err error) {
	g := &gateway{}
	defer func() {
		if err != nil {
			g.Close()
		}
	}()

	// 1. The CA that issues, and the RA that signs the SCEP replies and decrypts the
	// requests (as NDES has one).
	if g.CA, g.RA, err = demo.LoadOrCreatePKI(dir, "scepkit demo"); err != nil {
		return nil, err
	}

	// 2. The MDM's challenge key. The MDM keeps the private key and mints one-hour,
	// one-time challenges; the gateway needs only the public key to verify them.
	mdmKey, err := demo.LoadOrCreateEd25519Key(filepath.Join(dir, "mdm-ed25519.pem"))
	if err != nil {
		return nil, err
	}
	g.Challenges = &challenge.Issuer{Name: mdmName, Key: mdmKey}
	keys := challenge.NewKeySet()
	if _, err := keys.AddKey(mdmKey.Public()); err != nil {
		return nil, err
	}

	// 3. Who may enroll, and with what: users, their devices, the SCEP profile the
	// MDM gives them, and the certificate template the CA applies.
	g.Users, g.Devices = &crp.MemoryDirectory{}, &crp.MemoryRegistry{}
	for _, u := range demoUsers {
		g.Users.Put(crp.User{User: profile.User{ID: u.upn, UserPrincipalName: u.upn, Email: u.upn},
			Disabled: u.disabled})
		g.Devices.Put(crp.Device{Device: profile.Device{ID: u.device, AADDeviceID: u.device, Name: u.device},
			UserID: u.upn, Compliant: true})
	}
	// The devices the MDM endpoint enrolled before a restart (mdm.go), each to its
	// user: without them a challenge minted before the restart, or the renewal of a
	// certificate issued to one of them, would find no device.
	if g.Enrolled, err = openDeviceBook(filepath.Join(dir, "mdm-devices.jsonl"), g.Devices); err != nil {
		return nil, err
	}
	g.Profile = &profile.Profile{
		ID: profileID, Name: "scepkit demo device certificate",
		CertificateType: profile.UserCertificate, Platform: profile.Windows,
		SubjectNameFormat: "CN={{UserPrincipalName}}",
		Validity:          profile.ValidityPeriod{Value: 1, Unit: profile.Years},
		KeyUsage:          x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		KeySize:           2048, ExtendedKeyUsages: []profile.EKU{profile.EKUClientAuth},
		RenewalThresholdPercent: 20, ServerURLs: []string{scepURL}, RootCA: g.CA.Certificate,
	}
	templates := catemplate.MapStore{templateName: {
		Name: templateName, Validity: 365 * 24 * time.Hour, Backdate: 5 * time.Minute,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, MinKeySize: 2048, Published: true,
	}}

	// 4. The Certificate Registration Point: the gateway check, phases 1-3, the
	// template, the CA, the MDM told.
	// What it remembers (used challenges, transactions, issued certificates,
	// revocations) is in one file, dir/state.db, durable before a device is answered:
	// a restart or a crash neither forgets a used challenge nor loses a certificate.
	if g.Store, _, err = boltstore.OpenDir(dir, &boltstore.Options{Logger: logger}); err != nil {
		return nil, err
	}
	g.Notifier = &crp.MemoryNotifier{Keep: 64} // the latest only: memory stays flat under load
	g.RP = &crp.RegistrationPoint{
		Verifier: &challenge.Verifier{Keys: keys, Issuer: mdmName, Audience: gatewayIdentity,
			Replay: g.Store},
		Transactions: g.Store,
		Users:        g.Users, Devices: g.Devices, Profiles: crp.MemoryProfiles{profileID: g.Profile},
		Templates: &catemplate.NDESResolver{SignatureTemplate: templateName, EncryptionTemplate: templateName,
			GeneralPurposeTemplate: templateName, Templates: templates},
		Issuer:       crp.CAIssuer{CA: g.CA}, // CACert defaults to this CA's certificate
		Notifier:     g.Notifier,
		Certificates: g.Store, // for GetCert and renewals
		Revocation: crp.RevocationCheckerFunc(func(ctx context.Context, c *x509.Certificate) (bool, error) {
			if g.CA.IsRevoked(c.SerialNumber) {
				return true, nil
			}
			return g.Store.IsRevoked(ctx, c)
		}),
		// The CRL lists the revocations in the store, so that they survive a restart,
		// and is signed again only when one is added through this CRLPublisher's Revoke
		// or it is an hour old (one written to the store otherwise is listed from the
		// next refresh): a flood of GetCRL costs no signature each.
		CRL:    (&crp.CRLPublisher{CA: g.CA, Revocations: g.Store, Logger: logger}).CRL,
		Logger: logger,
	}
	if err := g.RP.Validate(); err != nil {
		return nil, err
	}

	// 5. The SCEP server: the CA chain, the RA's keys, the registration point deciding.
	g.Server = crp.NewServer(g.RP, g.RA)
	g.Server.AllowLegacy, g.Server.Logger = legacy, logger
	if caEnvelopes {
		// Clients that pin the CA (micromdm's scepclient -ca-fingerprint) encrypt to
		// it and verify the reply with it alone.
		g.Server.CAKey = g.CA.Signer
	}
	return g, g.Server.Validate()
}

// Rendered renders the profile for a user and device of the directory, as the MDM
// does before it hands the profile out.
func (g *gateway) Rendered(ctx context.Context, user, device string) (*profile.Rendered, error) {
	u, err := g.Users.LookupUser(ctx, user)
	if err != nil {
		return nil, err
	}
	d, err := g.Devices.LookupDevice(ctx, device)
	if err != nil {
		return nil, err
	}
	return profile.Render(g.Profile, u.User, d.Device, nil)
}

// Challenge mints a challenge for user's device, valid at this gateway only.
func (g *gateway) Challenge(user, device string, lifetime time.Duration) (string, *challenge.Claims, error) {
	return g.Challenges.Issue(challenge.Request{UserID: user, DeviceID: device, ProfileID: profileID,
		Audience: gatewayIdentity, Lifetime: lifetime})
}

// IssuedCount is how many certificates the MDM was told were issued.
func (g *gateway) IssuedCount() int {
	n := 0
	for _, x := range g.Notifier.Notifications() {
		if x.Outcome == crp.OutcomeIssued {
			n++
		}
	}
	return n
}
