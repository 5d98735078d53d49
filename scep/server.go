package scep

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/scepkit/scepkit/internal/logtext"
)

// Request is what a [Responder] is asked to decide: a verified, decrypted request.
type Request struct {
	MessageType   MessageType
	TransactionID string
	// CSR and ChallengePassword are set for PKCSReq and RenewalReq. The CSR's own
	// signature has not been checked: proof of possession is the Responder's to verify
	// (crp does).
	CSR               *x509.CertificateRequest
	ChallengePassword string
	// Signer is the certificate that signed the message: self-signed for a first
	// enrollment, the certificate being renewed for a renewal.
	Signer *x509.Certificate
	// IssuerAndSerial is set for GetCert and GetCRL; IssuerAndSubject for CertPoll.
	IssuerAndSerial  *IssuerAndSerial
	IssuerAndSubject *IssuerAndSubject
	// Message is the whole parsed message. Of the certificates its SignedData
	// carried, Message.Certificates holds only the signer's: a Server parses no other.
	Message *PKIMessage
	// RemoteAddr is the HTTP peer, for logs.
	RemoteAddr string
	// RenewalDisabled is set by a Server whose Renewal is false: the Responder must
	// renew nothing, whatever signed the request (see [Server.Renewal]).
	RenewalDisabled bool
	// CACert is the issuing CA of the set of certificates the server answers this
	// request with, chosen once when the request was received: the CA of the RA
	// certificate the request was encrypted to, whose certificate signs the
	// CertRep (CACerts[0] before a [Rollover]'s switch; the Rollover's after it, or
	// still CACerts[0] for a request encrypted to the previous RA or CA). It is
	// the CA the requester trusts: a Responder that issues must issue under it, or
	// the requester refuses the certificate.
	CACert *x509.Certificate
}

// Response is a Responder's decision when it is not a failure.
type Response struct {
	// Status is Success (the zero value) or Pending.
	Status PKIStatus
	// Certificate is the issued (or looked-up) certificate for a SUCCESS; Chain is
	// added after it in the reply.
	Certificate *x509.Certificate
	Chain       []*x509.Certificate
	// CRL is the DER CRL answering GetCRL.
	CRL []byte
}

// Responder decides every PKIOperation the [Server] has verified and decrypted. It is
// called concurrently. To refuse, it returns an error: a *[FailError] chooses the
// failInfo; any other error is answered with badRequest. The error text is logged, never
// sent to the client.
type Responder interface {
	Respond(ctx context.Context, req *Request) (*Response, error)
}

// ResponderFunc adapts a function to [Responder].
type ResponderFunc func(ctx context.Context, req *Request) (*Response, error)

// Respond calls f(ctx, req).
func (f ResponderFunc) Respond(ctx context.Context, req *Request) (*Response, error) {
	return f(ctx, req)
}

// Default limits of a [Server].
const (
	DefaultMaxBodyBytes  = 256 << 10
	DefaultMaxQueryBytes = 64 << 10
	// DefaultBodyTimeout is a Server's BodyTimeout when it is zero. A SCEP request
	// is a few KiB: seconds even on a poor mobile link.
	DefaultBodyTimeout = 20 * time.Second
)

