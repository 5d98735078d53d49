package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/internal/secretcmp"
)

// The admin API, on its own HTTPS listener. Every call is authenticated (a client
// certificate issued by admin.client_ca, or the bearer token of admin.token_file)
// and leaves one audit log line: who, what, on which object, and the outcome.
//
//	GET  /v1/pending                          pending requests
//	POST /v1/pending/{id}/approve             issue a pending request
//	POST /v1/pending/{id}/reject              refuse it; body {"reason": "..."}
//	POST /v1/certificates/{serial}/revoke     body {"reason": 0-10 (not 7)}; serial in hex
//	GET  /v1/certificates/{serial}            one issued certificate
//	GET  /v1/certificates?user=&device=&expiring_within=720h

// adminTLS is the admin listener's TLS configuration. issuing are the CA certificates
// that issue device certificates (with their chains): admin.client_ca may trust none
// of them, since every certificate the gateway issues is a clientAuth certificate and
// would make its device an operator.
func adminTLS(c *Config, issuing [][]*x509.Certificate) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.Admin.TLSCert, c.Admin.TLSKey)
	if err != nil {
		return nil, &SettingError{"admin.tls_cert", "SCEPKIT_ADMIN_TLS_CERT", err}
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.Admin.ClientCA != "" {
		certs, err := readCerts(c.Admin.ClientCA)
		if err != nil {
			return nil, &SettingError{"admin.client_ca", "SCEPKIT_ADMIN_CLIENT_CA", err}
		}
		pool := x509.NewCertPool()
		for _, cert := range certs {
			pool.AddCert(cert)
		}
		for _, chain := range issuing {
			inter := x509.NewCertPool()
			for _, cert := range chain[1:] {
				inter.AddCert(cert)
			}
			if _, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
				return nil, &SettingError{"admin.client_ca", "SCEPKIT_ADMIN_CLIENT_CA", fmt.Errorf(
					"it trusts %q, the CA that issues device certificates: every enrolled device could call the admin API",
					chain[0].Subject.String())}
			}
		}
		// A client certificate is optional (a bearer token may be used instead). It is
		// requested at the TLS layer and verified against the client CA by the handler,
		// so that a call with a certificate that does not verify is refused with 401 and
		// an audit line naming it, instead of a failed handshake nobody audits.
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequestClientCert
	}
	return tc, nil
}

type admin struct {
	g         *gateway
	token     []byte         // nil: no bearer token accepted
	clientCAs *x509.CertPool // nil: no client certificate accepted
	log       *slog.Logger
}

func newAdmin(g *gateway, clientCAs *x509.CertPool) (*admin, error) {
	a := &admin{g: g, clientCAs: clientCAs, log: g.log.With("audit", "admin")}
	if f := g.cfg.Admin.TokenFile; f != "" {
		b, err := readSecretFile(f)
		if err != nil {
			return nil, &SettingError{"admin.token_file", "SCEPKIT_ADMIN_TOKEN_FILE", err}
		}
		a.token = []byte(strings.TrimSpace(string(b)))
		if len(a.token) < 32 {
			return nil, &SettingError{"admin.token_file", "SCEPKIT_ADMIN_TOKEN_FILE", errors.New("the token must have at least 32 characters")}
		}
	}
	return a, nil
}

// who authenticates r: the subject of a client certificate that verifies against
// admin.client_ca (for clientAuth, as crypto/tls verifies one), or "token". A client
// certificate that does not verify refuses the call whatever else it carries; refused
// is then its (unverified) subject, for the audit line.
func (a *admin) who(r *http.Request) (who, refused string, ok bool) {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		leaf := r.TLS.PeerCertificates[0]
		if a.clientCAs != nil {
			inter := x509.NewCertPool()
			for _, c := range r.TLS.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: a.clientCAs, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
				return "cert:" + leaf.Subject.String(), "", true
			}
		}
		return "", leaf.Subject.String(), false
	}
	if a.token != nil {
		if h, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok &&
			secretcmp.Equal([]byte(h), a.token) {
			return "token", "", true
		}
	}
	return "", "", false
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool // the header is sent: the status can no longer change
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (a *admin) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/pending", a.pending)
	mux.HandleFunc("POST /v1/pending/{id}/approve", a.approve)
	mux.HandleFunc("POST /v1/pending/{id}/reject", a.reject)
	mux.HandleFunc("POST /v1/certificates/{serial}/revoke", a.revoke)
	mux.HandleFunc("GET /v1/certificates/{serial}", a.certificate)
	mux.HandleFunc("GET /v1/certificates", a.certificates)
	return a.audited(mux)
}

