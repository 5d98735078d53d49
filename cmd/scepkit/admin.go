package main

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
	"math/big"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/scepkit/scepkit/boltstore"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/internal/logtext"
	"github.com/scepkit/scepkit/internal/pemfile"
	"github.com/scepkit/scepkit/internal/secretcmp"
	"github.com/scepkit/scepkit/scep"
)

// The admin API, on its own HTTPS listener. Every call is authenticated (a client
// certificate issued by admin.client_ca, or the bearer token of admin.token_file)
// and leaves one audit log line: who, what, on which object, and the outcome.
//
//	GET  /v1/pending?after=                   pending requests, a page
//	POST /v1/pending/{id}/approve             issue a pending request
//	POST /v1/pending/{id}/reject              refuse it; body {"reason": "..."}
//	POST /v1/certificates/{serial}/revoke     body {"reason": 0-6, 9 or 10}; serial in hex
//	GET  /v1/certificates/{serial}            one issued certificate
//	GET  /v1/certificates?user=&device=&expiring_within=720h&withheld=true&after=
//
// A list answers one page of at most pageSize entries, and "next" when there may be
// more: the next page is the same call with after set to it. Only a page without
// "next" ends a list: one of withheld certificates may be short, or empty, and have
// one (see withheldPage).

// adminTLS is the admin listener's TLS configuration, read from its files. A client
// CA it names is checked against the issuing CAs by checkClientCA once they are known.
func adminTLS(c *config) (*tls.Config, error) {
	cert, err := loadKeyPair("admin.", c.Admin.TLSCert, c.Admin.TLSKey)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.Admin.ClientCA != "" {
		if err := othersMayWrite(c.Admin.ClientCA); err != nil {
			return nil, settingError("admin.client_ca", err)
		}
		certs, err := pemfile.ReadCertificates(c.Admin.ClientCA)
		if err != nil {
			return nil, settingError("admin.client_ca", err)
		}
		pool := x509.NewCertPool()
		for _, cert := range certs {
			pool.AddCert(cert)
		}
		// A client certificate is optional (a bearer token may be used instead). It is
		// requested at the TLS layer and verified against the client CA by the handler,
		// so that a call with a certificate that does not verify is refused with 401 and
		// an audit line naming it, instead of a failed handshake nobody audits.
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequestClientCert
	}
	return tc, nil
}

// checkClientCA refuses an admin.client_ca (pool, nil for none) that trusts one of
// issuing, the CA certificates that issue device certificates (with their chains):
// every certificate the gateway issues is a clientAuth certificate and would make its
// device an operator.
func checkClientCA(pool *x509.CertPool, issuing [][]*x509.Certificate) error {
	if pool == nil {
		return nil
	}
	for _, chain := range issuing {
		inter := x509.NewCertPool()
		for _, cert := range chain[1:] {
			inter.AddCert(cert)
		}
		if _, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
			return settingError("admin.client_ca", fmt.Errorf(
				"it trusts %q, the CA that issues device certificates: every enrolled device could call the admin API",
				chain[0].Subject.String()))
		}
	}
	return nil
}

// adminToken reads admin.token_file; nil when none is set (no bearer token accepted).
func adminToken(c *config) ([]byte, error) {
	f := c.Admin.TokenFile
	if f == "" {
		return nil, nil
	}
	b, err := readSecretFile(f)
	if err != nil {
		return nil, settingError("admin.token_file", err)
	}
	token := []byte(strings.TrimSpace(string(b)))
	if len(token) < 32 {
		return nil, settingError("admin.token_file", errors.New("the token must have at least 32 characters"))
	}
	return token, nil
}

type admin struct {
	g         *gateway
	token     []byte         // nil: no bearer token accepted
	clientCAs *x509.CertPool // nil: no client certificate accepted
	log       *slog.Logger
	backupMu  sync.Mutex // held while a backup is taken: one at a time
}