// Server is an http.Handler that speaks SCEP (RFC 8894 §4): GetCACaps, GetCACert,
// GetNextCACert and PKIOperation by GET and POST. It verifies and decrypts requests and
// builds every reply, and leaves each decision to its Responder: it never issues on its
// own. Mount it with [Mount] at any path (NDES clients use /certsrv/mscep/mscep.dll,
// others /scep): Mount also serves the path's /pkiclient.exe that many clients append.
//
// The fields must not change once the server is serving.
type Server struct {
	// CACerts is the CA chain devices trust, issuing CA first. Required.
	CACerts []*x509.Certificate
	// NextCACerts, when set, is the rollover CA chain served by GetNextCACert. It
	// only announces: use Rollover to switch to the next CA and RA at a set time.
	NextCACerts []*x509.Certificate
	// Rollover, when set, is the CA and RA the server announces through
	// GetNextCACert and switches to at Rollover.At (see [Rollover]). It replaces
	// NextCACerts, which must then be empty.
	Rollover *Rollover
	// SignerCert and Signer sign every CertRep: an RA signing certificate (as NDES
	// does) or the CA itself. Required.
	SignerCert *x509.Certificate
	Signer     crypto.Signer
	// Recipients are the certificates requests may be encrypted to, with their keys:
	// an RA encryption certificate, or the CA. Required. When a request is encrypted to
	// several certificates, the first RecipientInfo that is ours is used.
	Recipients []Recipient
	// Responder decides. Required.
	Responder Responder
	// CAKey, when set, is the private key of CACerts[0], an RSA key, and must also be a
	// crypto.Decrypter (an *rsa.PrivateKey is; so is the built-in CA's RSA key). It makes
	// the server accept requests encrypted to the CA certificate instead of an RA
	// encryption certificate, as clients that pin the CA by fingerprint send them
	// (micromdm's scepclient -ca-fingerprint), and sign every reply to such a request
	// with the CA, the only certificate those clients verify a reply with. Off by
	// default: such a request gets a FAILURE badMessageCheck signed by SignerCert,
	// which those clients cannot verify. Setting it uses the CA key for key transport
	// as well as for signing; leave it unset where policy keeps the two apart. After a
	// Rollover's switch it still answers a request encrypted to CACerts[0] while that
	// certificate is valid (one a device built before the switch), and Rollover.CAKey
	// serves the clients that pin the next CA. With it the CA also signs GetNextCACert's
	// answer, as RFC 8894 §4.7.1 asks.
	CAKey crypto.Signer
	// AllowLegacy accepts SHA-1 signatures and single-DES envelopes, as micromdm's
	// scepclient and other old clients send, and advertises SHA-1. Off by default:
	// such requests get a FAILURE badAlg.
	AllowLegacy bool
	// DisableDES3 stops advertising DES3 and refuses 3DES envelopes with badAlg, for
	// deployments whose clients all do AES. The zero value accepts 3DES, which some
	// clients still choose.
	DisableDES3 bool
	// Renewal turns renewal on for this server. When true the caps list Renewal and
	// RenewalReq is accepted. When false, a RenewalReq gets a FAILURE badRequest before
	// it is decrypted, and every request reaches the Responder with
	// Request.RenewalDisabled set, so that a PKCSReq signed by a certificate the CA
	// issued (RFC 8894 §3.3.1.2's other way to renew) is not renewed either: it needs a
	// challenge like any enrollment. package crp honours it, and crp.NewServer sets it
	// from RenewalPolicy.Disabled, so one switch turns renewal off in both.
	Renewal bool
	// MaxBodyBytes bounds a POST body (413 beyond it); zero means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxQueryBytes bounds the query of a GET (414 beyond it); zero means
	// DefaultMaxQueryBytes.
	MaxQueryBytes int
	// BodyTimeout bounds the time a PKIOperation's POST body takes to arrive once the
	// handler starts reading it; a slower client is answered 408 Request Timeout. A
	// request takes no turn (MaxInFlight) before its body has arrived, so slow
	// senders hold only their connections, never the turns of the requests that
	// arrived whole. It can only shorten the http.Server's ReadTimeout, never extend
	// it, and needs a ResponseWriter that supports http.ResponseController's
	// SetReadDeadline (net/http's does). Zero means DefaultBodyTimeout; negative means
	// the http.Server's timeouts alone.
	BodyTimeout time.Duration
	// MaxInFlight bounds the PKIOperation requests the server works on at once (each
	// costs private-key operations, and the Responder's work). Requests beyond it wait
	// for a turn, MaxQueued of them at most; more are answered 503 Service Unavailable
	// with Retry-After, before their body is read when the queue is already full, so
	// that a flood holds a bounded amount of memory and leaves the requests admitted
	// their share of the CPU. Zero means 64 per GOMAXPROCS (room for Responders that
	// wait on a remote CA); negative means no bound.
	MaxInFlight int
	// MaxQueued bounds the PKIOperation requests waiting for a turn, whole (their
	// body read); zero means 16 times the MaxInFlight bound, negative means none wait.
	// A waiting request holds about 19 KB plus its body, and the bodies waiting
	// together are bounded too, at 16 KiB per place in the queue or one MaxBodyBytes
	// body, whichever is more (a request whose body does not fit is answered 503). A request waits 30 seconds at most, then is
	// answered 503.
	//
	// The memory held by PKIOperation bodies, from their first byte until their request
	// ends (being received, waiting or worked on), is bounded too: at 16 KiB per turn
	// and place in the queue, or two MaxBodyBytes bodies, whichever is more. A request
	// whose body would exceed it is answered 503 with Retry-After as its bytes arrive.
	// Clients that open many connections and trickle bodies can so hold the others
	// off for up to BodyTimeout, never exhaust the memory: limit connections per
	// client in front of the server (a reverse proxy) where that matters.
	MaxQueued int
	// Rand is the source of randomness; nil means crypto/rand.
	Rand io.Reader
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives one record per request; nil means no logging. Challenges and
	// error details sent by clients are never logged in full.
	Logger *slog.Logger
	// MeterProvider receives the server's metrics ([MetricRequests],
	// [MetricCertificateExpiry]); nil means none. It is never the global provider.
	// Set it and TracerProvider before Validate or the first request, which make the
	// instruments (Validate registers the expiry gauge).
	MeterProvider metric.MeterProvider
	// TracerProvider receives one span per HTTP request, the parent of the
	// Responder's spans; nil means no spans. It is never the global provider.
	TracerProvider trace.TracerProvider

	telOnce      sync.Once
	telMu        sync.Mutex // guards tel.reg against concurrent Close
	tel          *serverTelemetry
	rolledLogged atomic.Bool
	limOnce      sync.Once
	lim          *limiter
	refusals     logBudget // the log lines of refusals before the Responder
	nextAnswer   atomic.Pointer[nextCACertAnswer]
}

// Caps returns the capabilities the server's configuration supports, as GetCACaps
// answers them.
func (s *Server) Caps() Caps {
	caps := Caps{CapAES}
	if !s.DisableDES3 {
		caps = append(caps, CapDES3)
	}
	if len(s.nextCerts(s.now())) > 0 {
		caps = append(caps, CapGetNextCACert)
	}
	caps = append(caps, CapPOSTPKIOp)
	if s.Renewal {
		caps = append(caps, CapRenewal)
	}
	if s.AllowLegacy {
		caps = append(caps, CapSHA1)
	}
	return append(caps, CapSHA256, CapSHA512, CapSCEPStandard)
}

