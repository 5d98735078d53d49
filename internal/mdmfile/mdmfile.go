// Package mdmfile reads what a gateway is told by files standing in for an MDM's
// services: the directory of users and devices, and the MDM's challenge keys (a JWKS
// file or URL). The examples and cmd/scepkit share it.
package mdmfile

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/internal/plainhttp"
	"github.com/scepkit/scepkit/profile"
)

// DirectoryFile is the JSON file that stands in for the user directory and the device
// inventory:
//
//	{
//	  "users": [
//	    {"id": "alice@example.com", "upn": "alice@example.com", "email": "alice@example.com"},
//	    {"id": "mallory@example.com", "upn": "mallory@example.com", "disabled": true}
//	  ],
//	  "devices": [
//	    {"id": "alice-laptop", "user": "alice@example.com", "serial": "C02X", "compliant": true}
//	  ]
//	}
//
// A user's id is what challenges name (their sub claim); a device's user is the id of
// the user it is enrolled to. A device is refused unless "compliant" is true.
type DirectoryFile struct {
	Users []struct {
		ID       string `json:"id"`
		UPN      string `json:"upn"`
		Email    string `json:"email"`
		Name     string `json:"name"`
		Disabled bool   `json:"disabled"`
	} `json:"users"`
	Devices []struct {
		ID        string `json:"id"`
		User      string `json:"user"`
		Name      string `json:"name"`
		Serial    string `json:"serial"`
		Compliant bool   `json:"compliant"`
	} `json:"devices"`
}

// Size limits of what is read: a JWKS holds a few keys; a directory file may list many
// thousands of users and devices.
const (
	MaxJWKSSize      = 1 << 20
	MaxDirectorySize = 64 << 20
)

// Errors besides those of reading and parsing, to test with errors.Is: ErrTooLarge of
// LoadDirectory and LoadKeySet, ErrDuplicate and ErrTrailingData of LoadDirectory
// (LoadKeySet reports a duplicate key id or trailing data as challenge.ErrConfig).
var (
	// ErrTooLarge: the file or answer is over its size limit (MaxJWKSSize,
	// MaxDirectorySize). It is refused whole, never read in part.
	ErrTooLarge = errors.New("mdmfile: over the size limit")
	// ErrDuplicate: a directory file lists a user id or a device id twice (the
	// second would silently replace the first).
	ErrDuplicate = errors.New("mdmfile: duplicate id")
	// ErrTrailingData: something other than white space follows the JSON document.
	ErrTrailingData = errors.New("mdmfile: data after the JSON document")
	// ErrUnreachable: LoadKeySet could not have a JWKS URL's answer for now (no
	// connection, a timeout, HTTP 429 or 5xx), so that trying again later may
	// succeed; a malformed URL, a refused redirect, another status or a document
	// that does not parse will not change by waiting and is not ErrUnreachable.
	ErrUnreachable = errors.New("mdmfile: the MDM did not answer for now")
)

// IsURL reports whether src, a JWKS setting, is read over HTTP (an http or https URL,
// the scheme in any case) rather than from a file.
func IsURL(src string) bool {
	scheme, _, ok := strings.Cut(src, "://")
	return ok && (strings.EqualFold(scheme, "http") || strings.EqualFold(scheme, "https"))
}

// readAll reads r, at most limit bytes: more is ErrTooLarge.
func readAll(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
	}
	return b, nil
}

// readFile reads the file at path, at most limit bytes: more is ErrTooLarge. Its
// errors name the path.
func readFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := readAll(f, limit)
	if errors.Is(err, ErrTooLarge) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, err
}

// Directory is a loaded DirectoryFile: a crp.UserDirectory and a crp.DeviceRegistry.
type Directory struct {
	crp.MemoryDirectory
	crp.MemoryRegistry
}

// LoadDirectory reads a DirectoryFile of at most MaxDirectorySize bytes: one JSON
// document with the fields above only, each user id and each device id once.
func LoadDirectory(path string) (*Directory, error) {
	b, err := readFile(path, MaxDirectorySize)
	if err != nil {
		return nil, err
	}
	var f DirectoryFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("directory %s: %w", path, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("directory %s: %w", path, ErrTrailingData)
	}
	d := &Directory{}
	users := map[string]bool{}
	for i, u := range f.Users {
		if u.ID == "" {
			return nil, fmt.Errorf("directory %s: users[%d] has no id", path, i)
		}
		if users[u.ID] {
			return nil, fmt.Errorf("directory %s: users[%d]: %w %q", path, i, ErrDuplicate, u.ID)
		}
		users[u.ID] = true
		d.MemoryDirectory.Put(crp.User{User: profile.User{ID: u.ID, UserPrincipalName: u.UPN, Email: u.Email,
			UserName: u.Name}, Disabled: u.Disabled})
	}
	devices := map[string]bool{}
	for i, dev := range f.Devices {
		if dev.ID == "" || !users[dev.User] {
			return nil, fmt.Errorf("directory %s: devices[%d] needs an id and a user of the file", path, i)
		}
		if devices[dev.ID] {
			return nil, fmt.Errorf("directory %s: devices[%d]: %w %q", path, i, ErrDuplicate, dev.ID)
		}
		devices[dev.ID] = true
		d.MemoryRegistry.Put(crp.Device{Device: profile.Device{ID: dev.ID, AADDeviceID: dev.ID, Name: dev.Name,
			SerialNumber: dev.Serial}, UserID: dev.User, Compliant: dev.Compliant})
	}
	return d, nil
}

