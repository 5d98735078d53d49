// Package intunetest is a local emulator of the Microsoft services that Intune's SCEP
// validation API uses: Microsoft Entra's client-credentials token endpoint, Microsoft
// Graph's service-principal endpoints (discovery), the SCEP validation service
// (validateRequest, successNotification, failureNotification) and the PKI connector
// service's revocation calls. Like net/http/httptest it is for tests: point an
// intune.Client at it (Server.Client does), script its verdicts and faults, and read
// back what it received.
//
// It checks what the real services require on the wire, as Microsoft's published
// client library (Java and C#) sends it: the token request's form (client secret, or
// a client assertion as Microsoft Entra documents it: RS256 with x5t or PS256 with
// x5t#S256, signed by a registered certificate's RSA key, with aud, iss, sub and exp
// checked; ES256 is refused, as Entra refuses it), bearer tokens of the right scope,
// the api-version header of each service, a GUID client-request-id, JSON bodies with
// the library's field names and no other, a base64 DER CSR, an expiry in ISO 8601
// with any fraction of a second, revocation errorCodes as the libraries send them (a
// JSON string with the member name or the value, never a JSON number). A request that
// breaks a rule is answered 400 and listed by Violations.
//
// Challenges are opaque strings. Server.Mint mints one for a Profile (the subject,
// SANs, key usage, key size and extended key usages Intune's SCEP profile resolved
// to for one device), and validateRequest judges the CSR against it as the service
// does, answering SubjectNameMismatch, KeyLengthMismatch and the other codes from
// the CSR itself. Server.Challenge mints one with a scripted verdict, for tests that
// need a particular answer. A challenge the server did not mint gets
// ChallengeDecryptionError, an expired one ChallengeExpired.
package intunetest

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/scepkit/scepkit/crp/intune"
)

// Op names an operation of the emulated services.
type Op string

// The operations.
const (
	OpToken     Op = "token"
	OpDiscovery Op = "discovery"
	OpValidate  Op = "validateRequest"
	OpSuccess   Op = "successNotification"
	OpFailure   Op = "failureNotification"
	OpDownload  Op = "downloadRevocationRequests"
	OpUpload    Op = "uploadRevocationResults"
)

// Verdict is what validateRequest answers for a challenge.
type Verdict struct {
	// Code is the result code; "" means Success. Any string is sent as is (an unknown
	// code too).
	Code intune.Code
	// Description is the errorDescription.
	Description string
	// Lifetime is the challenge's validity from minting; 0 means 60 minutes.
	Lifetime time.Duration
}

// Fault replaces the normal answer of an operation.
type Fault struct {
	// Status is the HTTP status to answer; 0 means 200.
	Status int
	// Body is the raw body to answer; "" means the normal body (or, with Status set,
	// a JSON error document).
	Body string
	// Delay holds the answer back (the request's context still ends it).
	Delay time.Duration
	// Header is added to the answer (Location for a redirect, Retry-After).
	Header http.Header
	// Times is how many requests the fault applies to; 0 means all until cleared.
	Times int
}

// Server is a running emulator. Create it with NewServer; Close it when done.
type Server struct {
	// URL is the root of every emulated service (authority, Graph, services).
	URL string
	// Tenant, ClientID and ClientSecret are the app registration the token endpoint
	// accepts (random unless set before the first request).
	Tenant, ClientID, ClientSecret string
	// TokenLifetime is the expires_in of issued tokens; 0 means one hour.
	TokenLifetime time.Duration

	srv *httptest.Server

	mu          sync.Mutex
	certs       []*x509.Certificate
	tokens      map[string]string // token → scope
	tokenCount  map[string]int    // scope → tokens issued
	challenges  map[string]minted
	retired     map[string]bool // device ids
	faults      map[Op]*Fault
	calls       map[Op]int
	validations []intune.ValidationRequest
	successes   []intune.SuccessNotification
	failures    []intune.FailureNotification
	requestIDs  map[Op][]string
	violations  []string
	revQueue    []intune.RevocationRequest
	revResults  []intune.RevocationResult
	now         func() time.Time
}