// missingFields names the required fields s lacks; nil (and nothing allocated) when
// it has them all.
func (s *Server) missingFields() (missing []string) {
	if len(s.CACerts) == 0 {
		missing = append(missing, "CACerts")
	}
	if s.SignerCert == nil {
		missing = append(missing, "SignerCert")
	}
	if s.Signer == nil {
		missing = append(missing, "Signer")
	}
	if len(s.Recipients) == 0 {
		missing = append(missing, "Recipients")
	}
	if s.Responder == nil {
		missing = append(missing, "Responder")
	}
	return missing
}

// caDecrypter reports whether key, a CAKey, is a crypto.Decrypter holding the key of
// ca, and that key is RSA: requests are encrypted to a CA with RSA key transport
// only, and a type that decrypts (a PKCS#11 token's key) may hold any key.
func caDecrypter(key crypto.Signer, ca *x509.Certificate) bool {
	_, dec := key.(crypto.Decrypter)
	_, isRSA := ca.PublicKey.(*rsa.PublicKey)
	return dec && isRSA && samePublicKey(key.Public(), ca.PublicKey)
}

// Validate reports a configuration the server cannot serve with, and an error when a
// CA, signing or encryption certificate has expired.
func (s *Server) Validate() error {
	if missing := s.missingFields(); missing != nil {
		return errors.New("scep: Server needs " + strings.Join(missing, ", "))
	}
	if err := keysMatch("Server", s.SignerCert, s.Signer, s.Recipients); err != nil {
		return err
	}
	s.telemetry() // registers the expiry gauge before the first request
	if s.CAKey != nil {
		if !caDecrypter(s.CAKey, s.CACerts[0]) {
			return errors.New("scep: Server.CAKey must be a crypto.Decrypter holding the RSA key of CACerts[0]")
		}
	}
	if s.Rollover != nil {
		if len(s.NextCACerts) > 0 {
			return errors.New("scep: Server.NextCACerts and Rollover are exclusive: Rollover announces its own")
		}
		if err := s.Rollover.validate(s.now()); err != nil {
			return err
		}
	}
	now := s.now()
	for _, c := range s.certsToCheck(now) {
		if now.After(c.NotAfter) {
			return fmt.Errorf("scep: certificate %q expired on %v", c.Subject.String(), c.NotAfter)
		}
	}
	return nil
}

// ExpiringSoon returns the CA, signing and encryption certificates that expire within d:
// an expired RA certificate takes a SCEP service down, so check it at start and in health
// checks. With a Rollover they are the certificates in use and the next ones before
// the switch, the next ones only after it.
func (s *Server) ExpiringSoon(d time.Duration) []*x509.Certificate {
	var out []*x509.Certificate
	now := s.now()
	limit := now.Add(d)
	for _, c := range s.certsToCheck(now) {
		if c.NotAfter.Before(limit) {
			out = append(out, c)
		}
	}
	return out
}

// certsToCheck are the certificates the server depends on at now: those in use, and
// the next ones before a rollover.
func (s *Server) certsToCheck(now time.Time) []*x509.Certificate {
	cur, _ := s.sets(now)
	cs := cur.certs()
	if s.Rollover != nil && !s.RolledOver(now) {
		cs = dedupe(append(cs, s.Rollover.set().certs()...))
	}
	return cs
}

func dedupe(cs []*x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
next:
	for _, c := range cs {
		if c == nil {
			continue
		}
		for _, o := range out {
			if bytes.Equal(o.Raw, c.Raw) {
				continue next
			}
		}
		out = append(out, c)
	}
	return out
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return discardLogger
}

var discardLogger = slog.New(slog.DiscardHandler)