// audited authenticates every call before next sees it, and writes its audit line
// from a defer, so that a call whose handler panics is audited too. Such a panic is
// logged and answered 500 with no detail (or, once the answer is under way, the
// connection is cut, as net/http does).
func (a *admin) audited(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		who, refused, ok := a.who(r)
		defer func() {
			p := recover()
			aborted := false
			if p != nil {
				a.log.ErrorContext(r.Context(), "admin call panicked", "path", r.URL.Path, "panic", fmt.Sprint(p),
					"stack", string(debug.Stack()))
				if aborted = sw.wrote; !aborted {
					writeJSON(sw, http.StatusInternalServerError, apiError{http.StatusText(http.StatusInternalServerError)})
				}
			}
			attrs := []slog.Attr{slog.String("who", who)}
			if refused != "" {
				attrs = append(attrs, slog.String("refused_cert", refused))
			}
			attrs = append(attrs, slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.String("query", r.URL.RawQuery), slog.Int("status", sw.status))
			if p != nil {
				attrs = append(attrs, slog.Bool("panicked", true))
			}
			a.log.LogAttrs(r.Context(), slog.LevelInfo, "admin call", append(attrs,
				slog.String("remote", r.RemoteAddr), slog.Duration("duration", time.Since(start)))...)
			if aborted {
				panic(http.ErrAbortHandler) // the status is sent: cut the answer short
			}
		}()
		if !ok {
			sw.Header().Set("WWW-Authenticate", `Bearer realm="scepkit admin"`)
			writeJSON(sw, http.StatusUnauthorized, apiError{"authentication required"})
			return
		}
		r.Body = http.MaxBytesReader(sw, r.Body, 64<<10)
		next.ServeHTTP(sw, r)
	})
}

type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// PendingRequest is one pending request as the admin API lists it.
type PendingRequest struct {
	TransactionID string    `json:"transaction_id"`
	UserID        string    `json:"user"`
	DeviceID      string    `json:"device"`
	ProfileID     string    `json:"profile"`
	Template      string    `json:"template"`
	Expires       time.Time `json:"expires"`
}

// Certificate is one issued certificate as the admin API shows it.
type Certificate struct {
	Serial    string    `json:"serial"`
	Subject   string    `json:"subject"`
	UserID    string    `json:"user"`
	DeviceID  string    `json:"device"`
	ProfileID string    `json:"profile"`
	Template  string    `json:"template"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	Revoked   bool      `json:"revoked"`
	PEM       string    `json:"pem,omitempty"`
}

func (a *admin) pending(w http.ResponseWriter, r *http.Request) {
	if a.g.pending == nil {
		writeJSON(w, http.StatusNotImplemented, apiError{"the transaction store (Redis) cannot list pending requests"})
		return
	}
	recs, err := a.g.pending.Pending(r.Context(), r.URL.Query().Get("after"), 0)
	if err != nil {
		a.fail(w, r, http.StatusServiceUnavailable, err)
		return
	}
	out := []PendingRequest{}
	for _, rec := range recs {
		out = append(out, PendingRequest{rec.TransactionID, rec.UserID, rec.DeviceID, rec.ProfileID, rec.Template, rec.Expires})
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *admin) approve(w http.ResponseWriter, r *http.Request) {
	cert, err := a.g.rp.Approve(r.Context(), r.PathValue("id"))
	if err != nil {
		a.decisionError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a.certJSON(r.Context(), &crp.IssuedCertificate{Certificate: cert}))
}

func (a *admin) reject(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Reason string `json:"reason"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil && !errors.Is(err, io.EOF) {
			badBody(w, err, `body: {"reason": "..."}`)
			return
		}
	}
	why := errors.New("rejected by an operator")
	if body.Reason != "" {
		why = fmt.Errorf("rejected by an operator: %s", body.Reason)
	}
	if err := a.g.rp.Reject(r.Context(), r.PathValue("id"), why); err != nil {
		a.decisionError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"rejected": r.PathValue("id")})
}

func (a *admin) decisionError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, crp.ErrNotFound):
		writeJSON(w, http.StatusNotFound, apiError{"no such transaction"})
	case errors.Is(err, crp.ErrDecided):
		writeJSON(w, http.StatusConflict, apiError{"already decided"})
	case errors.Is(err, crp.ErrUnavailable):
		a.fail(w, r, http.StatusServiceUnavailable, err)
	default:
		// A refusal on re-checking (the device is no longer compliant, say), or the
		// transaction is not pending: the detail is the operator's to read.
		writeJSON(w, http.StatusConflict, apiError{err.Error()})
	}
}