type minted struct {
	v       *Verdict // scripted
	p       *Profile // judged
	expires time.Time
}

// NewServer starts an emulator on a loopback port.
func NewServer() *Server {
	s := &Server{Tenant: "contoso.onmicrosoft.com", ClientID: uuid(), ClientSecret: "secret-" + randHex(16),
		tokens: map[string]string{}, tokenCount: map[string]int{}, challenges: map[string]minted{}, retired: map[string]bool{},
		faults: map[Op]*Fault{}, calls: map[Op]int{}, requestIDs: map[Op][]string{}, now: time.Now}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	return s
}

// Close shuts the emulator down.
func (s *Server) Close() { s.srv.Close() }

// HTTPClient returns an http.Client for the emulator.
func (s *Server) HTTPClient() *http.Client { return s.srv.Client() }

// Client returns an intune.Client signed in with the client secret and pointed at the
// emulator (authority, Graph), with short backoffs.
func (s *Server) Client(callerInfo string) *intune.Client {
	return &intune.Client{Tenant: s.Tenant, ClientID: s.ClientID, ClientSecret: s.ClientSecret,
		CallerInfo: callerInfo, Authority: s.URL + "/", GraphURL: s.URL + "/", HTTPClient: s.HTTPClient(),
		Backoff: 10 * time.Millisecond}
}

// AddCertificate registers a certificate credential of the app: client assertions
// signed by its key are accepted.
func (s *Server) AddCertificate(cert *x509.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.certs = append(s.certs, cert)
}

// IntuneScope and GraphScope are the scopes the emulator issues tokens for.
func (s *Server) IntuneScope() string { return intune.DefaultResource + "/.default" }

// GraphScope is the scope of Graph tokens.
func (s *Server) GraphScope() string { return s.URL + "/.default" }

// Challenge mints an opaque challenge whose verdict is scripted: validateRequest
// answers v for any CSR that carries it (after the expiry check), for tests that
// need one particular answer. Mint judges the CSR instead.
func (s *Server) Challenge(v Verdict) string {
	return s.mint(minted{v: &v}, v.Lifetime)
}

// Mint mints an opaque challenge for what p describes, as Intune does when it hands a
// SCEP profile to a device; validateRequest then judges the CSR against p and answers
// the code of the first difference (see Profile).
func (s *Server) Mint(p Profile) string {
	p.Subject = clonePkixName(p.Subject)
	return s.mint(minted{p: &p}, p.Lifetime)
}

func (s *Server) mint(m minted, life time.Duration) string {
	if life == 0 {
		life = time.Hour
	}
	var b [48]byte
	_, _ = rand.Read(b[:])
	ch := base64.StdEncoding.EncodeToString(b[:]) // opaque, like Intune's (not a scepkit token)
	s.mu.Lock()
	defer s.mu.Unlock()
	m.expires = s.now().Add(life)
	s.challenges[ch] = m
	return ch
}

// Retire stops targeting the device's SCEP profile at it (a device retired, or
// removed from the profile's group): validateRequest answers
// ScepProfileNoLongerTargetedToTheClient for the challenges minted for deviceID.
func (s *Server) Retire(deviceID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retired[deviceID] = true
}

// SetNow replaces the emulator's clock (challenge expiry, assertion times).
func (s *Server) SetNow(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// SetFault makes op answer with f (see Fault.Times); a zero Fault clears it.
func (s *Server) SetFault(op Op, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Status == 0 && f.Body == "" && f.Delay == 0 && f.Times == 0 && len(f.Header) == 0 {
		delete(s.faults, op)
		return
	}
	s.faults[op] = &f
}

// QueueRevocation queues a revocation request for the certificate with this serial
// (hex) and returns its requestContext.
func (s *Server) QueueRevocation(serialHex, issuer string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx := uuid()
	s.revQueue = append(s.revQueue, intune.RevocationRequest{RequestContext: ctx, SerialNumber: serialHex, IssuerName: issuer})
	return ctx
}

// Queue queues a revocation request as given (its requestContext, when empty, is
// made up) and returns its requestContext.
func (s *Server) Queue(req intune.RevocationRequest) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.RequestContext == "" {
		req.RequestContext = uuid()
	}
	s.revQueue = append(s.revQueue, req)
	return req.RequestContext
}