// ServeHTTP implements http.Handler. A Server without the fields Validate requires
// (a zero Server, say) answers every request 503: it advertises no capabilities it
// cannot serve.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.missingFields() != nil {
		httpError(w, http.StatusServiceUnavailable, "SCEP server not configured")
		return
	}
	maxQ := s.MaxQueryBytes
	if maxQ <= 0 {
		maxQ = DefaultMaxQueryBytes
	}
	if len(r.URL.RawQuery) > maxQ {
		// Named for the log from what fits the bound only: nothing past it is walked.
		op, _ := queryValue(r.URL.RawQuery[:maxQ], "operation")
		s.refuse(w, r, operationLabel(op), http.StatusRequestURITooLong, "query too long")
		return
	}
	op, n := queryValue(r.URL.RawQuery, "operation")
	if n > 1 {
		// The first would win here while a proxy or filter in front may read the
		// last: refused, as two message parameters are.
		s.refuse(w, r, "unknown", http.StatusBadRequest, "operation given more than once")
		return
	}
	tel := s.telemetry()
	if s.Rollover != nil && !s.rolledLogged.Load() && s.RolledOver(s.now()) && s.rolledLogged.CompareAndSwap(false, true) {
		s.log().InfoContext(r.Context(), "scep: rolled over to the next CA and RA", "at", s.Rollover.At,
			"ca", s.Rollover.CACerts[0].Subject.String(), "ca_serial", s.Rollover.CACerts[0].SerialNumber.Text(16),
			"ra_serial", s.Rollover.SignerCert.SerialNumber.Text(16))
	}
	switch op {
	case "GetCACaps", "GetCACert", "GetNextCACert", "PKIOperation":
		var end func()
		if r, end = tel.startSpan(r, op); end != nil {
			defer end()
		}
		if op != "PKIOperation" {
			tel.operation(r.Context(), op)
		}
	default:
		tel.operation(r.Context(), "unknown")
	}
	switch op {
	case "GetCACaps", "GetCACert", "GetNextCACert":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			httpError(w, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
	}
	switch op {
	case "GetCACaps":
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, s.Caps().String())
	case "GetCACert":
		s.getCACert(w)
	case "GetNextCACert":
		s.getNextCACert(w, r)
	case "PKIOperation":
		// The body is read before the request takes a turn, so that a client that
		// sends its headers and then nothing holds no turn; when the queue is full
		// already, the answer comes without reading it.
		l := s.limiter()
		if l != nil && l.full() {
			s.overloaded(w, r, l)
			return
		}
		// The answer is built during the turn and sent after it: a requester that
		// does not read its answer holds its connection, never a turn nor the
		// memory counted for its body.
		start := time.Now()
		a := &answer{header: w.Header()}
		if send, held := s.takeTurn(w, r, l, a, start); send {
			if l != nil {
				defer l.answers.give(held)
			}
			a.send(w, r, start, s.BodyTimeout)
		}
	case "":
		httpError(w, http.StatusBadRequest, "missing operation")
	default:
		httpError(w, http.StatusBadRequest, "unknown operation")
	}
}

// takeTurn reads r's message, waits for a turn and has pkiOperation answer it into a,
// giving the turn and the body's memory back when it returns. It reports send true,
// with the bytes counted for a (which the caller gives back once a is sent), when the
// caller is to send a; false when it answered w itself: the message could not be
// read, no turn came, or a was sent within the turn (larger than all the answers
// waiting may be together) or refused for now (they fill that bound already: 503, as
// for want of a turn; what the operation decided is recorded, and a resend gets it).
func (s *Server) takeTurn(w http.ResponseWriter, r *http.Request, l *limiter, a *answer, start time.Time) (send bool, held int64) {
	body, bodyHeld, ok := s.readMessage(w, r, l)
	defer l.unhold(bodyHeld)
	if !ok {
		return false, 0
	}
	if l == nil {
		s.pkiOperation(a, r, body)
		return true, 0
	}
	if !l.admit(r.Context(), len(body)) {
		s.overloaded(w, r, l)
		return false, 0
	}
	defer l.release()
	s.pkiOperation(a, r, body)
	n := int64(a.body.Len())
	switch {
	case l.answers.take(n):
		return true, n
	case n > l.answers.max:
		a.send(w, r, start, s.BodyTimeout)
	default:
		// a's headers are w's: take back those pkiOperation set.
		clear(w.Header())
		w.Header().Set("Retry-After", "1")
		// Counted as what the requester got, not as the CertRep it did not.
		s.telemetry().pkiOperation(r.Context(), nil, "overloaded", "")
		l.noteRefused(r.Context(), s.log(), r.RemoteAddr)
		answerUnread(w, r, http.StatusServiceUnavailable, "too many answers waiting to be sent, retry later")
	}
	return false, 0
}

// answer is a PKIOperation's answer, built while the request holds its turn and sent
// once it has given the turn back. Its headers are the real ResponseWriter's.
type answer struct {
	header http.Header
	code   int
	body   bytes.Buffer
	// counted, set by the PKIOperation's reply with what it answered, is counted in
	// the metrics once the answer is sent (send): one refused for want of room to wait
	// (a 503) is counted as that instead.
	counted counted
}

// counted is a CertRep as MetricRequests counts it (none while s is nil).
type counted struct {
	s             *Server
	ctx           context.Context
	msg           *PKIMessage
	outcome, info string
}

func (a *answer) Header() http.Header { return a.header }

func (a *answer) Write(p []byte) (int, error) {
	if a.code == 0 {
		a.code = http.StatusOK
	}
	return a.body.Write(p)
}

func (a *answer) WriteHeader(code int) {
	if a.code == 0 {
		a.code = code
	}
}

// send writes the answer to w, within timeout (BodyTimeout's meaning: zero is
// DefaultBodyTimeout, negative is the http.Server's timeouts alone) from now: a
// requester that does not read its answer holds its connection and the answer that
// long at most. The deadline only ever shortens the http.Server's WriteTimeout,
// counted from start, about when net/http set it.
func (a *answer) send(w http.ResponseWriter, r *http.Request, start time.Time, timeout time.Duration) {
	if c := &a.counted; c.s != nil {
		c.s.telemetry().pkiOperation(c.ctx, c.msg, c.outcome, c.info)
	}
	if timeout == 0 {
		timeout = DefaultBodyTimeout
	}
	if timeout > 0 {
		deadline := time.Now().Add(timeout)
		if srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server); ok && srv.WriteTimeout > 0 {
			if end := start.Add(srv.WriteTimeout); end.Before(deadline) {
				deadline = end
			}
		}
		http.NewResponseController(w).SetWriteDeadline(deadline)
	}
	if a.code == 0 {
		a.code = http.StatusOK
	}
	a.header.Set("Content-Length", strconv.Itoa(a.body.Len()))
	w.WriteHeader(a.code)
	w.Write(a.body.Bytes())
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	io.WriteString(w, msg+"\n")
}

