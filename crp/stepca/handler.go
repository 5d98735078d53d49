package stepca

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/internal/secretcmp"
)

// Defaults of a Handler.
const (
	// DefaultMaxBody bounds a webhook request body: a CSR and a certificate in JSON.
	DefaultMaxBody = 64 << 10
	// DefaultMaxSkew is how far a request's timestamp may be from the handler's clock.
	DefaultMaxSkew = time.Minute
	// DefaultTimeout bounds the handling of one request (step-ca itself gives up
	// after 10 seconds).
	DefaultTimeout = 10 * time.Second
)

// Handler answers step-ca's SCEP provisioner webhooks with a crp.RegistrationPoint:
// SCEPCHALLENGE with [crp.RegistrationPoint.Decide] (allow, with the decision in
// Data for step-ca's template, see [Template]) and NOTIFYING with
// [crp.RegistrationPoint.Complete] (the certificate step-ca issued is checked
// against the decision, recorded and notified; a failure is notified).
//
// Mount it once; configure step-ca's SCEPCHALLENGE webhook at a URL ending in
// "/challenge" and its NOTIFYING webhook at one ending in "/notify".
//
// Every request is checked, in this order, before its body is parsed: TLS client
// certificate (when RequireClientCert), bearer token or basic auth (when set, compared
// by their SHA-256 digests in constant time, so that timing tells not even their
// length), size (MaxBody), the X-Smallstep-Signature HMAC of the exact body
// under the webhook's secret (constant time). Then its timestamp must be within
// MaxSkew, and the request must be new (a body is accepted once: step-ca's own retry
// of an answered request is refused too). A request that fails any check is answered
// 4xx and decides nothing; a SCEPCHALLENGE is allowed only when Decide allowed it.
//
// step-ca sends no signer certificate, so renewals are new enrollments with a fresh
// challenge. step-ca delivers a certificate whatever the NOTIFYING webhook answers:
// RequireNotification cannot withhold it here; a failed required notification is
// logged for revocation.
type Handler struct {
	// RP decides and completes. Required.
	RP *crp.RegistrationPoint
	// ChallengeSecret and NotifySecret are the secrets of the SCEPCHALLENGE and
	// NOTIFYING webhooks, decoded (step-ca's configuration holds them in base64).
	// Required.
	ChallengeSecret, NotifySecret []byte
	// BearerToken, when set, must be the request's bearer token.
	BearerToken string
	// Username and Password, when either is set, must be the request's basic auth.
	Username, Password string
	// RequireClientCert refuses requests without a verified TLS client certificate
	// (step-ca's, when the TLS server's ClientCAs holds step-ca's roots and
	// ClientAuth is tls.VerifyClientCertIfGiven or stricter).
	RequireClientCert bool
	// Replay remembers answered requests (by a digest of their body) until they are stale,
	// and challenge.ClaimMargin longer for clocks that disagree; nil means in memory.
	// Share it between handlers behind one load balancer.
	Replay challenge.ReplayStore
	// MaxBody, MaxSkew and Timeout default to DefaultMaxBody, DefaultMaxSkew and
	// DefaultTimeout.
	MaxBody int64
	MaxSkew time.Duration
	Timeout time.Duration
	// Logger receives one record per request; nil means none.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	memOnce sync.Once
	mem     *challenge.MemoryReplayStore
}

// Errors a request is refused with, in the handler's log.
var (
	ErrUnauthorized = errors.New("stepca: request not authenticated")
	ErrSignature    = errors.New("stepca: X-Smallstep-Signature does not verify")
	ErrStale        = errors.New("stepca: request timestamp outside the allowed skew")
	ErrReplayed     = errors.New("stepca: request already answered")
	ErrMalformed    = errors.New("stepca: malformed request")
)

type kind int