// LoadKeySet reads the MDM's challenge-verification keys, a JWKS document of at most
// MaxJWKSSize bytes (each kid once, nothing after the document), from an https URL,
// an http URL on a loopback host, or a file. Plain http elsewhere, or a redirect to
// it, is refused: whoever is on the path could put in keys of his own and mint
// challenges.
func LoadKeySet(ctx context.Context, src string) (*challenge.KeySet, error) {
	var b []byte
	name := src // what errors call the source: a URL without its password
	if IsURL(src) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
		if err != nil {
			return nil, errors.New("JWKS: the URL does not parse") // the parser's error quotes it whole
		}
		// Without its password nor its query (an API key may ride there).
		u := *req.URL
		if u.RawQuery != "" {
			u.RawQuery = "…"
		}
		name = u.Redacted()
		if port := req.URL.Port(); req.URL.Hostname() == "" || port != "" && !validPort(port) {
			return nil, fmt.Errorf("JWKS %s: no host, or a port out of range", name)
		}
		if !plainhttp.Protected(req.URL) {
			return nil, fmt.Errorf("JWKS %s: plain http from a host that is not loopback: use https or a file", name)
		}
		check := plainhttp.CheckRedirect(nil)
		client := &http.Client{CheckRedirect: func(r *http.Request, via []*http.Request) error {
			if err := check(r, via); err != nil {
				return &redirectError{err}
			}
			return nil
		}}
		resp, err := client.Do(req)
		if err != nil {
			var redirect *redirectError
			if errors.As(err, &redirect) {
				return nil, fmt.Errorf("JWKS %s: %w", name, redirect.err)
			}
			if untrusted(err) {
				// A certificate the system does not trust or that names another
				// host: a setting (or an attack) to look at, not an MDM starting.
				return nil, fmt.Errorf("JWKS %s: %w", name, err)
			}
			return nil, fmt.Errorf("JWKS %s: %w (%w)", name, ErrUnreachable, err)
		}
		defer resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
			return nil, fmt.Errorf("JWKS %s: %w: HTTP %s", name, ErrUnreachable, resp.Status)
		default:
			return nil, fmt.Errorf("JWKS %s: HTTP %s", name, resp.Status)
		}
		if b, err = readAll(resp.Body, MaxJWKSSize); err != nil {
			if !errors.Is(err, ErrTooLarge) {
				err = fmt.Errorf("%w (%w)", ErrUnreachable, err) // the answer broke off
			}
			return nil, fmt.Errorf("JWKS %s: %w", name, err)
		}
	} else {
		var err error
		if b, err = readFile(src, MaxJWKSSize); err != nil {
			return nil, err
		}
	}
	ks, err := challenge.ParseJWKS(b)
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", name, err)
	}
	if len(ks.KeyIDs()) == 0 {
		return nil, fmt.Errorf("JWKS %s: no usable signature key", name)
	}
	return ks, nil
}

// untrusted reports whether err is the TLS verification of the server's certificate
// failing: unknown authority, another host name, invalid.
func untrusted(err error) bool {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
	)
	return errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &verify)
}

// validPort reports whether p is a TCP port number, 1 to 65535.
func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535
}

// redirectError is a redirect LoadKeySet refused: a setting to mend, not an MDM
// that is down.
type redirectError struct{ err error }

func (e *redirectError) Error() string { return e.err.Error() }

// FollowKeySet reads src again every interval until ctx ends and makes dst hold its
// keys in one step (challenge.KeySet.Replace, algorithm pins included), so that a Verifier using dst follows the MDM's key rotation
// without a restart. On failure the keys in use stay and the failure is logged; a
// change is logged with the key IDs now trusted.
func FollowKeySet(ctx context.Context, src string, dst *challenge.KeySet, every time.Duration, log *slog.Logger) {
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ks, err := LoadKeySet(ctx, src)
		changed := false
		if err == nil {
			changed = dst.Replace(ks)
		}
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			log.Warn("jwks: reading the MDM's keys again failed; the keys in use stay", "err", err)
		case changed:
			log.Info("jwks: the MDM's keys changed", "kids", dst.KeyIDs())
		}
	}
}