// getCACert answers with the signing and encryption certificates, then the CA chain,
// of the set in use.
func (s *Server) getCACert(w http.ResponseWriter) {
	cur, _ := s.sets(s.now())
	if len(cur.caCerts) == 0 {
		httpError(w, http.StatusServiceUnavailable, "no CA configured")
		return
	}
	certs := cur.certs()
	if len(certs) == 1 {
		w.Header().Set("Content-Type", "application/x-x509-ca-cert")
		w.Write(certs[0].Raw)
		return
	}
	der, err := DegenerateCertificates(certs)
	if err != nil {
		s.log().Error("scep: GetCACert", "err", err)
		httpError(w, http.StatusInternalServerError, "internal error")
		return
	}
	w.Header().Set("Content-Type", "application/x-x509-ca-ra-cert")
	w.Write(der)
}

// getNextCACert answers with a SignedData, signed by the CA (with CAKey) or the current
// RA, whose content
// is a certs-only PKCS#7 of the rollover certificates (RFC 8894 §4.7): NextCACerts, or
// a Rollover's RA certificates and CA chain before its switch.
func (s *Server) getNextCACert(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	next := s.nextCerts(now)
	if len(next) == 0 {
		httpError(w, http.StatusNotFound, "no rollover CA")
		return
	}
	// Signed by the current CA signing key (RFC 8894 §4.7.1) when the server holds it,
	// else by the current RA.
	cur, _ := s.sets(now)
	cert, key := cur.signerCert, cur.signer
	if s.CAKey != nil {
		cert, key = s.CACerts[0], s.CAKey
	}
	inner, err := DegenerateCertificates(next)
	if err == nil {
		// Made once per signer and announcement, then served again: the request is
		// an unauthenticated GET outside the PKIOperation bound (MaxInFlight), and
		// each answer made anew would cost the RA's or the CA's key a signature.
		if c := s.nextAnswer.Load(); c != nil && bytes.Equal(c.signer, cert.Raw) && bytes.Equal(c.inner, inner) {
			writeNextCACert(w, c.der)
			return
		}
		var der []byte
		der, err = buildSignedData(signOptions{content: inner, cert: cert, key: key, hash: crypto.SHA256, rand: s.Rand})
		if err == nil {
			s.nextAnswer.Store(&nextCACertAnswer{signer: cert.Raw, inner: inner, der: der})
			writeNextCACert(w, der)
			return
		}
	}
	s.log().ErrorContext(r.Context(), "scep: GetNextCACert", "err", err)
	httpError(w, http.StatusInternalServerError, "internal error")
}

func writeNextCACert(w http.ResponseWriter, der []byte) {
	w.Header().Set("Content-Type", "application/x-x509-next-ca-cert")
	w.Write(der)
}

// nextCACertAnswer is a GetNextCACert answer made: der, signed by the certificate
// signer (DER), whose content is inner.
type nextCACertAnswer struct {
	signer, inner, der []byte
}

// presizeBodyBytes is the largest announced body length readMessage allocates before
// the bytes arrive. SCEP requests are a few KiB.
const presizeBodyBytes = 16 << 10

// maxBodyBytes is MaxBodyBytes, or its default.
func (s *Server) maxBodyBytes() int64 {
	if s.MaxBodyBytes <= 0 {
		return DefaultMaxBodyBytes
	}
	return s.MaxBodyBytes
}

// readMessage reads a PKIOperation's message, from the POST body or the GET query,
// and answers the client itself when it cannot. held is the memory l counts for the
// body, which the caller gives back with l.unhold when the request ends.
func (s *Server) readMessage(w http.ResponseWriter, r *http.Request, l *limiter) (msg []byte, held int64, ok bool) {
	const op = "PKIOperation"
	switch r.Method {
	case http.MethodPost:
		limit := s.maxBodyBytes()
		if r.ContentLength > limit {
			s.refuse(w, r, op, http.StatusRequestEntityTooLarge, "request body too large")
			return nil, 0, false
		}
		body, held, err := s.readBody(w, r, limit, l)
		switch {
		case err == nil && int64(len(body)) > limit:
			s.refuse(w, r, op, http.StatusRequestEntityTooLarge, "request body too large")
		case errors.Is(err, errBodiesHeld):
			s.overloaded(w, r, l)
		case errors.Is(err, os.ErrDeadlineExceeded):
			s.refuse(w, r, op, http.StatusRequestTimeout, "request body not received in time", "received", len(body))
		case err != nil:
			s.refuse(w, r, op, http.StatusBadRequest, "cannot read body")
		default:
			return body, held, true
		}
		return nil, held, false
	case http.MethodGet:
		msg, err := DecodeGETMessage(r.URL.RawQuery)
		if err != nil {
			s.refuse(w, r, op, http.StatusBadRequest, "bad message parameter")
			return nil, 0, false
		}
		return msg, 0, true
	}
	w.Header().Set("Allow", "GET, POST")
	s.refuse(w, r, op, http.StatusMethodNotAllowed, "method not allowed")
	return nil, 0, false
}

