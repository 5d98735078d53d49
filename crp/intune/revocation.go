package intune

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/crp"
)

// Revocation: Intune queues revocation requests (a device retired or wiped, a profile
// removed) at the PKI connector service; the CA downloads them, revokes, and uploads
// one result per request (IRA: IntuneRevocationClient, CARevocationRequest,
// CARevocationResult, CARequestErrorCode).

// MaxRevocationBatch is the most requests one download may ask for (IRA).
const MaxRevocationBatch = 500

// RevocationRequest is one request to revoke a certificate.
type RevocationRequest struct {
	// RequestContext identifies the request; the result must carry it back.
	RequestContext string `json:"requestContext"`
	// SerialNumber is the certificate's serial in hex, as the success notification
	// sent it.
	SerialNumber    string `json:"serialNumber"`
	IssuerName      string `json:"issuerName,omitempty"`
	CAConfiguration string `json:"caConfiguration,omitempty"`
}

// Serial parses SerialNumber (hex; spaces and colons ignored).
func (r *RevocationRequest) Serial() (*big.Int, error) {
	s := strings.NewReplacer(" ", "", ":", "").Replace(r.SerialNumber)
	n, ok := new(big.Int).SetString(s, 16)
	if !ok || n.Sign() <= 0 {
		return nil, fmt.Errorf("intune: serial number %q is not positive hex", r.SerialNumber)
	}
	return n, nil
}

// ErrorCode is a revocation result code (IRA: CARequestErrorCode). Codes 4000-4099
// are final; 4100 and above ask Intune to offer the request again.
type ErrorCode int

// The result codes.
const (
	ErrorNone                  ErrorCode = 0
	ErrorNonRetryable          ErrorCode = 4000
	ErrorDataSerialization     ErrorCode = 4001
	ErrorParameterDataInvalid  ErrorCode = 4002
	ErrorCryptography          ErrorCode = 4003
	ErrorCertificateNotFound   ErrorCode = 4004
	ErrorConflict              ErrorCode = 4005
	ErrorNotSupported          ErrorCode = 4006
	ErrorPayloadTooLarge       ErrorCode = 4007
	ErrorRetryable             ErrorCode = 4100
	ErrorServiceUnavailable    ErrorCode = 4101
	ErrorServiceTooBusy        ErrorCode = 4102
	ErrorAuthenticationFailure ErrorCode = 4103
)

// Retryable reports whether the code asks Intune to offer the request again.
func (c ErrorCode) Retryable() bool { return c >= ErrorRetryable }

// errorCodeNames are the member names of the service's CARequestErrorCode
// enumeration, as Microsoft's C# library spells them.
var errorCodeNames = map[ErrorCode]string{
	ErrorNone: "None", ErrorNonRetryable: "NonRetryableServiceException", ErrorDataSerialization: "DataSerializationError",
	ErrorParameterDataInvalid: "ParameterDataInvalidError", ErrorCryptography: "CryptographyError",
	ErrorCertificateNotFound: "CertificateNotFoundError", ErrorConflict: "ConflictError", ErrorNotSupported: "NotSupportedError",
	ErrorPayloadTooLarge: "PayloadTooLargeError", ErrorRetryable: "RetryableServiceException",
	ErrorServiceUnavailable: "ServiceUnavailableException", ErrorServiceTooBusy: "ServiceTooBusyException",
	ErrorAuthenticationFailure: "AuthenticationException",
}

// Known reports whether c is a member of the service's enumeration.
func (c ErrorCode) Known() bool { _, ok := errorCodeNames[c]; return ok }

// String returns the member name (CertificateNotFoundError), or the number for a
// code outside the enumeration.
func (c ErrorCode) String() string {
	if n, ok := errorCodeNames[c]; ok {
		return n
	}
	return strconv.Itoa(int(c))
}

// MarshalJSON writes the code as a JSON string holding its member name
// ("CertificateNotFoundError"), as Microsoft's C# library does (StringEnumConverter
// on CARevocationResult.ErrorCode). The service's enumeration is an OData enum type,
// whose JSON form is a string naming the member or holding its value (OData JSON
// Format 4.01 section 7.1): Microsoft's Java library sends the value ("4004"); a JSON
// number is neither. A code outside the enumeration is written as its value.
func (c ErrorCode) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }

// UnmarshalJSON reads both string forms (a member name or a decimal value) and
// refuses a JSON number, as an OData service does.
func (c *ErrorCode) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("intune: errorCode %s is not a JSON string (an OData enum value is one)", snippet(b))
	}
	for code, name := range errorCodeNames {
		if s == name {
			*c = code
			return nil
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || s != strconv.Itoa(n) || !ErrorCode(n).Known() {
		return fmt.Errorf("intune: errorCode %q names no member of CARequestErrorCode", s)
	}
	*c = ErrorCode(n)
	return nil
}

// RevocationResult is the outcome of one request.
type RevocationResult struct {
	RequestContext string    `json:"requestContext"`
	Succeeded      bool      `json:"succeeded"`
	ErrorCode      ErrorCode `json:"errorCode"`
	ErrorMessage   string    `json:"errorMessage,omitempty"`
}

// Errors a Revoker returns for the result codes it means (anything else is
// ErrorNonRetryable; an error matching crp.ErrUnavailable is retried, then reported
// as ErrorServiceUnavailable).
var (
	ErrCertificateNotFound = errors.New("intune: certificate not found")
	ErrNotSupported        = errors.New("intune: revocation not supported for this certificate")
)

// Revoker revokes certificates for the Poller: the user's CA implements it (see
// CARevoker for scepkit's built-in CA). Revoke returns nil when the certificate is
// revoked (also when it already was), an error matching ErrCertificateNotFound
// for a serial the CA never issued, crp.ErrUnavailable for a transient failure, or
// a *RevocationError to choose the code. It is called once per request (again only
// after a transient failure) and may be called concurrently with issuance.
type Revoker interface {
	Revoke(ctx context.Context, req *RevocationRequest) error
}

// RevokerFunc adapts a function to Revoker.
type RevokerFunc func(ctx context.Context, req *RevocationRequest) error

// Revoke calls f.
func (f RevokerFunc) Revoke(ctx context.Context, req *RevocationRequest) error { return f(ctx, req) }

// RevocationError lets a Revoker choose the result code.
type RevocationError struct {
	Code ErrorCode
	Err  error
}

// Error implements error.
func (e *RevocationError) Error() string {
	return fmt.Sprintf("intune: revocation error %d: %v", e.Code, e.Err)
}

// Unwrap returns the underlying error.
func (e *RevocationError) Unwrap() error { return e.Err }

// CARevoker revokes with scepkit's built-in CA. It applies only the requests meant
// for this CA: a request whose issuerName or caConfiguration names another CA is
// answered CertificateNotFoundError and changes nothing here, even when a
// certificate of ours has the same serial (serials are unique per issuer only).
type CARevoker struct {
	CA *catemplate.CA
	// Certificates, if set, tells serials this CA issued from others: a serial not
	// on record is ErrorCertificateNotFound, one on record with a certificate of
	// another issuer (the other CA of a rollover) ErrOtherCA.
	Certificates crp.CertificateStore
	// Revocations, if set, records each revocation durably (By "intune:" and the
	// request's context) before the CA's in-memory list takes it, so that it
	// survives a restart (see Restore); the result is reported to Intune only once
	// it is recorded. A serial the store already holds revoked for another CA's
	// certificate (stores key revocations by serial alone) cannot be recorded: the
	// request is answered ConflictError (crp.ErrRevokedForOtherCA) and nothing is
	// revoked. Without it, revocations live in the CA's memory only
	// (catemplate.CA.Revoke).
	Revocations crp.RevocationStore
	// IssuerName is the issuer name this CA answers for: what the success
	// notifications sent as issuingCertificateAuthority (Notifier.IssuingCA); ""
	// means the CA certificate's subject DN, the Notifier's default. Compared with a
	// request's as a DN string (RFC 4514): RDN by RDN, the attributes of a
	// multi-valued RDN in any order, values unescaped (a comma written \, or \2C
	// alike) and without regard to case, attribute types by name or OID, white space
	// around separators ignored. A name that is not a DN string is compared as
	// written, without regard to case.
	IssuerName string
	// CAConfiguration is the caConfiguration the success notifications sent
	// (Notifier.CAConfiguration). A request that names a caConfiguration is applied
	// only when it is this one.
	CAConfiguration string
	// Reason is the CRLReason recorded (RFC 5280 5.3.1); 0 is unspecified.
	Reason int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// ErrOtherCA is the error of a revocation request meant for another CA (reported
// as ErrorCertificateNotFound).
var ErrOtherCA = fmt.Errorf("%w: the request names another CA", ErrCertificateNotFound)

// Revoke implements Revoker.
func (r *CARevoker) Revoke(ctx context.Context, req *RevocationRequest) error {
	if err := r.ours(req); err != nil {
		return err
	}
	serial, err := req.Serial()
	if err != nil {
		return &RevocationError{Code: ErrorParameterDataInvalid, Err: err}
	}
	issuer := r.CA.Certificate.RawSubject // the revoked certificate's
	if r.Certificates != nil {
		issued, err := r.Certificates.Lookup(ctx, serial)
		if errors.Is(err, crp.ErrNotFound) {
			return fmt.Errorf("%w: serial %s", ErrCertificateNotFound, req.SerialNumber)
		} else if err != nil {
			return fmt.Errorf("%w: %w", crp.ErrUnavailable, err)
		}
		if !bytes.Equal(issued.Certificate.RawIssuer, issuer) {
			// The serial on record is another CA's (after a rollover, the inventory
			// holds both CAs' certificates): not this CA's to revoke.
			return fmt.Errorf("%w: serial %s was issued by %q", ErrOtherCA, req.SerialNumber, issued.Certificate.Issuer.String())
		}
	}
	now := time.Now()
	if r.Now != nil {
		now = r.Now()
	}
	rev := &crp.Revocation{Serial: serial, Reason: r.Reason, RevokedAt: now, By: "intune:" + req.RequestContext,
		Issuer: issuer}
	if r.Revocations != nil {
		rec, err := r.Revocations.Revoke(ctx, rev)
		if err != nil {
			return fmt.Errorf("%w: recording the revocation: %w", crp.ErrUnavailable, err)
		}
		if !rec.For(issuer) {
			// The store keys revocations by serial alone and kept another CA's: ours is
			// not recorded, and Restore would not bring it back (as CRLPublisher.Revoke).
			return &RevocationError{Code: ErrorConflict, Err: fmt.Errorf("%w: serial %s", crp.ErrRevokedForOtherCA, req.SerialNumber)}
		}
		rev = rec // revoked before: keep the first entry
	}
	return r.CA.Revoke(serial, rev.Reason, rev.RevokedAt) // revoking again keeps the first entry: success
}

// Restore puts every revocation recorded in Revocations for the CA's certificates
// (crp.Revocation.Issuer its subject, or no issuer) back into the CA's
// in-memory list, so that a restarted CA's CRL shows them again (catemplate.CA keeps
// revocations in memory only). Call it once at startup, before serving.
func (r *CARevoker) Restore(ctx context.Context) error {
	if r.Revocations == nil {
		return fmt.Errorf("%w: CARevoker.Restore needs Revocations", ErrConfig)
	}
	list, err := r.Revocations.RevokedSince(ctx, time.Time{})
	if err != nil {
		return fmt.Errorf("intune: reading revocations: %w", err)
	}
	for _, rev := range list {
		if !rev.For(r.CA.Certificate.RawSubject) {
			continue // another CA's (after a rollover)
		}
		if err := r.CA.Revoke(rev.Serial, rev.Reason, rev.RevokedAt); err != nil {
			return fmt.Errorf("intune: restoring the revocation of %x: %w", rev.Serial, err)
		}
	}
	return nil
}

func (r *CARevoker) ours(req *RevocationRequest) error {
	if req.IssuerName != "" {
		want := r.IssuerName
		if want == "" {
			want = r.CA.Certificate.Subject.String()
		}
		if !sameName(req.IssuerName, want) {
			return fmt.Errorf("%w: issuerName %q (this CA is %q)", ErrOtherCA, req.IssuerName, want)
		}
	}
	if req.CAConfiguration != "" && !strings.EqualFold(req.CAConfiguration, r.CAConfiguration) {
		return fmt.Errorf("%w: caConfiguration %q", ErrOtherCA, req.CAConfiguration)
	}
	return nil
}

// DownloadRevocationRequests fetches at most max (1-500) pending requests, optionally
// only those for issuerName. Retried after a transient failure (a download only
// reads the queue).
func (c *Client) DownloadRevocationRequests(ctx context.Context, max int, issuerName string) ([]RevocationRequest, error) {
	if max <= 0 || max > MaxRevocationBatch {
		return nil, fmt.Errorf("%w: a download asks for 1 to %d requests, not %d", ErrConfig, MaxRevocationBatch, max)
	}
	params := map[string]any{"maxRequests": max}
	if issuerName != "" {
		params["issuerName"] = issuerName
	} else {
		params["issuerName"] = nil
	}
	var out struct {
		Value *[]RevocationRequest `json:"value"`
	}
	if err := c.pkiCall(ctx, "downloadRevocationRequests", "CertificateAuthorityRequests/downloadRevocationRequests",
		map[string]any{"downloadParameters": params}, &out); err != nil {
		return nil, err
	}
	if out.Value == nil {
		return nil, unavailable(ErrResponse, errors.New("intune: downloadRevocationRequests: the answer has no value array"))
	}
	reqs := *out.Value
	if len(reqs) > max {
		return nil, unavailable(ErrResponse, fmt.Errorf("intune: downloadRevocationRequests: %d requests for a batch of %d", len(reqs), max))
	}
	return reqs, nil
}

// UploadRevocationResults reports results. Retried after a transient failure (each
// result names its request, so a repeat reports the same facts).
func (c *Client) UploadRevocationResults(ctx context.Context, results []RevocationResult) error {
	if len(results) == 0 {
		return fmt.Errorf("%w: no results to upload", ErrConfig)
	}
	var out struct {
		Value *bool `json:"value"`
	}
	if err := c.pkiCall(ctx, "uploadRevocationResults", "CertificateAuthorityRequests/uploadRevocationResults",
		map[string]any{"results": results}, &out); err != nil {
		return err
	}
	if out.Value == nil || !*out.Value {
		return unavailable(ErrResponse, errors.New("intune: uploadRevocationResults: the service did not answer true"))
	}
	return nil
}

func (c *Client) pkiCall(ctx context.Context, op, suffix string, body, out any) error {
	base, err := c.Endpoint(ctx, RevocationService)
	if err != nil {
		return err
	}
	err = c.do(ctx, exchange{method: http.MethodPost, url: base + "/" + suffix, scope: c.intuneScope(),
		apiVersion: orDefault(c.RevocationVersion, RevocationAPIVersion), body: body, retry: true, op: op}, out)
	if errors.Is(err, ErrService) || errors.Is(err, ErrTransport) {
		c.forgetEndpoints()
	}
	return err
}

// Poller downloads Intune's revocation requests, hands each to the Revoker, and
// uploads the results, until its context ends.
type Poller struct {
	// Client and Revoker are required.
	Client  *Client
	Revoker Revoker
	// Interval is the pause between polls when the queue is empty; 0 means 5 minutes.
	Interval time.Duration
	// Batch is how many requests one download asks for; 0 means 100 (at most 500).
	Batch int
	// IssuerName, if set, downloads only requests for that issuer.
	IssuerName string
	// Attempts is how many times a transient Revoker failure is tried in one poll;
	// 0 means 3. Backoff is the first pause between attempts (doubled each time) and
	// after a failed poll (doubled up to Interval); 0 means 1 second.
	Attempts int
	Backoff  time.Duration
	// Logger receives one record per request and per poll; nil means none.
	Logger *slog.Logger
}

// PollResult counts one poll's outcome.
type PollResult struct {
	Downloaded, Revoked, Failed int
}

func (p *Poller) interval() time.Duration {
	if p.Interval > 0 {
		return p.Interval
	}
	return 5 * time.Minute
}

func (p *Poller) batch() int {
	switch {
	case p.Batch <= 0:
		return 100
	case p.Batch > MaxRevocationBatch:
		return MaxRevocationBatch
	}
	return p.Batch
}

func (p *Poller) backoff() time.Duration {
	if p.Backoff > 0 {
		return p.Backoff
	}
	return time.Second
}

func (p *Poller) log() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return discard
}

// Run polls until ctx ends, and returns ctx's error. A full batch it answered is
// followed at once by another poll; an empty or partial one, or a full one it could
// answer none of (requests without a requestContext, which Intune offers again), by
// Interval; a failed poll by a backoff.
func (p *Poller) Run(ctx context.Context) error {
	if p.Client == nil || p.Revoker == nil {
		return fmt.Errorf("%w: the Poller needs a Client and a Revoker", ErrConfig)
	}
	failPause := p.backoff()
	for {
		res, err := p.Poll(ctx)
		wait := p.interval()
		switch {
		case err != nil:
			p.log().WarnContext(ctx, "intune: revocation poll failed", "err", err, "retryIn", failPause)
			wait = failPause
			failPause = min(2*failPause, p.interval())
		case res.Downloaded == p.batch() && res.Revoked+res.Failed > 0:
			wait, failPause = 0, p.backoff()
		default:
			failPause = p.backoff()
		}
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	if ctx.Err() != nil {
		return false
	}
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Poll runs one round: download a batch, revoke each request, upload the results.
// When the upload fails the revocations stand (revoking again is harmless) and Intune
// offers the requests again.
func (p *Poller) Poll(ctx context.Context) (PollResult, error) {
	var res PollResult
	reqs, err := p.Client.DownloadRevocationRequests(ctx, p.batch(), p.IssuerName)
	if err != nil {
		return res, err
	}
	res.Downloaded = len(reqs)
	if len(reqs) == 0 {
		return res, nil
	}
	results := make([]RevocationResult, 0, len(reqs))
	for i := range reqs {
		req := &reqs[i]
		if req.RequestContext == "" {
			p.log().WarnContext(ctx, "intune: revocation request without requestContext skipped")
			continue
		}
		r := p.revoke(ctx, req)
		if ctx.Err() != nil {
			return res, ctx.Err() // unreported requests are offered again
		}
		if r.Succeeded {
			res.Revoked++
		} else {
			res.Failed++
		}
		results = append(results, r)
	}
	if len(results) == 0 {
		return res, nil
	}
	return res, p.Client.UploadRevocationResults(ctx, results)
}

func (p *Poller) revoke(ctx context.Context, req *RevocationRequest) RevocationResult {
	attempts := p.Attempts
	if attempts <= 0 {
		attempts = 3
	}
	pause := p.backoff()
	var err error
	for i := 0; i < attempts; i++ {
		if i > 0 && !sleep(ctx, pause) {
			break
		}
		pause *= 2
		if err = p.Revoker.Revoke(ctx, req); err == nil || !errors.Is(err, crp.ErrUnavailable) {
			break
		}
	}
	log := p.log().With("requestContext", req.RequestContext, "serial", req.SerialNumber)
	if err == nil {
		log.InfoContext(ctx, "intune: revoked")
		return RevocationResult{RequestContext: req.RequestContext, Succeeded: true, ErrorCode: ErrorNone}
	}
	code := ErrorNonRetryable
	var re *RevocationError
	switch {
	case errors.As(err, &re):
		code = re.Code
	case errors.Is(err, ErrCertificateNotFound):
		code = ErrorCertificateNotFound
	case errors.Is(err, ErrNotSupported):
		code = ErrorNotSupported
	case errors.Is(err, crp.ErrUnavailable):
		code = ErrorServiceUnavailable
	}
	if code == ErrorNone || !code.Known() { // the service takes only its enumeration's members
		code = ErrorNonRetryable
	}
	log.WarnContext(ctx, "intune: revocation failed", "code", code.String(), "err", err)
	return RevocationResult{RequestContext: req.RequestContext, ErrorCode: code, ErrorMessage: truncate(err.Error(), MaxErrorDescription)}
}