func (a *admin) fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	a.log.ErrorContext(r.Context(), "admin call failed", "path", r.URL.Path, "err", err)
	writeJSON(w, status, apiError{http.StatusText(status)})
}

// badBody answers a request body that cannot be read: 413 beyond the size limit,
// otherwise 400 with what the body should be.
func badBody(w http.ResponseWriter, err error, want string) {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeJSON(w, http.StatusRequestEntityTooLarge, apiError{"body too large"})
		return
	}
	writeJSON(w, http.StatusBadRequest, apiError{want})
}

func parseSerial(s string) (*big.Int, bool) {
	n, ok := new(big.Int).SetString(strings.TrimPrefix(strings.ToLower(s), "0x"), 16)
	if !ok || n.Sign() <= 0 || n.BitLen() > 160 {
		return nil, false
	}
	return n, true
}

func (a *admin) revoke(w http.ResponseWriter, r *http.Request) {
	serial, ok := parseSerial(r.PathValue("serial"))
	if !ok {
		writeJSON(w, http.StatusBadRequest, apiError{"serial: hexadecimal, positive, at most 20 octets"})
		return
	}
	var body struct {
		Reason *int `json:"reason"`
	}
	const want = `body: {"reason": CRLReason 0-10, not 7}`
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Reason == nil {
		badBody(w, err, want)
		return
	}
	who, _, _ := a.who(r)
	rev := &crp.Revocation{Serial: serial, Reason: *body.Reason, RevokedAt: time.Now(), By: who}
	if crp.CheckRevocation(rev) != nil {
		writeJSON(w, http.StatusBadRequest, apiError{want})
		return
	}
	issued, err := a.g.store.Lookup(r.Context(), serial)
	if errors.Is(err, crp.ErrNotFound) {
		writeJSON(w, http.StatusNotFound, apiError{"no certificate with this serial was issued here"})
		return
	} else if err != nil {
		a.fail(w, r, http.StatusServiceUnavailable, err)
		return
	}
	rev, err = a.g.crlFor(issued.Certificate).Revoke(r.Context(), rev)
	if err != nil {
		a.fail(w, r, http.StatusServiceUnavailable, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"serial": rev.Serial.Text(16), "reason": rev.Reason, "revoked_at": rev.RevokedAt})
}

func (a *admin) certJSON(ctx context.Context, c *crp.IssuedCertificate) Certificate {
	revoked, _ := a.g.store.IsRevoked(ctx, c.Certificate)
	return Certificate{Serial: c.Certificate.SerialNumber.Text(16), Subject: c.Certificate.Subject.String(),
		UserID: c.UserID, DeviceID: c.DeviceID, ProfileID: c.ProfileID, Template: c.Template,
		NotBefore: c.Certificate.NotBefore, NotAfter: c.Certificate.NotAfter, Revoked: revoked}
}

func (a *admin) certificate(w http.ResponseWriter, r *http.Request) {
	serial, ok := parseSerial(r.PathValue("serial"))
	if !ok {
		writeJSON(w, http.StatusBadRequest, apiError{"serial: hexadecimal, positive, at most 20 octets"})
		return
	}
	c, err := a.g.store.Lookup(r.Context(), serial)
	if errors.Is(err, crp.ErrNotFound) {
		writeJSON(w, http.StatusNotFound, apiError{"not found"})
		return
	} else if err != nil {
		a.fail(w, r, http.StatusServiceUnavailable, err)
		return
	}
	writeJSON(w, http.StatusOK, a.certJSON(r.Context(), c))
}

func (a *admin) certificates(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	cq := crp.CertificateQuery{UserID: q.Get("user"), DeviceID: q.Get("device")}
	if s := q.Get("expiring_within"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			writeJSON(w, http.StatusBadRequest, apiError{"expiring_within: a positive duration such as 720h"})
			return
		}
		now := time.Now()
		cq.ExpiresAfter, cq.ExpiresBefore = now, now.Add(d)
	}
	list, err := a.g.store.Certificates(r.Context(), cq)
	if err != nil {
		a.fail(w, r, http.StatusServiceUnavailable, err)
		return
	}
	out := []Certificate{}
	for _, c := range list {
		out = append(out, a.certJSON(r.Context(), c))
	}
	writeJSON(w, http.StatusOK, out)
}