// refuse answers a request refused before its message could reach the Responder
// with code and reason, counts it (scep.status "rejected", with the HTTP status code)
// and logs it once at Warn with the remote address, the operation (a label from a
// fixed set), the method and the status: never the query or the body, which the
// client chooses. attrs are added to the log record.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, op string, code int, reason string, attrs ...any) {
	s.telemetry().rejected(r.Context(), op, code)
	if s.mayLogRefusal() {
		s.log().WarnContext(r.Context(), "scep: request refused", append([]any{"remote", r.RemoteAddr,
			"operation", op, "method", logtext.Cut(r.Method, maxQuoted), "status", code, "reason", reason}, attrs...)...)
	}
	if code == http.StatusRequestTimeout || code == http.StatusRequestEntityTooLarge {
		answerUnread(w, r, code, reason)
		return
	}
	httpError(w, code, reason)
}

// mayLogRefusal reports whether a refusal before the Responder may be logged one by
// one now (see refusalLogLines); when not, it is counted into a later line.
func (s *Server) mayLogRefusal() bool {
	log := s.log()
	return s.refusals.allow(time.Now(), refusalLogLines, func(n int64) {
		log.Warn("scep: requests refused, not logged one by one", "refused", n, "per", logWindow)
	})
}

// Refusals before the Responder are logged one by one up to refusalLogLines in each
// logWindow; beyond, they are counted (the metric has each one) and the count is
// logged when the window ends, so that a client sending malformed requests as fast
// as it can does not flood the log.
const refusalLogLines = 20

// operationLabel names the operation op from a fixed set, "unknown" for any other
// value: the client chooses it, and each label value is a time series.
func operationLabel(op string) string {
	switch op {
	case "GetCACaps", "GetCACert", "GetNextCACert", "PKIOperation":
		return op
	}
	return "unknown"
}

// readBody reads r's body, at most limit+1 bytes, within BodyTimeout: a timer moves
// the connection's read deadline to the past when the time is up (so that it only ever
// shortens the http.Server's own), and the read fails with os.ErrDeadlineExceeded.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, limit int64, l *limiter) ([]byte, int64, error) {
	d := s.BodyTimeout
	if d == 0 {
		d = DefaultBodyTimeout
	}
	if d > 0 {
		rc := http.NewResponseController(w)
		var mu sync.Mutex
		done, fired := false, false
		t := time.AfterFunc(d, func() {
			mu.Lock()
			defer mu.Unlock()
			if !done {
				fired = rc.SetReadDeadline(time.Now()) == nil
			}
		})
		body, held, err := readAllBody(r, limit, l)
		mu.Lock()
		done = true
		mu.Unlock()
		t.Stop()
		if fired && err == nil {
			// The body was whole just as the time ran out: lift the deadline, or
			// net/http would take the connection for closed.
			rc.SetReadDeadline(time.Time{})
		}
		return body, held, err
	}
	return readAllBody(r, limit, l)
}

// errBodiesHeld: the PKIOperation bodies the server holds already reach its bound.
var errBodiesHeld = errors.New("scep: request bodies held at once reach the bound")

// firstBodyBytes is the buffer a body of unknown length starts with.
const firstBodyBytes = 1 << 10

// readAllBody reads r's body, at most limit+1 bytes, counting the memory it allocates
// with l.hold, as it allocates it: held is that count, which the caller gives back with
// l.unhold once the body is no longer needed, whatever the error. A typical message
// whose length is announced is read into one allocation of that size (net/http ends
// the body at that length); a larger or unannounced one grows as its bytes arrive, so
// that a client announcing a large body and sending nothing holds little memory.
func readAllBody(r *http.Request, limit int64, l *limiter) (body []byte, held int64, err error) {
	want := limit + 1
	if r.ContentLength >= 0 {
		want = min(want, r.ContentLength)
	}
	size := min(want, firstBodyBytes)
	if r.ContentLength >= 0 && want <= presizeBodyBytes {
		size = want
	}
	if !l.hold(size) {
		return nil, 0, errBodiesHeld
	}
	held = size
	body = make([]byte, 0, size)
	for int64(len(body)) < want {
		if len(body) == cap(body) {
			next := min(2*int64(cap(body)), want)
			if !l.hold(next - held) {
				return body, held, errBodiesHeld
			}
			held = next
			body = append(make([]byte, 0, next), body...)
		}
		n, err := r.Body.Read(body[len(body):cap(body)])
		body = body[:len(body)+n]
		if err == io.EOF {
			return body, held, nil
		}
		if err != nil {
			return body, held, err
		}
	}
	return body, held, nil
}

