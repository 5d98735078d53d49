// Package demo holds what the quickstart, mdm, gateway and embedca examples share and what a real
// deployment would get elsewhere: the demo directory file (users and devices, in place of
// Entra ID and Intune's device inventory), the demo SCEP profiles and certificate
// template, loading the MDM's JWKS, keeping the CA, RA and MDM key in files, a
// certificate store in a directory, atomic file writes, and the HTTP server life cycle
// (timeouts, graceful shutdown). It is internal to the examples: copy what you need.
package demo

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/scepkit/scepkit/internal/atomicfile"
	"github.com/scepkit/scepkit/internal/headerbudget"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/internal/mdmfile"
	"github.com/scepkit/scepkit/profile"
)

// DirectoryFile is the JSON file that stands in for the user directory and the device
// inventory (see mdmfile.DirectoryFile).
type DirectoryFile = mdmfile.DirectoryFile

// Directory is a loaded DirectoryFile: a crp.UserDirectory and a crp.DeviceRegistry.
type Directory = mdmfile.Directory

// LoadDirectory reads a DirectoryFile.
func LoadDirectory(path string) (*Directory, error) { return mdmfile.LoadDirectory(path) }

// The demo profiles, one per platform, keyed by id (the challenge's prof claim: ids are
// short because every character costs about 1.3 characters of challenge).
const (
	ProfileWindows = "win"
	ProfileIOS     = "ios"
	ProfileMacOS   = "mac"
)

// Profiles returns the demo SCEP profiles: a user certificate with subject
// CN={{UserPrincipalName}} and no SAN, RSA 2048, client authentication, one year,
// renewed at 20% of its lifetime left, for Windows, iOS and macOS. The MDM and the
// gateway must agree on them: the MDM renders them for devices, the gateway checks CSRs
// against them.
func Profiles(scepURL string, root *x509.Certificate) (crp.MemoryProfiles, error) {
	out := crp.MemoryProfiles{}
	for id, pl := range map[string]profile.Platform{ProfileWindows: profile.Windows, ProfileIOS: profile.IOS,
		ProfileMacOS: profile.MacOS} {
		p := &profile.Profile{
			ID: id, Name: "scepkit example " + pl.String(), CertificateType: profile.UserCertificate, Platform: pl,
			SubjectNameFormat: "CN={{UserPrincipalName}}",
			Validity:          profile.ValidityPeriod{Value: 1, Unit: profile.Years},
			KeyUsage:          x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, KeySize: 2048,
			ExtendedKeyUsages: []profile.EKU{profile.EKUClientAuth}, RenewalThresholdPercent: 20,
			ServerURLs: []string{scepURL}, RootCA: root,
		}
		if err := p.Validate(); err != nil {
			return nil, err
		}
		out[id] = p
	}
	return out, nil
}

// TemplateName is the demo certificate template.
const TemplateName = "scepkit-user"

// Templates returns the demo template resolver: NDES style, every purpose resolves to
// one published template (one year, client authentication, RSA 2048 or more, ECDSA
// P-256/P-384).
func Templates() catemplate.Resolver {
	store := catemplate.MapStore{TemplateName: &catemplate.Template{
		Name: TemplateName, Validity: 365 * 24 * time.Hour, Backdate: 5 * time.Minute,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, MinKeySize: 2048,
		KeyTypes: []profile.KeyType{profile.RSA, profile.ECDSAP256, profile.ECDSAP384}, Published: true,
	}}
	return &catemplate.NDESResolver{SignatureTemplate: TemplateName, EncryptionTemplate: TemplateName,
		GeneralPurposeTemplate: TemplateName, Templates: store}
}

// ErrUnreachable is LoadKeySet's error for a JWKS URL that did not answer for now (no
// connection, a timeout, HTTP 429 or 5xx): the MDM may be starting.
var ErrUnreachable = mdmfile.ErrUnreachable

// LoadKeySet reads the MDM's challenge-verification keys, a JWKS document, from an
// http(s) URL or a file.
func LoadKeySet(ctx context.Context, src string) (*challenge.KeySet, error) {
	return mdmfile.LoadKeySet(ctx, src)
}

// NewLogger returns a slog logger writing to w in format "text" or "json".
func NewLogger(format string, w io.Writer) (*slog.Logger, error) {
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	}
	return nil, fmt.Errorf("-log %q: want text or json", format)
}

// WriteFileAtomic writes data so that a crash leaves either the old file or the new.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	return atomicfile.Write(path, data, mode)
}

// Serve serves h on ln with timeouts a slow client cannot hold open forever, until
// ctx ends; then it stops accepting, lets requests in flight finish (10 s at most) and
// returns nil.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	return ServeTLS(ctx, ln, nil, h, log)
}

// ServeTLS is Serve over TLS with cfg (plain HTTP when cfg is nil), ln the plain
// listener: the bound on headers being received counts below TLS, and net/http sees
// its own *tls.Conn (for r.TLS and client certificates).
func ServeTLS(ctx context.Context, ln net.Listener, cfg *tls.Config, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		TLSConfig:         cfg,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    128 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	ln = new(headerbudget.Budget).Install(srv, ln) // headers being received: bounded
	go func() {
		if cfg != nil {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing requests in flight")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