func newAdmin(g *gateway, clientCAs *x509.CertPool, token []byte) *admin {
	return &admin{g: g, clientCAs: clientCAs, token: token, log: g.log.With("audit", "admin")}
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
		// The scheme is case-insensitive (RFC 9110 §11.1); the token is not.
		if scheme, h, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") &&
			secretcmp.Equal([]byte(h), a.token) {
			return "token", "", true
		}
	}
	return "", "", false
}

type statusWriter struct {
	http.ResponseWriter
	status   int
	wrote    bool   // the header is sent: the status can no longer change
	abortWhy string // why abortAnswer cut the answer short, for the audit line
}

// abortAnswer cuts short an answer under way (its status sent): the connection is
// closed, so that the caller cannot take what it received for a whole answer, and
// the audit line says the call was aborted, and why. why is written to the log as
// it is: a fixed phrase, never an error's text.
func abortAnswer(w http.ResponseWriter, why string) {
	for {
		if sw, ok := w.(*statusWriter); ok {
			sw.abortWhy = why
			break
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			break
		}
		w = u.Unwrap()
	}
	panic(http.ErrAbortHandler)
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
	mux.HandleFunc("GET /v1/backup", a.backup)
	return a.audited(routed(mux))
}

// routed serves mux, answering the calls it has no route for as the API answers its
// other refusals: a JSON error, 404, or 405 with Allow. HEAD is refused: Go's router
// hands it to the GET routes and drops their answer's body, so a HEAD of /v1/backup
// read the whole store for nothing.
func routed(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			get := *r
			get.Method = http.MethodGet
			if _, pattern := mux.Handler(&get); pattern != "" {
				w.Header().Set("Allow", http.MethodGet)
				writeJSON(w, http.StatusMethodNotAllowed, apiError{http.StatusText(http.StatusMethodNotAllowed)})
				return
			}
		}
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r) // which sets the path's values
			return
		}
		// The router's own answer, 404 or 405, for its status and Allow only.
		miss := &routeMiss{header: http.Header{}, status: http.StatusNotFound}
		h.ServeHTTP(miss, r)
		if allow := miss.header.Get("Allow"); allow != "" {
			var methods []string
			for _, m := range strings.Split(allow, ",") {
				if m = strings.TrimSpace(m); m != http.MethodHead {
					methods = append(methods, m)
				}
			}
			w.Header().Set("Allow", strings.Join(methods, ", "))
		}
		writeJSON(w, miss.status, apiError{http.StatusText(miss.status)})
	})
}

// routeMiss takes the router's answer to a call it has no route for, keeping its
// status and headers, dropping its plain-text body.
type routeMiss struct {
	header http.Header
	status int
}

func (m *routeMiss) Header() http.Header         { return m.header }
func (m *routeMiss) Write(b []byte) (int, error) { return len(b), nil }
func (m *routeMiss) WriteHeader(status int)      { m.status = status }

// callerKey is the context key of the authenticated caller, as audited found it.
type callerKey struct{}

// caller is who made the call r, as audited authenticated it.
func caller(r *http.Request) string {
	who, _ := r.Context().Value(callerKey{}).(string)
	return who
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
			aborted := p == http.ErrAbortHandler // a handler that cut its own answer short (abortAnswer says why)
			panicked := p != nil && !aborted
			if panicked {
				a.log.ErrorContext(r.Context(), "admin call panicked", "path", loggedPath(r), "panic", fmt.Sprint(p),
					"stack", string(debug.Stack()))
				if aborted = sw.wrote; !aborted {
					writeJSON(sw, http.StatusInternalServerError, apiError{http.StatusText(http.StatusInternalServerError)})
				}
			}
			attrs := []slog.Attr{slog.String("who", who)}
			if refused != "" {
				attrs = append(attrs, slog.String("refused_cert", logtext.Cut(refused, 256)))
			}
			// Bounded, and a caller who did not authenticate gets no query logged (it may
			// hold a token sent where it does not belong).
			attrs = append(attrs, slog.String("method", r.Method), slog.String("path", loggedPath(r)))
			if ok {
				attrs = append(attrs, slog.String("query", logtext.Cut(r.URL.RawQuery, 512)))
			} else if r.URL.RawQuery != "" {
				attrs = append(attrs, slog.Int("query_bytes", len(r.URL.RawQuery)))
			}
			attrs = append(attrs, slog.Int("status", sw.status))
			if panicked {
				attrs = append(attrs, slog.Bool("panicked", true))
			}
			if aborted {
				// The status says what was sent first, not that the answer was whole.
				why := sw.abortWhy
				switch {
				case panicked:
					why = "the handler panicked"
				case why == "":
					why = "cut short by the handler"
				}
				attrs = append(attrs, slog.Bool("aborted", true), slog.String("abort_reason", why))
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
		if crossSite(r) {
			writeJSON(sw, http.StatusForbidden, apiError{"cross-site requests are refused"})
			return
		}
		r.Body = http.MaxBytesReader(sw, r.Body, 64<<10)
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), callerKey{}, who)))
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