// PendingRevocations returns the requests still queued (not yet answered, or
// answered with a retryable code).
func (s *Server) PendingRevocations() []intune.RevocationRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]intune.RevocationRequest(nil), s.revQueue...)
}

// RevocationResults returns every result uploaded, in order.
func (s *Server) RevocationResults() []intune.RevocationResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]intune.RevocationResult(nil), s.revResults...)
}

// Validations returns the validateRequest bodies received.
func (s *Server) Validations() []intune.ValidationRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]intune.ValidationRequest(nil), s.validations...)
}

// Successes returns the successNotification bodies received and answered Success.
func (s *Server) Successes() []intune.SuccessNotification {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]intune.SuccessNotification(nil), s.successes...)
}

// Failures returns the failureNotification bodies received and answered Success.
func (s *Server) Failures() []intune.FailureNotification {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]intune.FailureNotification(nil), s.failures...)
}

// Calls returns how many requests op received (faulted ones included).
func (s *Server) Calls(op Op) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// Tokens returns how many tokens were issued for scope.
func (s *Server) Tokens(scope string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenCount[scope]
}

// RequestIDs returns the client-request-id headers op received, in order.
func (s *Server) RequestIDs(op Op) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requestIDs[op]...)
}

// Violations lists the protocol rules requests broke (each was answered 400).
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}

// ---- serving ----

const (
	scepPath = "/TrafficGateway/ScepRequestValidationFEService"
	pkiPath  = "/TrafficGateway/PkiConnectorFEService"
)

var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/"+s.Tenant+"/oauth2/v2.0/token":
		s.handle(w, r, OpToken, s.token)
	case p == "/v1.0/servicePrincipals/appId="+intune.IntuneAppID+"/endpoints":
		s.handle(w, r, OpDiscovery, s.discovery)
	case p == scepPath+"/ScepActions/validateRequest":
		s.handle(w, r, OpValidate, s.validate)
	case p == scepPath+"/ScepActions/successNotification":
		s.handle(w, r, OpSuccess, s.success)
	case p == scepPath+"/ScepActions/failureNotification":
		s.handle(w, r, OpFailure, s.failure)
	case p == pkiPath+"/CertificateAuthorityRequests/downloadRevocationRequests":
		s.handle(w, r, OpDownload, s.download)
	case p == pkiPath+"/CertificateAuthorityRequests/uploadRevocationResults":
		s.handle(w, r, OpUpload, s.upload)
	default:
		http.NotFound(w, r)
	}
}