func (s *Server) pkiOperation(w *answer, r *http.Request, body []byte) {
	start := s.now()
	ctx := r.Context()
	log := s.log()
	msg, err := parsePKIMessage(body, ParseOptions{AllowLegacy: s.AllowLegacy, DisableDES3: s.DisableDES3, signerOnly: true})
	if msg == nil {
		// Without a transactionID and nonce no CertRep can be addressed.
		s.refuse(w, r, "PKIOperation", http.StatusBadRequest, "malformed PKIMessage", errAttr(err))
		return
	}
	log = log.With("transactionID", msg.TransactionID)
	reply := func(resp []byte, outcome, info string, attrs ...any) {
		w.counted = counted{s: s, ctx: ctx, msg: msg, outcome: outcome, info: info} // once it is sent
		w.Header().Set("Content-Type", "application/x-pki-message")
		w.Write(resp)
		log.InfoContext(ctx, "scep: PKIOperation", append([]any{"type", msg.MessageType.String(),
			"outcome", outcome, "cipher", msg.Cipher.String(), "digest", msg.digestName(), "duration", s.now().Sub(start), "remote", r.RemoteAddr}, attrs...)...)
	}
	// The set of certificates is chosen once, here, for the whole transaction: the
	// recipient, the CertRep's signer and the CA the Responder issues under.
	cur, prev := s.sets(start)
	replier := &Replier{Cert: cur.signerCert, Key: cur.signer, Rand: s.Rand}
	recipients, caCert := cur.recipients, cur.ca()
	var refused error
	if old := unexpired(prev.recipients, start); len(old) > 0 && !start.After(prev.signerCert.NotAfter) &&
		!msg.addressedToAny(cur.recipients) && msg.addressedToAny(old) {
		// Encrypted to the RA in use before the rollover: the device holds the
		// certificates GetCACert gave before the switch, verifies the reply with them
		// (RFC 8894 §3.5.2), so only while the previous signing certificate is valid,
		// and accepts only a certificate of the previous CA. Once that CA has expired
		// the request is refused undecrypted, in a reply the device can verify: the
		// Responder neither sees it nor spends its challenge on a certificate the
		// device would refuse.
		replier.Cert, replier.Key = prev.signerCert, prev.signer
		if prevCA := prev.ca(); prevCA == nil || start.After(prevCA.NotAfter) {
			refused = Fail(BadMessageCheck, errors.New("scep: request encrypted to the previous RA, whose CA has expired"))
		} else {
			recipients, caCert = old, prevCA
		}
	}
	// A client that pins the CA verifies the reply with the CA certificate only: the
	// CA in force, or before it (a request in flight over a switch) the previous one.
	for _, set := range []pkiSet{cur, prev} {
		ca := set.ca()
		if dec, ok := set.caKey.(crypto.Decrypter); ok && ca != nil && !start.After(ca.NotAfter) && msg.addressedTo(ca) {
			replier.Cert, replier.Key = ca, set.caKey
			recipients, caCert = []Recipient{{Certificate: ca, Key: dec}}, ca
			break
		}
	}
	fail := func(err error) {
		info := FailInfoOf(err)
		resp, berr := replier.Failure(msg, info)
		if berr != nil {
			log.ErrorContext(ctx, "scep: building CertRep FAILURE", "err", berr)
			httpError(w, http.StatusInternalServerError, "internal error")
			return
		}
		reply(resp, "FAILURE", info.String(), "failInfo", info.String(), errAttr(err))
	}
	if err == nil {
		err = refused
	}
	if err == nil {
		err = s.admit(msg)
	}
	if err == nil {
		err = canReceive(msg.Signer)
	}
	if err == nil {
		err = msg.Decrypt(recipients...)
	}
	if err != nil {
		fail(err)
		return
	}
	req := &Request{
		MessageType: msg.MessageType, TransactionID: msg.TransactionID,
		CSR: msg.CSR, ChallengePassword: msg.ChallengePassword, Signer: msg.Signer,
		IssuerAndSerial: msg.IssuerAndSerial, IssuerAndSubject: msg.IssuerAndSubject,
		Message: msg, RemoteAddr: r.RemoteAddr, RenewalDisabled: !s.Renewal, CACert: caCert,
	}
	resp, err := s.respond(ctx, req)
	if err != nil {
		fail(err)
		return
	}
	var out []byte
	switch {
	case resp.Status == Pending:
		out, err = replier.Pending(msg)
	case msg.MessageType == GetCRL:
		if resp.CRL == nil {
			fail(Fail(BadCertID, errors.New("scep: responder returned no CRL")))
			return
		}
		out, err = replier.SuccessCRL(msg, resp.CRL)
	case resp.Status == Success && resp.Certificate != nil:
		out, err = replier.Success(msg, append([]*x509.Certificate{resp.Certificate}, resp.Chain...)...)
	default:
		fail(fmt.Errorf("scep: responder returned status %v without a certificate", resp.Status))
		return
	}
	if err != nil {
		// The decision stands but its answer cannot be built: the requester's key
		// cannot receive an RSA key transport, or the RA's key cannot sign (a token
		// removed). Said plainly, since the FAILURE that follows (if it can be signed)
		// answers a request whose outcome is recorded: a resend gets it once the reply
		// can be built.
		log.ErrorContext(ctx, "scep: building the CertRep failed; the Responder's decision stands",
			"type", msg.MessageType.String(), "status", resp.Status.String()) // fail logs err
		fail(err)
		return
	}
	if resp.Status == Pending {
		reply(out, "PENDING", "")
		return
	}
	reply(out, "SUCCESS", "")
}