// pendingRequest is one pending request as the admin API lists it.
type pendingRequest struct {
	TransactionID string    `json:"transaction_id"`
	UserID        string    `json:"user"`
	DeviceID      string    `json:"device"`
	ProfileID     string    `json:"profile"`
	Template      string    `json:"template"`
	Expires       time.Time `json:"expires"`
}

// apiCertificate is one issued certificate as the admin API shows it.
type apiCertificate struct {
	Serial  string `json:"serial"`
	Subject string `json:"subject"`
	// Issuer is the CA that signed it: after a rollover, the previous CA or the next.
	Issuer    string    `json:"issuer"`
	UserID    string    `json:"user"`
	DeviceID  string    `json:"device"`
	ProfileID string    `json:"profile"`
	Template  string    `json:"template"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	Revoked   bool      `json:"revoked"`
	// Withheld: the CA issued it, the device was refused it (revoke it).
	Withheld bool   `json:"withheld,omitempty"`
	PEM      string `json:"pem,omitempty"`
}

// pageSize is how many entries a list call answers at most.
const pageSize = crp.DefaultListLimit

// pendingPage is one page of pending requests as the admin API lists them.
type pendingPage struct {
	Pending []pendingRequest `json:"pending"`
	// Next, when set, is the after of the next page; absent on the last page.
	Next string `json:"next,omitempty"`
}

// certificatePage is one page of issued certificates as the admin API lists them.
type certificatePage struct {
	Certificates []apiCertificate `json:"certificates"`
	// Next, when set, is the after of the next page; absent on the last page.
	Next string `json:"next,omitempty"`
}

func (a *admin) pending(w http.ResponseWriter, r *http.Request) {
	if a.g.pending == nil {
		writeJSON(w, http.StatusNotImplemented, apiError{"the transaction store (Redis) cannot list pending requests"})
		return
	}
	q, err := listQuery(r, "after")
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{err.Error()})
		return
	}
	recs, err := a.g.pending.Pending(r.Context(), q.Get("after"), pageSize)
	if err != nil {
		a.fail(w, r, http.StatusServiceUnavailable, err)
		return
	}
	out := pendingPage{Pending: []pendingRequest{}}
	for _, rec := range recs {
		out.Pending = append(out.Pending, pendingRequest{rec.TransactionID, rec.UserID, rec.DeviceID, rec.ProfileID, rec.Template, rec.Expires})
	}
	if len(recs) == pageSize {
		out.Next = recs[len(recs)-1].TransactionID
	}
	writeJSON(w, http.StatusOK, out)
}

// approve issues a pending request and answers with the certificate and what it was
// issued for. The request is looked up first: an unknown id is 404 and a request no
// longer pending 409, before anything is decided.
func (a *admin) approve(w http.ResponseWriter, r *http.Request) {
	// No field is taken: the body is none or {}. A field an operator sends believing
	// it acts (a template, a reason) is refused, not ignored.
	var body struct{}
	if err := decodeBody(r.Body, &body); err != nil && err != io.EOF {
		badBody(w, err, `no body, or {}`)
		return
	}
	id := r.PathValue("id")
	rec, err := a.g.rp.Transactions.Get(r.Context(), id)
	if err == nil && rec.Status != scep.Pending {
		err = crp.ErrDecided
	}
	if err != nil {
		a.decisionError(w, r, err)
		return
	}
	cert, err := a.g.rp.Approve(r.Context(), id)
	if err != nil {
		a.decisionError(w, r, err)
		return
	}
	// The inventory's record says what was issued (the template is resolved again on
	// approval); should it not answer, the pending request says what was approved.
	issued, err := a.g.store.Lookup(r.Context(), cert.SerialNumber)
	if err != nil {
		a.log.WarnContext(r.Context(), "approved, but the issued certificate's record cannot be read",
			"transaction_id", id, "serial", cert.SerialNumber.Text(16), "err", err)
		issued = &crp.IssuedCertificate{Certificate: cert, UserID: rec.UserID, DeviceID: rec.DeviceID,
			ProfileID: rec.ProfileID, Template: rec.Template}
	}
	// Just issued: its serial is new, so no revocation can name it yet.
	writeJSON(w, http.StatusOK, certificateJSON(issued, false))
}

func (a *admin) reject(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Reason string `json:"reason"`
	}
	// The body is optional: none rejects without a reason.
	if err := decodeBody(r.Body, &body); err != nil && err != io.EOF {
		badBody(w, err, `body: {"reason": "..."}`)
		return
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

// failedOnOurSide are the reasons of a *crp.Error that say the gateway, its store or
// its CA failed, not that the request was refused.
var failedOnOurSide = map[crp.Reason]bool{crp.ReasonInternal: true, crp.ReasonCARefused: true,
	crp.ReasonCAUnavailable: true, crp.ReasonNotifyFailed: true, crp.ReasonMisconfigured: true}

func (a *admin) decisionError(w http.ResponseWriter, r *http.Request, err error) {
	var e *crp.Error
	switch {
	case errors.Is(err, crp.ErrNotFound):
		writeJSON(w, http.StatusNotFound, apiError{"no such transaction"})
	case errors.Is(err, crp.ErrDecided):
		writeJSON(w, http.StatusConflict, apiError{"already decided"})
	case errors.As(err, &e) && !errors.Is(err, crp.ErrUnavailable) && !failedOnOurSide[e.Reason]:
		// A refusal on re-checking (the device is no longer compliant, say): the
		// phase and reason are the operator's to read; what lies under them (an
		// error of the directory's client, say) goes to the log.
		a.log.InfoContext(r.Context(), "admin decision refused", "path", loggedPath(r), "err", err)
		writeJSON(w, http.StatusConflict, apiError{(&crp.Error{Phase: e.Phase, Reason: e.Reason}).Error()})
	default:
		// The store or the CA failed: logged, not told.
		a.fail(w, r, http.StatusServiceUnavailable, err)
	}
}

func (a *admin) fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	a.log.ErrorContext(r.Context(), "admin call failed", "path", loggedPath(r), "err", err)
	writeJSON(w, status, apiError{http.StatusText(status)})
}

// errTrailingData: a request body holds more than its one JSON object.
var errTrailingData = errors.New("data after the JSON object")

// decodeBody reads a request body into v: one JSON object with v's fields only, and
// nothing after it but white space (a second object, or a field the call does not
// take, is an operator's mistake that would otherwise be acted on as something
// else). An empty body is io.EOF itself.
func decodeBody(body io.Reader, v any) error {
	data, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	if err := exactKeys(data, v); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data)) // exactKeys refused unknown fields
	if err := dec.Decode(v); err != nil {
		return err
	}
	switch _, err := dec.Token(); {
	case err == nil:
		return errTrailingData
	case err != io.EOF:
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return err
		}
		return errTrailingData
	}
	return nil
}

// errFieldTwice is a body's field given twice, errUnknownField one the call does not
// take (or written in another case).
var (
	errFieldTwice   = errors.New("a field given twice")
	errUnknownField = errors.New("unknown field")
)

// exactKeys refuses a JSON object whose keys repeat, or are not the names of v's
// fields as written (v points to a struct): encoding/json takes the last of repeated
// keys and matches names in any case, so {"reason":7,"reason":1} revoked with reason
// 1, and "UNRECORDED" would count as "unrecorded". What is not an object is left to
// the decoder to refuse.
func exactKeys(data []byte, v any) error {
	t := reflect.TypeOf(v).Elem()
	names := make(map[string]bool, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "" {
			name = t.Field(i).Name
		}
		names[name] = true
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		k, _ := tok.(string)
		switch {
		case seen[k]:
			return fmt.Errorf("%w: %q", errFieldTwice, logtext.Cut(k, 64))
		case !names[k]:
			return fmt.Errorf("%w %q", errUnknownField, logtext.Cut(k, 64))
		}
		seen[k] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
	}
	return nil
}

// badBody answers a request body that cannot be read: 413 beyond the size limit,
// otherwise 400 with what the body should be, and what is wrong with it when that
// is a field the call does not take or data after the object.
func badBody(w http.ResponseWriter, err error, want string) {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeJSON(w, http.StatusRequestEntityTooLarge, apiError{"body too large"})
		return
	}
	msg := want
	if err != nil {
		if errors.Is(err, errUnknownField) || errors.Is(err, errFieldTwice) || errors.Is(err, errTrailingData) {
			msg = err.Error() + "; " + want
		}
	}
	writeJSON(w, http.StatusBadRequest, apiError{msg})
}

// parseSerial reads a serial in hex as tools print it: "0a3f", "0x0a3f", "0A3F", or
// with colons between the octets ("0a:3f", as openssl x509 -text prints it).
func parseSerial(s string) (*big.Int, bool) {
	s = strings.TrimPrefix(strings.ToLower(s), "0x")
	if strings.Contains(s, ":") {
		for i, part := range strings.Split(s, ":") {
			if len(part) != 2 && (i > 0 || len(part) != 1) {
				return nil, false // colons between octets only
			}
		}
		s = strings.ReplaceAll(s, ":", "")
	}
	n, ok := new(big.Int).SetString(s, 16)
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
		// Unrecorded revokes a serial the inventory does not hold: a certificate the CA
		// signed that could not be recorded and was withheld from the device (logged
		// "certificate issued but withheld from the device; revoke it"). It goes into
		// the CRL of every CA the gateway serves (current and next), since which one
		// signed it is not on record.
		Unrecorded bool `json:"unrecorded"`
	}
	const want = `body: {"reason": CRLReason 0-6, 9 or 10, "unrecorded": optional boolean}`
	if err := decodeBody(r.Body, &body); err != nil || body.Reason == nil {
		badBody(w, err, want)
		return
	}
	rev := &crp.Revocation{Serial: serial, Reason: *body.Reason, RevokedAt: time.Now(), By: caller(r)}
	if crp.CheckRevocation(rev) != nil {
		writeJSON(w, http.StatusBadRequest, apiError{want})
		return
	}
	issued, err := a.g.store.Lookup(r.Context(), serial)
	var crl *crp.CRLPublisher
	switch {
	case errors.Is(err, crp.ErrNotFound) && body.Unrecorded:
		// Which CA signed it is not on record (around a rollover either may have):
		// revoked for every CA (no Issuer), recorded first, so that each CRL
		// publisher finds it there and lists it.
		a.log.WarnContext(r.Context(), "admin revocation of a serial not in the inventory, for every CA", "serial", serial.Text(16))
		if rev, err = a.g.store.Revoke(r.Context(), rev); err != nil {
			a.fail(w, r, http.StatusServiceUnavailable, err)
			return
		}
		crl = a.g.crl
		if a.g.nextCRL != nil {
			if _, err := a.g.nextCRL.Revoke(r.Context(), rev); err != nil {
				a.fail(w, r, http.StatusServiceUnavailable, err)
				return
			}
		}
	case errors.Is(err, crp.ErrNotFound):
		writeJSON(w, http.StatusNotFound, apiError{"no certificate with this serial was issued here " +
			"(for one withheld from its device and not recorded, revoke with \"unrecorded\": true)"})
		return
	case err != nil:
		a.fail(w, r, http.StatusServiceUnavailable, err)
		return
	default:
		rev.Issuer = issued.Certificate.RawIssuer
		crl = a.g.crlFor(issued.Certificate)
	}
	rev, err = crl.Revoke(r.Context(), rev)
	if errors.Is(err, crp.ErrRevokedForOtherCA) {
		a.log.WarnContext(r.Context(), "admin revocation refused", "path", loggedPath(r), "err", err)
		writeJSON(w, http.StatusConflict, apiError{"the serial is already revoked for another CA's certificate"})
		return
	}
	if err != nil {
		a.fail(w, r, http.StatusServiceUnavailable, err)
		return
	}
	// With its reason, which the audit line (path and status) lacks: after a restore
	// from a backup, the revocations made since are made again from these lines.
	a.log.InfoContext(r.Context(), "admin: revoked", "serial", rev.Serial.Text(16), "reason", rev.Reason,
		"revoked_at", rev.RevokedAt, "by", rev.By, "unrecorded", body.Unrecorded)
	writeJSON(w, http.StatusOK, map[string]any{"serial": rev.Serial.Text(16), "reason": rev.Reason, "revoked_at": rev.RevokedAt})
}

// certJSON is c as the admin API shows it. An error of the revocation check is
// returned, never answered as "not revoked".
func (a *admin) certJSON(ctx context.Context, c *crp.IssuedCertificate) (apiCertificate, error) {
	revoked, err := a.g.store.IsRevoked(ctx, c.Certificate)
	if err != nil {
		return apiCertificate{}, fmt.Errorf("revocation check of %s: %w", c.Certificate.SerialNumber.Text(16), err)
	}
	return certificateJSON(c, revoked), nil
}

func certificateJSON(c *crp.IssuedCertificate, revoked bool) apiCertificate {
	return apiCertificate{Serial: c.Certificate.SerialNumber.Text(16), Subject: c.Certificate.Subject.String(),
		Issuer: c.Certificate.Issuer.String(), UserID: c.UserID, DeviceID: c.DeviceID, ProfileID: c.ProfileID, Template: c.Template,
		NotBefore: c.Certificate.NotBefore, NotAfter: c.Certificate.NotAfter, Revoked: revoked, Withheld: c.Withheld}
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
	out, err := a.certJSON(r.Context(), c)
	if err != nil {
		a.fail(w, r, http.StatusServiceUnavailable, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// backup answers a copy of the embedded store taken while the gateway serves
// (boltstore's Backup, which copies beside the store first, so that a slow caller
// holds nothing of the store's). One at a time: each copy is the size of the store,
// on its disk. With PostgreSQL the database is backed up with its own tools.
func (a *admin) backup(w http.ResponseWriter, r *http.Request) {
	bs, ok := a.g.store.(*boltstore.Store)
	if !ok {
		writeJSON(w, http.StatusNotImplemented, apiError{"the store is PostgreSQL: back it up with pg_dump"})
		return
	}
	if !a.backupMu.TryLock() {
		writeJSON(w, http.StatusConflict, apiError{"a backup is being taken: try again once it is done"})
		return
	}
	defer a.backupMu.Unlock()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", "no-store") // every certificate and transaction, as writeJSON's answers say
	w.Header().Set("Content-Disposition", `attachment; filename="`+boltstore.FileName+`"`)
	bw := &startedWriter{w: w, rc: http.NewResponseController(w)}
	if _, err := bs.Backup(r.Context(), bw); err != nil {
		if !bw.started {
			a.fail(w, r, http.StatusServiceUnavailable, err)
			return
		}
		// Sent in part: the connection is cut, so that the caller cannot take
		// what it received for a whole copy (its chunked body ends without its last
		// chunk).
		a.log.WarnContext(r.Context(), "admin: backup not sent whole", "err", err)
		why := "reading the copy failed (see the warning before)"
		switch {
		case errors.Is(bw.err, os.ErrDeadlineExceeded):
			why = "the caller stopped reading for " + backupStall.String()
		case bw.err != nil:
			why = "the caller went away, or its connection failed"
		}
		abortAnswer(w, why)
	}
}

// backupStall is how long a backup's caller may take to accept each part of it: a
// large store takes longer to send than the listener's write timeout allows an
// answer, and a caller that stops reading must not hold the one backup at a time.
var backupStall = time.Minute

// startedWriter reports whether anything was written through it, and the error of
// the write that failed, and gives each write backupStall to go through.
type startedWriter struct {
	w       io.Writer
	rc      *http.ResponseController
	started bool
	err     error // the first write's error, nil while they go through
}

func (s *startedWriter) Write(p []byte) (int, error) {
	s.started = true
	s.rc.SetWriteDeadline(time.Now().Add(backupStall))
	n, err := s.w.Write(p)
	if err != nil && s.err == nil {
		s.err = err
	}
	return n, err
}

// The stores cannot select withheld certificates (crp.CertificateQuery has no such
// filter): withheldPage reads the inventory in batches of withheldBatch and keeps the
// withheld ones, reading at most withheldBatches batches for one page. Variables, so
// that a test can make them small.
var (
	withheldBatch   = crp.MaxListLimit
	withheldBatches = 10
)

// withheldPage is the page of withheld certificates of the listing cq selects (its
// Limit aside): at most pageSize of them, and the cursor of the next page, empty when
// the inventory was read to its end. It reads at most withheldBatches batches of the
// inventory: a page may then hold fewer than pageSize, or none, with a next that
// resumes after the last certificate read, so that a call is bounded however rare
// withheld certificates are, and a client that follows next reaches each once.
func (a *admin) withheldPage(ctx context.Context, cq crp.CertificateQuery) ([]*crp.IssuedCertificate, string, error) {
	var out []*crp.IssuedCertificate
	cq.Limit = withheldBatch
	for range withheldBatches {
		batch, err := a.g.store.Certificates(ctx, cq)
		if err != nil {
			return nil, "", err
		}
		for _, c := range batch {
			if !c.Withheld {
				continue
			}
			if out = append(out, c); len(out) == pageSize {
				return out, certCursor(c.Certificate), nil
			}
		}
		if len(batch) < crp.ListLimit(cq.Limit) {
			return out, "", nil // the end of the inventory
		}
		cq.After = batch[len(batch)-1]
	}
	return out, certCursor(cq.After.Certificate), nil
}

// listQuery reads a list call's query strictly: a pair that does not parse, a
// parameter the call does not take, or one given twice is an error, never left out
// (r.URL.Query drops what it cannot parse: withheld=%zz listed every certificate, to
// an operator revoking what the list holds).
func listQuery(r *http.Request, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, errors.New("the query does not parse")
	}
	for k, vs := range q {
		if !slices.Contains(allowed, k) {
			return nil, fmt.Errorf("%s: not a parameter of this call (%s)", logtext.Cut(k, 64), strings.Join(allowed, ", "))
		}
		if len(vs) > 1 {
			return nil, fmt.Errorf("%s: given more than once", k)
		}
	}
	return q, nil
}

func (a *admin) certificates(w http.ResponseWriter, r *http.Request) {
	q, err := listQuery(r, "user", "device", "expiring_within", "withheld", "after")
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{err.Error()})
		return
	}
	cq := crp.CertificateQuery{UserID: q.Get("user"), DeviceID: q.Get("device")}
	withheld := false
	switch s := q.Get("withheld"); s {
	case "":
	case "true":
		withheld = true
	default:
		writeJSON(w, http.StatusBadRequest, apiError{"withheld: true (only the certificates withheld from their device), or leave it out"})
		return
	}
	if s := q.Get("expiring_within"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			writeJSON(w, http.StatusBadRequest, apiError{"expiring_within: a positive duration such as 720h (at most 2562047h, Go's longest)"})
			return
		}
		now := time.Now()
		cq.ExpiresAfter, cq.ExpiresBefore = now, now.Add(d)
	}
	if s := q.Get("after"); s != "" {
		after, ok := parseCertCursor(s)
		if !ok {
			writeJSON(w, http.StatusBadRequest, apiError{"after: the next of the previous page"})
			return
		}
		cq.After = after
	}
	var list []*crp.IssuedCertificate
	var next string
	if withheld {
		list, next, err = a.withheldPage(r.Context(), cq)
	} else {
		cq.Limit = pageSize
		if list, err = a.g.store.Certificates(r.Context(), cq); err == nil && len(list) == pageSize {
			next = certCursor(list[len(list)-1].Certificate)
		}
	}
	if err != nil {
		a.fail(w, r, http.StatusServiceUnavailable, err)
		return
	}
	out := certificatePage{Certificates: []apiCertificate{}, Next: next}
	for _, c := range list {
		cj, err := a.certJSON(r.Context(), c)
		if err != nil {
			a.fail(w, r, http.StatusServiceUnavailable, err)
			return
		}
		out.Certificates = append(out.Certificates, cj)
	}
	writeJSON(w, http.StatusOK, out)
}

// certCursor is where a listing resumes after c, in the order of
// crp.CertificateOrder: its NotAfter (Unix seconds) and serial (hex), "1798761600-3f9c2a".
func certCursor(c *x509.Certificate) string {
	return strconv.FormatInt(c.NotAfter.Unix(), 10) + "-" + c.SerialNumber.Text(16)
}

// parseCertCursor reads a certCursor into the crp.CertificateQuery.After it stands for.
func parseCertCursor(s string) (*crp.IssuedCertificate, bool) {
	na, hex, ok := strings.Cut(s, "-")
	if !ok {
		return nil, false
	}
	sec, err := strconv.ParseInt(na, 10, 64)
	// 253402300799 is 9999-12-31T23:59:59Z, the latest time a certificate can name.
	if err != nil || sec < 0 || sec > 253402300799 || strconv.FormatInt(sec, 10) != na {
		return nil, false
	}
	serial, ok := parseSerial(hex)
	if !ok {
		return nil, false
	}
	return &crp.IssuedCertificate{Certificate: &x509.Certificate{NotAfter: time.Unix(sec, 0).UTC(), SerialNumber: serial}}, true
}

// loadKeyPair loads a TLS certificate and key, and names the setting at fault: the
// key file's when the key cannot be read (tls.LoadX509KeyPair's error would be
// reported against the certificate's). prefix is "" or "admin.".
func loadKeyPair(prefix, certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, settingError(prefix+"tls_cert", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, settingError(prefix+"tls_key", err)
	}
	// Whoever reads the key can pose as this listener (to scepkit admin, and collect
	// its token; to devices, as the gateway).
	if fi, err := os.Stat(keyFile); err == nil {
		if err := privateMode(keyFile, fi); err != nil {
			return tls.Certificate{}, settingError(prefix+"tls_key", err)
		}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, settingError(prefix+"tls_cert", err)
	}
	return cert, nil
}

// crossSite reports whether r is a request a browser made on another site's behalf: an
// operator whose browser holds an admin client certificate must not have a web page
// approve, reject or revoke through it (a form POST needs no script). Browsers mark
// such requests with Origin and Sec-Fetch-Site; scepkit admin and curl send neither.
func crossSite(r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return false
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return true
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		return err != nil || u.Scheme != "https" || u.Host != r.Host
	}
	return false
}

// loggedPath is r's path as the admin log records it: cut at 256 bytes, since the
// caller chooses it, authenticated or not.
func loggedPath(r *http.Request) string { return logtext.Cut(r.URL.Path, 256) }