const (
	kindChallenge kind = iota
	kindNotify
)

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Handler) log() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (h *Handler) replay() challenge.ReplayStore {
	if h.Replay != nil {
		return h.Replay
	}
	h.memOnce.Do(func() { h.mem = &challenge.MemoryReplayStore{Now: h.Now} })
	return h.mem
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var k kind
	switch {
	case strings.HasSuffix(r.URL.Path, "/challenge"):
		k = kindChallenge
	case strings.HasSuffix(r.URL.Path, "/notify"):
		k = kindNotify
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	req, status, err := h.authenticate(ctx, r, k)
	if err != nil {
		h.log().WarnContext(ctx, "stepca: webhook refused", "kind", k.String(), "status", status,
			"remote", r.RemoteAddr, "err", err)
		http.Error(w, http.StatusText(status), status)
		return
	}
	var resp *Response
	if k == kindChallenge {
		resp = h.challenge(ctx, req)
	} else {
		resp = h.notify(ctx, req)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

func (k kind) String() string {
	if k == kindChallenge {
		return "SCEPCHALLENGE"
	}
	return "NOTIFYING"
}

// authenticate runs every check before the request is acted on, and parses it.
func (h *Handler) authenticate(ctx context.Context, r *http.Request, k kind) (*Request, int, error) {
	if h.RequireClientCert && (r.TLS == nil || len(r.TLS.VerifiedChains) == 0) {
		return nil, http.StatusUnauthorized, fmt.Errorf("%w: no verified client certificate", ErrUnauthorized)
	}
	if err := h.checkAuth(r); err != nil {
		return nil, http.StatusUnauthorized, err
	}
	max := h.MaxBody
	if max <= 0 {
		max = DefaultMaxBody
	}
	if r.ContentLength > max {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("%w: body of %d bytes", ErrMalformed, r.ContentLength)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("%w: reading the body: %w", ErrMalformed, err)
	}
	if int64(len(body)) > max {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("%w: body over %d bytes", ErrMalformed, max)
	}
	secret := h.ChallengeSecret
	if k == kindNotify {
		secret = h.NotifySecret
	}
	sig := r.Header.Get(HeaderSignature)
	if len(secret) == 0 || !verify(secret, body, sig) {
		return nil, http.StatusUnauthorized, ErrSignature
	}
	var req Request
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&req); err != nil || dec.More() {
		return nil, http.StatusBadRequest, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	skew := h.MaxSkew
	if skew <= 0 {
		skew = DefaultMaxSkew
	}
	now := h.now()
	if req.Timestamp.Before(now.Add(-skew)) || req.Timestamp.After(now.Add(skew)) {
		return nil, http.StatusUnauthorized, fmt.Errorf("%w: %s", ErrStale, req.Timestamp.UTC().Format(time.RFC3339))
	}
	sum := sha256.Sum256(body) // the body, not the signature: hex has two spellings
	// Kept past the last moment its timestamp is accepted by challenge.ClaimMargin: a
	// clock stepped forward and back, or handlers apart sharing Replay, must not take
	// the same body for new.
	switch err := h.replay().Claim(ctx, "stepca-webhook:"+hex.EncodeToString(sum[:16]), req.Timestamp.Add(skew+challenge.ClaimMargin)); {
	case errors.Is(err, challenge.ErrReplayed):
		return nil, http.StatusConflict, ErrReplayed
	case err != nil:
		return nil, http.StatusServiceUnavailable, fmt.Errorf("stepca: replay store: %w", err)
	}
	return &req, 0, nil
}

// checkAuth checks the bearer token or basic auth step-ca was configured to send.
func (h *Handler) checkAuth(r *http.Request) error {
	switch {
	case h.BearerToken != "":
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !secretcmp.Equal(got, h.BearerToken) {
			return fmt.Errorf("%w: bearer token", ErrUnauthorized)
		}
	case h.Username != "" || h.Password != "":
		u, p, ok := r.BasicAuth()
		// Both compared, always, so that timing does not tell which one was wrong.
		uok := secretcmp.Equal(u, h.Username)
		pok := secretcmp.Equal(p, h.Password)
		if !ok || !uok || !pok {
			return fmt.Errorf("%w: basic auth", ErrUnauthorized)
		}
	}
	return nil
}

func deny(code, msg string) *Response {
	return &Response{Allow: false, Error: &ResponseError{Code: code, Message: msg}}
}

// challenge decides a SCEPCHALLENGE request.
func (h *Handler) challenge(ctx context.Context, req *Request) *Response {
	if req.X509CertificateRequest == nil || req.SCEPTransactionID == "" {
		return deny("badRequest", "no CSR or no transactionID")
	}
	csr, err := x509.ParseCertificateRequest(req.X509CertificateRequest.Raw)
	if err != nil {
		return deny("badRequest", "CSR does not parse")
	}
	d, err := h.RP.Decide(ctx, &crp.EnrollRequest{TransactionID: req.SCEPTransactionID, CSR: csr,
		Challenge: req.SCEPChallenge})
	if err != nil {
		return refusal(err)
	}
	if d.RequiresApproval {
		// step-ca cannot queue a request: refuse it, as a CA that refuses.
		_ = h.RP.Complete(ctx, &crp.Completion{TransactionID: d.TransactionID,
			Err: fmt.Errorf("%w: the template needs approval, which step-ca cannot wait for", crp.ErrRefused)})
		return deny("badRequest", "template requires approval")
	}
	h.log().InfoContext(ctx, "stepca: SCEPCHALLENGE allowed", "transactionID", d.TransactionID,
		"template", d.TemplateName)
	return &Response{Allow: true, Data: newData(d)}
}

// refusal answers a refusal with its phase and reason, never the underlying error.
func refusal(err error) *Response {
	var e *crp.Error
	if errors.As(err, &e) {
		return deny(e.FailInfo().String(), e.Phase.String()+": "+string(e.Reason))
	}
	return deny("badRequest", "refused")
}

// notify completes the decision a NOTIFYING request reports on.
func (h *Handler) notify(ctx context.Context, req *Request) *Response {
	if req.SCEPTransactionID == "" {
		return deny("badRequest", "no transactionID")
	}
	c := &crp.Completion{TransactionID: req.SCEPTransactionID}
	if req.X509CertificateRequest != nil {
		csr, err := x509.ParseCertificateRequest(req.X509CertificateRequest.Raw)
		if err != nil {
			return deny("badRequest", "CSR does not parse")
		}
		c.CSR = csr
	}
	if req.X509Certificate != nil {
		cert, err := x509.ParseCertificate(req.X509Certificate.Raw)
		if err != nil {
			return deny("badRequest", "certificate does not parse")
		}
		c.Certificate = cert
	} else {
		// step-ca reports a failure to sign a request its SCEPCHALLENGE webhook had
		// allowed: its own configuration (a template beyond --x509-max-dur, a policy,
		// a key or a database it cannot use), never the request, which was judged
		// already. No certificate was made, so the challenge is released: the device's
		// retry succeeds once the CA is mended.
		c.Err = fmt.Errorf("%w: step-ca could not sign: code %d: %s", crp.ErrUnavailable, req.SCEPErrorCode,
			oneLine(req.SCEPErrorDescription, 200))
	}
	if err := h.RP.Complete(ctx, c); err != nil {
		h.log().WarnContext(ctx, "stepca: NOTIFYING not accepted", "transactionID", c.TransactionID, "err", err)
		if c.Certificate != nil {
			h.log().ErrorContext(ctx, "stepca: step-ca delivered a certificate scepkit did not accept; revoke it",
				"transactionID", c.TransactionID, "serial", fmt.Sprintf("%x", c.Certificate.SerialNumber))
		}
		return refusal(err)
	}
	return &Response{Allow: true}
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n]
	}
	return s
}