// maxLoggedError bounds the text of an error in a log record: it may quote what a
// requester chose (a messageType, an object identifier), as long as the body allows.
const maxLoggedError = 512

// errAttr is err for a log record, its text cut at maxLoggedError bytes.
func errAttr(err error) slog.Attr {
	if err == nil {
		return slog.Any("err", nil)
	}
	return slog.String("err", logtext.Cut(err.Error(), maxLoggedError))
}

// canReceive refuses, before the Responder decides anything, a requester whose signer
// key cannot receive the reply: a SUCCESS is encrypted to it with RSA key transport, so
// issuing for an ECDSA signer would produce a certificate the device never gets.
func canReceive(signer *x509.Certificate) error {
	if _, ok := signer.PublicKey.(*rsa.PublicKey); !ok {
		return Fail(BadAlg, fmt.Errorf("%w: the reply cannot be encrypted to a %T signer key", ErrUnsupportedAlgorithm, signer.PublicKey))
	}
	return CheckKeySize(signer.PublicKey)
}

// admit refuses, before anything is decrypted, every message type a server does not
// take: CertRep, UpdateReq and unknown types, and RenewalReq when renewal is off.
func (s *Server) admit(m *PKIMessage) error {
	switch m.MessageType {
	case PKCSReq, CertPoll, GetCert, GetCRL:
		return nil
	case RenewalReq:
		if s.Renewal {
			return nil
		}
		return Fail(BadRequest, errors.New("scep: renewal is not enabled"))
	}
	return Fail(BadRequest, fmt.Errorf("%w: %v sent to a server", ErrUnknownMessageType, m.MessageType))
}

// respond calls the Responder, turning a panic into a failure so one bad request cannot
// take the server down.
func (s *Server) respond(ctx context.Context, req *Request) (resp *Response, err error) {
	defer func() {
		if p := recover(); p != nil {
			// A bug in the Responder, not the device's fault: the operator needs
			// the stack.
			s.log().ErrorContext(ctx, "scep: responder panicked", "transactionID", req.TransactionID, "panic", fmt.Sprint(p),
				"stack", string(debug.Stack()))
			resp, err = nil, fmt.Errorf("scep: responder panicked: %v", p)
		}
	}()
	resp, err = s.Responder.Respond(ctx, req)
	if err == nil && resp == nil {
		err = errors.New("scep: responder returned no response")
	}
	return resp, err
}

// queryValue returns the percent-decoded value of the first parameter named key (its
// name decoded too, see queryKey) in a raw query, the raw value when it does not
// decode, and how many parameters are named key.
func queryValue(rawQuery, key string) (value string, n int) {
	raw, n := queryRaw(rawQuery, key)
	if u, err := url.QueryUnescape(raw); err == nil {
		return u, n
	}
	return raw, n
}

// queryRaw returns the raw value of the first parameter named key (its name decoded,
// see queryKey; a parameter without '=' counts, with an empty value, as net/url reads
// it) in a raw query, and how many parameters are named key.
func queryRaw(rawQuery, key string) (raw string, n int) {
	for rawQuery != "" {
		var kv string
		kv, rawQuery, _ = strings.Cut(rawQuery, "&")
		k, v, _ := strings.Cut(kv, "=")
		if queryKey(k) != key {
			continue
		}
		if n++; n == 1 {
			raw = v
		}
	}
	return raw, n
}

// queryKey is a query parameter's name as URL decoders read it (net/url, proxies):
// percent-decoded, so that "%6Fperation" counts as "operation" here too.
func queryKey(k string) string {
	if strings.IndexByte(k, '%') < 0 && strings.IndexByte(k, '+') < 0 {
		return k
	}
	if u, err := url.QueryUnescape(k); err == nil {
		return u
	}
	return k
}

// DecodeGETMessage extracts and decodes the message parameter of a GET PKIOperation
// from a raw query. It accepts every shape real clients send: standard base64
// percent-encoded, standard base64 with a raw '+' (which a form decoder would turn into
// a space), URL-safe base64, with or without padding, and wrapped in CR/LF.
func DecodeGETMessage(rawQuery string) ([]byte, error) {
	raw, n := queryRaw(rawQuery, "message")
	if n > 1 {
		// As for operation: a proxy in front may read the other one.
		return nil, fmt.Errorf("%w: two message parameters", ErrMalformed)
	}
	if raw == "" {
		return nil, fmt.Errorf("%w: no message parameter", ErrMalformed)
	}
	// PathUnescape leaves '+' alone: in base64 it is a '+', never a space.
	v, err := url.PathUnescape(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: message parameter encoding", ErrMalformed)
	}
	b := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\r', '\n', '\t', '=':
		case ' ': // a '+' some proxy decoded as a form space
			b = append(b, '+')
		case '-':
			b = append(b, '+')
		case '_':
			b = append(b, '/')
		default:
			b = append(b, c)
		}
	}
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(b)))
	n, err = base64.RawStdEncoding.Decode(out, b)
	if err != nil {
		return nil, fmt.Errorf("%w: message parameter is not base64", ErrMalformed)
	}
	return out[:n], nil
}
