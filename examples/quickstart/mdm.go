package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/profile"
)

// mdm is the demo MDM: it enrolls a device to a user and hands out its SCEP profile
// with a fresh challenge.
type mdm struct {
	gw   *gateway
	base string
	ttl  time.Duration
	log  *slog.Logger
}

// profileJSON is the answer of GET /mdm/profile.
type profileJSON struct {
	SCEPURL       string   `json:"scep_url"`
	Challenge     string   `json:"challenge"`
	Subject       string   `json:"subject"`
	SANs          []string `json:"sans"`
	KeySize       int      `json:"key_size"`
	CAFingerprint string   `json:"ca_fingerprint"`
	Expires       string   `json:"expires"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (m *mdm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
		return
	}
	q := r.URL.Query()
	user, device := q.Get("user"), q.Get("device")
	if user == "" || device == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "user and device are required"})
		return
	}
	if len(user) > maxNameBytes || len(device) > maxNameBytes {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("user and device are %d bytes at most", maxNameBytes)})
		return
	}
	if !printableName(user) || !printableName(device) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "user and device must be printable UTF-8 text"})
		return
	}
	p, _, err := m.issue(r.Context(), user, device)
	switch {
	case errors.Is(err, errForbidden):
		writeJSON(w, http.StatusForbidden, map[string]string{"error": err.Error()})
	case errors.Is(err, errDeviceTaken):
		writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
	case errors.Is(err, errTooManyDevices):
		m.log.WarnContext(r.Context(), "mdm: profile refused", "device", device, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
	case err != nil:
		m.log.ErrorContext(r.Context(), "mdm: profile", "user", user, "device", device, "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error"})
	default:
		writeJSON(w, http.StatusOK, p)
	}
}

var errForbidden = errors.New("user unknown or disabled")

// maxNameBytes bounds a user or device name the profile endpoint takes.
const maxNameBytes = 256

// errBadName: a user or device name that is not UTF-8.
var errBadName = errors.New("user and device must be UTF-8 text")

// printableName reports whether s is UTF-8 without control characters: a name that
// goes into certificates, logs and the device book as it is.
func printableName(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// issue enrolls device to user and mints the profile and challenge for them.
func (m *mdm) issue(ctx context.Context, user, device string) (*profileJSON, *profile.Rendered, error) {
	u, err := m.gw.Users.LookupUser(ctx, user)
	if errors.Is(err, crp.ErrNotFound) || (err == nil && u.Disabled) {
		return nil, nil, errForbidden
	}
	if err != nil {
		return nil, nil, err
	}
	if err := m.gw.Enrolled.enroll(device, u.ID); err != nil {
		return nil, nil, err
	}
	rendered, err := m.gw.Rendered(ctx, u.ID, device)
	if err != nil {
		return nil, nil, err
	}
	ch, claims, err := m.gw.Challenge(u.ID, device, m.ttl)
	if err != nil {
		return nil, nil, err
	}
	sum := sha256.Sum256(m.gw.CA.Certificate.Raw)
	sans := []string{}
	for _, s := range rendered.DNSNames {
		sans = append(sans, "DNS:"+s)
	}
	for _, s := range rendered.EmailAddresses {
		sans = append(sans, "email:"+s)
	}
	for _, s := range rendered.UPNs {
		sans = append(sans, "UPN:"+s)
	}
	for _, s := range rendered.URIs {
		sans = append(sans, "URI:"+s.String())
	}
	m.log.InfoContext(ctx, "mdm: profile issued", "user", u.ID, "device", device,
		"challenge", challenge.Fingerprint(ch), "expires", claims.Expires)
	return &profileJSON{
		SCEPURL: m.base + "/scep", Challenge: ch, Subject: rendered.SubjectString(), SANs: sans,
		KeySize: rendered.KeySize, CAFingerprint: hex.EncodeToString(sum[:]),
		Expires: claims.Expires.UTC().Format(time.RFC3339),
	}, rendered, nil
}