// answer is what a handler decided.
type answer struct {
	status int
	body   any
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request, op Op, h func(*http.Request, []byte) answer) {
	s.mu.Lock()
	s.calls[op]++
	if id := r.Header.Get("client-request-id"); id != "" {
		s.requestIDs[op] = append(s.requestIDs[op], id)
	}
	var fault *Fault
	if f := s.faults[op]; f != nil {
		c := *f
		fault = &c
		if f.Times > 0 {
			if f.Times--; f.Times == 0 {
				delete(s.faults, op)
			}
		}
	}
	s.mu.Unlock()
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		return
	}
	if fault != nil {
		if fault.Delay > 0 {
			t := time.NewTimer(fault.Delay)
			select {
			case <-r.Context().Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		for k, v := range fault.Header {
			w.Header()[k] = v
		}
		if fault.Status != 0 || fault.Body != "" {
			status := fault.Status
			if status == 0 {
				status = http.StatusOK
			}
			out := fault.Body
			if out == "" {
				if op == OpToken {
					out = `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. (emulated)"}`
				} else {
					out = `{"error":{"code":"InternalServerError","message":"emulated fault"}}`
				}
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			io.WriteString(w, out)
			return
		}
	}
	a := h(r, body)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(a.status)
	_ = json.NewEncoder(w).Encode(a.body)
}

func (s *Server) violation(op Op, format string, args ...any) answer {
	msg := string(op) + ": " + fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.violations = append(s.violations, msg)
	s.mu.Unlock()
	return answer{http.StatusBadRequest, map[string]any{"error": map[string]string{"code": "BadRequest", "message": msg}}}
}

// ---- Entra token endpoint ----

func (s *Server) tokenURL() string { return s.URL + "/" + s.Tenant + "/oauth2/v2.0/token" }

func tokenError(status int, code, desc string) answer {
	return answer{status, map[string]string{"error": code, "error_description": desc}}
}

func (s *Server) token(r *http.Request, body []byte) answer {
	if r.Method != http.MethodPost {
		return s.violation(OpToken, "method %s", r.Method)
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		return s.violation(OpToken, "content type %q", r.Header.Get("Content-Type"))
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err := r.ParseForm(); err != nil {
		return s.violation(OpToken, "form: %v", err)
	}
	f := r.PostForm
	if f.Get("grant_type") != "client_credentials" {
		return tokenError(400, "unsupported_grant_type", "AADSTS70003: grant_type must be client_credentials")
	}
	if f.Get("client_id") != s.ClientID {
		return tokenError(400, "unauthorized_client", "AADSTS700016: application not found in the directory")
	}
	scope := f.Get("scope")
	if scope != s.IntuneScope() && scope != s.GraphScope() {
		return tokenError(400, "invalid_scope", "AADSTS70011: the provided scope is not valid: "+scope)
	}
	switch {
	case f.Get("client_secret") != "":
		if f.Get("client_secret") != s.ClientSecret {
			return tokenError(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
		}
	case f.Get("client_assertion") != "":
		if f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			return tokenError(400, "invalid_request", "AADSTS50027: wrong client_assertion_type")
		}
		if err := s.checkAssertion(f.Get("client_assertion")); err != nil {
			return tokenError(401, "invalid_client", "client assertion refused: "+err.Error())
		}
	default:
		return tokenError(401, "invalid_client", "AADSTS7000218: the request body must contain client_assertion or client_secret")
	}
	tok := "emu." + randHex(24)
	life := s.TokenLifetime
	if life == 0 {
		life = time.Hour
	}
	s.mu.Lock()
	s.tokens[tok] = scope
	s.tokenCount[scope]++
	s.mu.Unlock()
	secs := int(life / time.Second)
	return answer{200, map[string]any{"token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs, "access_token": tok}}
}

// checkAssertion verifies a client assertion the way Microsoft Entra documents it
// ("certificate credentials"): RS256 with x5t, the SHA-1 thumbprint, or PS256 with
// x5t#S256, the SHA-256 thumbprint, signed by a registered certificate's RSA key.
// Entra refuses other algorithms (AADSTS5002738 for ES256, as reported by the Azure
// SDK and MSAL maintainers), and so does the emulator.
func (s *Server) checkAssertion(a string) error {
	parts := strings.Split(a, ".")
	if len(parts) != 3 {
		return errors.New("not a JWS")
	}
	var hdr struct {
		Alg     string `json:"alg"`
		X5t     string `json:"x5t"`
		X5tS256 string `json:"x5t#S256"`
	}
	var claims struct {
		Aud, Iss, Sub, Jti string
		Exp, Nbf           int64
	}
	if err := decodeSegment(parts[0], &hdr); err != nil {
		return err
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return err
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return err
	}
	var thumb func(*x509.Certificate) bool
	switch {
	case hdr.Alg == "RS256" && hdr.X5t != "":
		thumb = func(c *x509.Certificate) bool { sum := sha1.Sum(c.Raw); return b64url(sum[:]) == hdr.X5t }
	case hdr.Alg == "PS256" && hdr.X5tS256 != "":
		thumb = func(c *x509.Certificate) bool { sum := sha256.Sum256(c.Raw); return b64url(sum[:]) == hdr.X5tS256 }
	case hdr.Alg == "RS256" || hdr.Alg == "PS256":
		return fmt.Errorf("AADSTS700027: %s needs the %s header", hdr.Alg, map[string]string{"RS256": "x5t", "PS256": "x5t#S256"}[hdr.Alg])
	default:
		return fmt.Errorf("AADSTS5002738: '%s' is not a supported signature algorithm", hdr.Alg)
	}
	s.mu.Lock()
	var cert *x509.Certificate
	for _, c := range s.certs {
		if thumb(c) {
			cert = c
		}
	}
	s.mu.Unlock()
	if cert == nil {
		return errors.New("the thumbprint names no registered certificate")
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return errors.New("the registered certificate has no RSA key")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if hdr.Alg == "RS256" {
		err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig)
	} else {
		err = rsa.VerifyPSS(pub, crypto.SHA256, digest[:], sig, nil)
	}
	if err != nil {
		return fmt.Errorf("bad %s signature", hdr.Alg)
	}
	now := s.now().Unix()
	switch {
	case claims.Aud != s.tokenURL():
		return fmt.Errorf("aud %q is not the token endpoint", claims.Aud)
	case claims.Iss != s.ClientID || claims.Sub != s.ClientID:
		return errors.New("iss and sub must be the client id")
	case claims.Exp < now || claims.Exp > now+3600:
		return errors.New("exp out of range")
	case claims.Nbf > now+300:
		return errors.New("not yet valid")
	case claims.Jti == "":
		return errors.New("no jti")
	}
	return nil
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// bearer checks the Authorization header names a token of scope.
func (s *Server) bearer(r *http.Request, scope string) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens[tok] == scope
}

func unauthorized() answer {
	return answer{http.StatusUnauthorized, map[string]any{"error": map[string]string{"code": "InvalidAuthenticationToken",
		"message": "Access token is missing, invalid or for another audience."}}}
}

// ---- Graph discovery ----

func (s *Server) discovery(r *http.Request, _ []byte) answer {
	if r.Method != http.MethodGet {
		return s.violation(OpDiscovery, "method %s", r.Method)
	}
	if !s.bearer(r, s.GraphScope()) {
		return unauthorized()
	}
	if !guidRE.MatchString(r.Header.Get("client-request-id")) {
		return s.violation(OpDiscovery, "client-request-id %q is not a GUID", r.Header.Get("client-request-id"))
	}
	ep := func(capability, name, path string) map[string]any {
		return map[string]any{"id": uuid(), "deletedDateTime": nil, "capability": capability, "providerId": uuid(),
			"providerName": name, "providerResourceId": nil, "uri": s.URL + path}
	}
	return answer{200, map[string]any{
		"@odata.context": s.URL + "/v1.0/$metadata#servicePrincipals('appId%3D" + intune.IntuneAppID + "')/endpoints",
		"value": []any{
			ep("EnrollmentServer", "EnrollmentServer", "/TrafficGateway/EnrollmentServer"),
			ep("ScepRequestValidationFEService", intune.ValidationService, scepPath),
			ep("PkiConnectorFEService", intune.RevocationService, pkiPath),
		}}}
}

// ---- services ----

// serviceCheck applies the rules every service call follows.
func (s *Server) serviceCheck(r *http.Request, op Op, apiVersion string) *answer {
	if r.Method != http.MethodPost {
		a := s.violation(op, "method %s", r.Method)
		return &a
	}
	if !s.bearer(r, s.IntuneScope()) {
		a := unauthorized()
		return &a
	}
	if v := r.Header.Get("api-version"); v != apiVersion {
		a := s.violation(op, "api-version %q, want %q", v, apiVersion)
		return &a
	}
	if id := r.Header.Get("client-request-id"); !guidRE.MatchString(id) {
		a := s.violation(op, "client-request-id %q is not a GUID", id)
		return &a
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		a := s.violation(op, "content type %q", ct)
		return &a
	}
	return nil
}

func scepAnswer(code intune.Code, desc string) answer {
	if code == "" {
		code = intune.CodeSuccess
	}
	return answer{200, map[string]string{"code": string(code), "errorDescription": desc}}
}

func (s *Server) validate(r *http.Request, body []byte) answer {
	if a := s.serviceCheck(r, OpValidate, intune.ValidationAPIVersion); a != nil {
		return *a
	}
	var req intune.ValidationRequest
	if err := strictJSON(body, &req); err != nil {
		return s.violation(OpValidate, "body: %v", err)
	}
	q := req.Request
	if q.TransactionID == "" || q.CallerInfo == "" {
		return s.violation(OpValidate, "transactionId and callerInfo are required")
	}
	csr, err := parseCSR(q.CertificateRequest)
	if err != nil {
		s.record(func() { s.validations = append(s.validations, req) })
		return scepAnswer(intune.CodeCertificateRequestDecodingFailed, err.Error())
	}
	s.record(func() { s.validations = append(s.validations, req) })
	ch, err := challengePassword(csr.RawTBSCertificateRequest)
	if err != nil || ch == "" {
		return scepAnswer(intune.CodeChallengePasswordMissing, "the CSR carries no challengePassword")
	}
	s.mu.Lock()
	m, ok := s.challenges[ch]
	now := s.now()
	retired := ok && m.p != nil && s.retired[m.p.DeviceID]
	s.mu.Unlock()
	switch {
	case !ok:
		return scepAnswer(intune.CodeChallengeDecryptionError, "the challenge was not minted by this tenant")
	case now.After(m.expires):
		return scepAnswer(intune.CodeChallengeExpired, "the challenge expired at "+m.expires.UTC().Format(time.RFC3339))
	case m.v != nil:
		return scepAnswer(m.v.Code, m.v.Description)
	case m.p.DeviceID != "" && retired:
		return scepAnswer(intune.CodeScepProfileNoLongerTargetedToTheClient, "the profile is no longer targeted to device "+m.p.DeviceID)
	}
	code, desc := m.p.judge(csr)
	return scepAnswer(code, desc)
}

func (s *Server) success(r *http.Request, body []byte) answer {
	if a := s.serviceCheck(r, OpSuccess, intune.ValidationAPIVersion); a != nil {
		return *a
	}
	var n intune.SuccessNotification
	if err := strictJSON(body, &n); err != nil {
		return s.violation(OpSuccess, "body: %v", err)
	}
	x := n.Notification
	if x.TransactionID == "" || x.CallerInfo == "" || x.IssuingCertificateAuthority == "" {
		return s.violation(OpSuccess, "transactionId, callerInfo and issuingCertificateAuthority are required")
	}
	if _, err := parseCSR(x.CertificateRequest); err != nil {
		return s.violation(OpSuccess, "certificateRequest: %v", err)
	}
	if b, err := hex.DecodeString(x.CertificateThumbprint); err != nil || len(b) != sha1.Size {
		return s.violation(OpSuccess, "certificateThumbprint %q is not a SHA-1 in hex", x.CertificateThumbprint)
	}
	if _, err := hex.DecodeString(x.CertificateSerialNumber); err != nil || x.CertificateSerialNumber == "" {
		return s.violation(OpSuccess, "certificateSerialNumber %q is not hex", x.CertificateSerialNumber)
	}
	if _, err := time.Parse(time.RFC3339, x.CertificateExpirationDateUtc); err != nil { // any fraction, Z or an offset
		return s.violation(OpSuccess, "certificateExpirationDateUtc %q: %v", x.CertificateExpirationDateUtc, err)
	}
	s.record(func() { s.successes = append(s.successes, n) })
	return scepAnswer(intune.CodeSuccess, "")
}

func (s *Server) failure(r *http.Request, body []byte) answer {
	if a := s.serviceCheck(r, OpFailure, intune.ValidationAPIVersion); a != nil {
		return *a
	}
	var n intune.FailureNotification
	if err := strictJSON(body, &n); err != nil {
		return s.violation(OpFailure, "body: %v", err)
	}
	x := n.Notification
	switch {
	case x.TransactionID == "" || x.CallerInfo == "" || x.ErrorDescription == "":
		return s.violation(OpFailure, "transactionId, callerInfo and errorDescription are required")
	case len([]rune(x.ErrorDescription)) > intune.MaxErrorDescription:
		return s.violation(OpFailure, "errorDescription longer than %d", intune.MaxErrorDescription)
	case x.HResult == 0:
		return s.violation(OpFailure, "hResult 0 is not a failure")
	}
	if _, err := parseCSR(x.CertificateRequest); err != nil {
		return s.violation(OpFailure, "certificateRequest: %v", err)
	}
	s.record(func() { s.failures = append(s.failures, n) })
	return scepAnswer(intune.CodeSuccess, "")
}

func (s *Server) download(r *http.Request, body []byte) answer {
	if a := s.serviceCheck(r, OpDownload, intune.RevocationAPIVersion); a != nil {
		return *a
	}
	var req struct {
		DownloadParameters *struct {
			MaxRequests int     `json:"maxRequests"`
			IssuerName  *string `json:"issuerName"`
		} `json:"downloadParameters"`
	}
	if err := strictJSON(body, &req); err != nil || req.DownloadParameters == nil {
		return s.violation(OpDownload, "body: downloadParameters required (%v)", err)
	}
	max := req.DownloadParameters.MaxRequests
	if max < 1 || max > intune.MaxRevocationBatch {
		return s.violation(OpDownload, "maxRequests %d out of 1-%d", max, intune.MaxRevocationBatch)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []intune.RevocationRequest{}
	for _, q := range s.revQueue {
		if len(out) == max {
			break
		}
		if in := req.DownloadParameters.IssuerName; in != nil && *in != "" && *in != q.IssuerName {
			continue
		}
		out = append(out, q)
	}
	return answer{200, map[string]any{"value": out}}
}

func (s *Server) upload(r *http.Request, body []byte) answer {
	if a := s.serviceCheck(r, OpUpload, intune.RevocationAPIVersion); a != nil {
		return *a
	}
	var req struct {
		Results []intune.RevocationResult `json:"results"`
	}
	if err := strictJSON(body, &req); err != nil || len(req.Results) == 0 {
		return s.violation(OpUpload, "body: results required (%v)", err)
	}
	for _, x := range req.Results {
		if x.RequestContext == "" || x.Succeeded != (x.ErrorCode == 0) {
			return s.violation(OpUpload, "result %+v: requestContext required, errorCode 0 exactly when succeeded", x)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range req.Results {
		s.revResults = append(s.revResults, x)
		if x.Succeeded || !x.ErrorCode.Retryable() {
			for i, q := range s.revQueue {
				if q.RequestContext == x.RequestContext {
					s.revQueue = append(s.revQueue[:i], s.revQueue[i+1:]...)
					break
				}
			}
		}
	}
	return answer{200, map[string]any{"value": true}}
}

func (s *Server) record(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

// strictJSON decodes refusing unknown fields: the emulator holds the client to the
// library's field names.
func strictJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

func parseCSR(b64 string) (*x509.CertificateRequest, error) {
	der, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("certificateRequest is not base64: %w", err)
	}
	return x509.ParseCertificateRequest(der)
}

var oidChallengePassword = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 7}

// challengePassword reads the challengePassword attribute of a CSR's info.
func challengePassword(tbs []byte) (string, error) {
	var info struct {
		Version    int
		Subject    asn1.RawValue
		PublicKey  asn1.RawValue
		Attributes []struct {
			Type   asn1.ObjectIdentifier
			Values []asn1.RawValue `asn1:"set"`
		} `asn1:"tag:0,set"`
	}
	if _, err := asn1.Unmarshal(tbs, &info); err != nil {
		return "", err
	}
	for _, a := range info.Attributes {
		if a.Type.Equal(oidChallengePassword) && len(a.Values) > 0 {
			var s string
			if _, err := asn1.Unmarshal(a.Values[0].FullBytes, &s); err != nil {
				return "", err
			}
			return s, nil
		}
	}
	return "", nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func uuid() string {
	h := randHex(16)
	return h[:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:]
}
