package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/intune"
	"github.com/scepkit/scepkit/internal/pemfile"
	"github.com/scepkit/scepkit/profile"
)

// intuneProfile is the profile id Intune's transactions are recorded with; its
// template takes the subject and SANs from the request, which Intune judged against
// the tenant's SCEP profile.
const intuneProfile = "intune"

// intuneClient is the client of the tenant's services the configuration describes,
// its credential read from its files.
func intuneClient(g *gateway) (*intune.Client, error) {
	c := g.cfg.Intune
	client := &intune.Client{Tenant: c.Tenant, ClientID: c.ClientID, ClientSecret: c.ClientSecret,
		CallerInfo: c.CallerInfo, Authority: c.Authority, GraphURL: c.GraphURL, Logger: g.log, MeterProvider: g.meter}
	if c.ClientSecretFile != "" {
		b, err := readSecretFile(c.ClientSecretFile)
		if err != nil {
			return nil, settingError("intune.client_secret_file", err)
		}
		client.ClientSecret = strings.TrimSpace(string(b))
	}
	if c.CertFile != "" {
		cert, key, err := loadIntuneCredential(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, settingError("intune.cert_file", err)
		}
		client.Certificate, client.Key = cert, key
	}
	if err := client.Validate(); err != nil {
		return nil, settingError("intune.tenant", err)
	}
	return client, nil
}

// wireIntune makes the registration point judge Intune's challenges through the
// tenant's validation service and notify it of the outcome; scepkit's own challenges
// keep their checks and template (base).
func (g *gateway) wireIntune(base *catemplate.Template, client *intune.Client) error {
	tmpl := *base
	tmpl.Name, tmpl.SubjectFromRequest, tmpl.SANsFromRequest = "scepkit-intune", true, true
	templates := catemplate.MapStore{base.Name: base, tmpl.Name: &tmpl}
	g.rp.Templates = &catemplate.ProfileResolver{ByProfile: map[string]string{intuneProfile: tmpl.Name},
		Fallback: &catemplate.NDESResolver{SignatureTemplate: base.Name, EncryptionTemplate: base.Name,
			GeneralPurposeTemplate: base.Name, Templates: templates}, Templates: templates}
	// The success notifications name each certificate's issuer (the next CA's after
	// a rollover), and the revocation requests that come back name it too.
	t := &intune.Tenant{Client: client, Profile: &profile.Profile{ID: intuneProfile}}
	if _, err := t.Wire(g.rp); err != nil {
		return settingError("intune.tenant", err)
	}
	g.intune = client
	g.intunePoller = &intune.Poller{Client: client, Interval: time.Duration(g.cfg.Intune.RevocationInterval), Logger: g.log,
		Revoker: g.intuneRevoker()}
	return nil
}

// intuneRevoker applies Intune's revocation requests with the CA they name: the
// current one, or the next one of a rollover.
func (g *gateway) intuneRevoker() intune.Revoker {
	certs, revs := rememberedLookups{g.store}, crlRevocations{g}
	var rev intune.Revoker = &intune.CARevoker{CA: g.ca, Certificates: certs, Revocations: revs}
	if g.next != nil {
		cur, next := rev, &intune.CARevoker{CA: g.next, Certificates: certs, Revocations: revs}
		rev = intune.RevokerFunc(func(ctx context.Context, req *intune.RevocationRequest) error {
			err := cur.Revoke(ctx, req)
			if errors.Is(err, intune.ErrOtherCA) {
				return next.Revoke(ctx, req)
			}
			return err
		})
	}
	return intune.RevokerFunc(func(ctx context.Context, req *intune.RevocationRequest) error {
		return rev.Revoke(context.WithValue(ctx, lookedUpKey{}, new(lookedUp)), req)
	})
}

// lookedUp is the inventory's record of the certificate a revocation request names,
// as the CARevoker found it (it looks the serial up first, to tell ours from others),
// so that crlRevocations chooses the CRL by it without a second lookup.
type lookedUp struct{ c *crp.IssuedCertificate }

type lookedUpKey struct{}

// rememberedLookups is the certificate inventory whose lookups are remembered in
// the request's lookedUp.
type rememberedLookups struct{ crp.CertificateStore }

func (s rememberedLookups) Lookup(ctx context.Context, serial *big.Int) (*crp.IssuedCertificate, error) {
	c, err := s.CertificateStore.Lookup(ctx, serial)
	if l, ok := ctx.Value(lookedUpKey{}).(*lookedUp); ok && err == nil {
		l.c = c
	}
	return c, err
}

// crlRevocations records Intune's revocations through the CRL publisher of the
// certificate's issuer, so that the next CRL it serves lists them at once.
type crlRevocations struct{ g *gateway }

func (r crlRevocations) Revoke(ctx context.Context, rev *crp.Revocation) (*crp.Revocation, error) {
	l, _ := ctx.Value(lookedUpKey{}).(*lookedUp)
	if l == nil || l.c == nil || l.c.Certificate.SerialNumber.Cmp(rev.Serial) != 0 {
		issued, err := r.g.store.Lookup(ctx, rev.Serial)
		if err != nil {
			return nil, err
		}
		l = &lookedUp{issued}
	}
	return r.g.crlFor(l.c.Certificate).Revoke(ctx, rev)
}

func (r crlRevocations) RevokedSince(ctx context.Context, since time.Time) ([]*crp.Revocation, error) {
	return r.g.store.RevokedSince(ctx, since)
}

// intuneReady signs in to Microsoft Entra and finds the validation service through
// Graph, at most every minute (the client caches what it discovered for a day, so
// later checks cost nothing while it holds).
func (g *gateway) intuneReady(ctx context.Context) error {
	g.intuneMu.Lock()
	defer g.intuneMu.Unlock()
	if time.Since(g.intuneChecked) < time.Minute {
		return g.intuneErr
	}
	_, g.intuneErr = g.intune.Endpoint(ctx, intune.ValidationService)
	g.intuneChecked = time.Now()
	return g.intuneErr
}

// loadIntuneCredential reads the app's certificate and its RSA key (PKCS#8 or
// PKCS#1), the key from a file other users cannot read.
func loadIntuneCredential(certFile, keyFile string) (*x509.Certificate, crypto.Signer, error) {
	certs, err := pemfile.ReadCertificates(certFile)
	if err != nil {
		return nil, nil, err
	}
	kb, err := readSecretFile(keyFile)
	if err != nil {
		return nil, nil, err
	}
	blk, _ := pem.Decode(kb)
	if blk == nil {
		return nil, nil, fmt.Errorf("%s: no PEM key", keyFile)
	}
	var k any
	if blk.Type == "RSA PRIVATE KEY" {
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	} else {
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok || !samePublic(signer, certs[0]) {
		return nil, nil, errors.New(keyFile + " is not the key of " + certFile)
	}
	return certs[0], signer, nil
}

func samePublic(k crypto.Signer, c *x509.Certificate) bool {
	pub, ok := k.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(c.PublicKey)
}
