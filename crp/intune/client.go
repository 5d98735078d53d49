package intune

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/scepkit/scepkit/crp"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
)

// Defaults, from Microsoft's client library (IRA) unless noted.
const (
	// DefaultAuthority is Microsoft Entra's sign-in endpoint for the global cloud.
	DefaultAuthority = "https://login.microsoftonline.com/"
	// DefaultGraphURL is Microsoft Graph's root, used for service discovery.
	DefaultGraphURL = "https://graph.microsoft.com/"
	// DefaultGraphVersion is the Graph version of the discovery call.
	DefaultGraphVersion = "v1.0"
	// DefaultResource is the Intune resource the service token is asked for.
	DefaultResource = "https://api.manage.microsoft.com/"
	// IntuneAppID is the application id of Intune in every tenant.
	IntuneAppID = "0000000a-0000-0000-c000-000000000000"
	// ValidationService and RevocationService are the provider names of the two
	// services in Intune's service-principal endpoints.
	ValidationService = "ScepRequestValidationFEService"
	RevocationService = "PkiConnectorFEService"
	// ValidationAPIVersion and RevocationAPIVersion are the api-version headers the
	// services expect.
	ValidationAPIVersion = "2018-02-20"
	RevocationAPIVersion = "5019-05-05"

	// DefaultTimeout bounds one HTTP exchange (scepkit's choice).
	DefaultTimeout = 30 * time.Second
	// DefaultMaxResponse bounds a response body (scepkit's choice).
	DefaultMaxResponse = 1 << 20
	// DefaultRetries is how many times a retryable call is tried again (scepkit's choice).
	DefaultRetries = 2
	// MaxRetryAfter is the longest Retry-After (of a 429 or 503) a call waits for
	// before it tries again; a service asking for longer fails the call at once
	// (transient: a device's challenge is released, to retry later).
	MaxRetryAfter = 30 * time.Second
)

// Errors a Client returns; test them with errors.Is. Every one of them also matches
// crp.ErrUnavailable, except ErrConfig: no verdict could be obtained, the device may
// try again later.
var (
	// ErrConfig: the Client is missing a setting.
	ErrConfig = errors.New("intune: configuration")
	// ErrSignIn: Microsoft Entra refused or failed the client-credentials sign-in.
	ErrSignIn = errors.New("intune: sign-in failed")
	// ErrDiscovery: Graph's service-principal endpoints could not be read, or do not
	// name the service.
	ErrDiscovery = errors.New("intune: service discovery failed")
	// ErrService: the service answered with a non-2xx status.
	ErrService = errors.New("intune: service error")
	// ErrTransport: the service could not be reached or did not answer in time.
	ErrTransport = errors.New("intune: service unreachable")
	// ErrResponse: the service's answer is not what the protocol says (malformed
	// JSON, a missing field, a body over the size limit).
	ErrResponse = errors.New("intune: malformed answer")
)

// Client talks to Intune's SCEP validation service and PKI connector service: it signs
// in to Microsoft Entra with client credentials, discovers the services' addresses
// through Microsoft Graph, and posts JSON with the headers the services expect
// (Authorization, api-version, a fresh client-request-id per call).
//
// Set the fields, call Validate, then use it; do not change the fields afterwards. It
// is safe for concurrent use. Tokens and discovered addresses are cached; the client
// secret, tokens, challenges and CSRs are never logged.
type Client struct {
	// Tenant is the Entra tenant (its id or a verified domain). Required.
	Tenant string
	// ClientID is the application (client) id of the Entra app registration that
	// holds the "SCEP challenge validation" permission of Microsoft Intune API and
	// Application.Read.All of Microsoft Graph. Required.
	ClientID string
	// ClientSecret is the app's secret. Set it, or Certificate and Key.
	ClientSecret string
	// Certificate and Key are a certificate credential of the app: sign-in sends a
	// JWT client assertion signed with Key (RS256). Key must be RSA (Microsoft Entra
	// accepts RSA-signed assertions only; Validate refuses any other) and may live in
	// an HSM or KMS.
	Certificate *x509.Certificate
	Key         crypto.Signer
	// CallerInfo identifies this CA (its name and version) in Intune's logs: the
	// library's PROVIDER_NAME_AND_VERSION. Required.
	CallerInfo string

	// Authority is the sign-in endpoint; "" means DefaultAuthority. The token URL is
	// Authority + Tenant + "/oauth2/v2.0/token".
	Authority string
	// GraphURL is Microsoft Graph's root; "" means DefaultGraphURL. GraphVersion ""
	// means DefaultGraphVersion.
	GraphURL     string
	GraphVersion string
	// Resource is the Intune resource for the service token; "" means DefaultResource.
	Resource string
	// AppID is Intune's application id; "" means IntuneAppID.
	AppID string
	// Endpoints, when set, maps provider names to service URLs and skips discovery
	// (a fixed deployment, or a proxy).
	Endpoints map[string]string
	// ValidationVersion and RevocationVersion override the api-version headers.
	ValidationVersion string
	RevocationVersion string

	// HTTPClient makes the requests; nil means a client with Timeout. Its own
	// Timeout, if any, applies too. Redirects are never followed, whatever its
	// CheckRedirect: a 3xx answer is no answer (the Client uses a copy of it).
	HTTPClient *http.Client
	// Timeout bounds each HTTP exchange; 0 means DefaultTimeout.
	Timeout time.Duration
	// MaxResponse bounds each response body; 0 means DefaultMaxResponse.
	MaxResponse int64
	// Retries is how many more times a retryable call is tried after a transient
	// failure; 0 means DefaultRetries, negative means none.
	Retries int
	// Backoff is the first pause before a retry, doubled each time; 0 means 200ms.
	Backoff time.Duration
	// Logger receives one record per HTTP exchange (no secrets); nil means none.
	Logger *slog.Logger
	// MeterProvider receives MetricCalls; nil means no metrics. It is never the
	// global provider. Set it before the first call.
	MeterProvider metric.MeterProvider
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	tokens    sync.Map // scope → *tokenCache
	discovery discoveryCache
	initOnce  sync.Once
	http      *http.Client
	calls     metric.Int64Counter
	callDur   metric.Float64Histogram
}

// MetricCalls counts the calls to Intune (each with its retries) by
// scepkit.intune.operation (validateRequest, sendSuccessNotification, ...) and
// scepkit.result: ok, or the kind of failure (sign_in, service, transport, response,
// other). MetricCallDuration is their duration in seconds, by the same attributes.
const (
	MetricCalls        = "scepkit.intune.calls"
	MetricCallDuration = "scepkit.intune.call.duration"
)

// callBuckets are MetricCallDuration's bucket boundaries, in seconds: from a local
// answer to a call retried for minutes. OpenTelemetry's default boundaries (0 to
// 10000) are meant for milliseconds.
var callBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 180}

// record counts one call and its outcome.
func (c *Client) record(ctx context.Context, op string, start time.Time, err error) {
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, ErrSignIn):
		result = "sign_in"
	case errors.Is(err, ErrService):
		result = "service"
	case errors.Is(err, ErrTransport):
		result = "transport"
	case errors.Is(err, ErrResponse):
		result = "response"
	default:
		result = "other"
	}
	attrs := metric.WithAttributes(attribute.String("scepkit.intune.operation", op), attribute.String("scepkit.result", result))
	c.calls.Add(ctx, 1, attrs)
	c.callDur.Record(ctx, time.Since(start).Seconds(), attrs)
}

// Validate reports a missing or contradictory setting, as an error matching ErrConfig.
func (c *Client) Validate() error {
	var missing []string
	if c.Tenant == "" {
		missing = append(missing, "Tenant")
	}
	if c.ClientID == "" {
		missing = append(missing, "ClientID")
	}
	if c.CallerInfo == "" {
		missing = append(missing, "CallerInfo")
	}
	if c.ClientSecret == "" && (c.Certificate == nil || c.Key == nil) {
		missing = append(missing, "ClientSecret (or Certificate and Key)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: the Client needs %s", ErrConfig, strings.Join(missing, ", "))
	}
	if c.ClientSecret != "" && c.Key != nil {
		return fmt.Errorf("%w: set ClientSecret or Certificate and Key, not both", ErrConfig)
	}
	if c.Key != nil {
		if err := checkCredential(c.Certificate, c.Key); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	for name, u := range map[string]string{"Authority": c.Authority, "GraphURL": c.GraphURL, "Resource": c.Resource} {
		if u == "" {
			continue
		}
		if p, err := url.Parse(u); err != nil || p.Scheme == "" || p.Host == "" {
			return fmt.Errorf("%w: %s %q is not an absolute URL", ErrConfig, name, u)
		}
	}
	return nil
}

func (c *Client) init() {
	c.initOnce.Do(func() {
		c.discovery.sem = make(chan struct{}, 1)
		hc := c.HTTPClient
		if hc == nil {
			hc = &http.Client{Timeout: c.timeout()}
		}
		// A copy that never follows a redirect: the answer to a validation must come
		// from the service asked (a POST re-sent elsewhere carries the CSR and its
		// challenge, and the other host's "Success" would be taken as Intune's). A 3xx
		// is a non-2xx answer, so no verdict, as Microsoft's library treats it.
		cp := *hc
		cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		c.http = &cp
		mp := c.MeterProvider
		if mp == nil {
			mp = metricnoop.NewMeterProvider()
		}
		m := mp.Meter("github.com/scepkit/scepkit/crp/intune")
		// An instrument that cannot be made is still a usable no-op.
		c.calls, _ = m.Int64Counter(MetricCalls, metric.WithUnit("{call}"),
			metric.WithDescription("Calls to Intune by operation and result."))
		c.callDur, _ = m.Float64Histogram(MetricCallDuration, metric.WithUnit("s"),
			metric.WithDescription("Duration of calls to Intune, retries included."),
			metric.WithExplicitBucketBoundaries(callBuckets...))
	})
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

func (c *Client) maxResponse() int64 {
	if c.MaxResponse > 0 {
		return c.MaxResponse
	}
	return DefaultMaxResponse
}

func (c *Client) retries() int {
	switch {
	case c.Retries < 0:
		return 0
	case c.Retries == 0:
		return DefaultRetries
	}
	return c.Retries
}

func (c *Client) backoff() time.Duration {
	if c.Backoff > 0 {
		return c.Backoff
	}
	return 200 * time.Millisecond
}

func (c *Client) log() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return discard
}

var discard = slog.New(slog.DiscardHandler)

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func withSlash(s string) string {
	if !strings.HasSuffix(s, "/") {
		return s + "/"
	}
	return s
}

// TokenURL is the token endpoint the Client signs in at.
func (c *Client) TokenURL() string {
	return withSlash(orDefault(c.Authority, DefaultAuthority)) + url.PathEscape(c.Tenant) + "/oauth2/v2.0/token"
}

// intuneScope is the scope of the service token: the resource followed by
// "/.default", as Microsoft's library writes it (the default resource ends with a
// slash, so the scope has two).
func (c *Client) intuneScope() string { return orDefault(c.Resource, DefaultResource) + "/.default" }

func (c *Client) graphScope() string {
	return withSlash(orDefault(c.GraphURL, DefaultGraphURL)) + ".default"
}

// newRequestID returns a random (version 4) UUID for client-request-id.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	out := make([]byte, 0, 36)
	for i, x := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hex[x>>4], hex[x&0xf])
	}
	return string(out)
}

// exchange is one call to an Intune service (or Graph).
type exchange struct {
	method, url string
	scope       string  // token scope
	apiVersion  string  // api-version header; "" for none
	body        any     // JSON body for POST
	retry       bool    // safe to retry after a transient failure
	op          string  // for logs and errors: "validateRequest", ...
	txID        string  // SCEP transactionID, for logs
	requestID   *string // if set, receives the client-request-id of the last attempt
}

// statusError is a non-2xx answer.
type statusError struct {
	status     int
	requestID  string
	detail     string
	retryAfter time.Duration // the Retry-After of a 429 or 503, 0 if none
}

func (e *statusError) Error() string {
	s := "HTTP " + strconv.Itoa(e.status) + " (client-request-id " + e.requestID + ")"
	if e.detail != "" {
		s += ": " + e.detail
	}
	return s
}

// retryableStatus: the answers that say "try again" (throttled, gateway or service
// temporarily unavailable). A 500 is not retried: the service failed processing.
func retryableStatus(code int) bool {
	return code == http.StatusTooManyRequests || code == http.StatusBadGateway ||
		code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout
}

// do runs ex, retrying transient failures when ex.retry, and decodes the JSON answer
// into out. Its errors match crp.ErrUnavailable and one of ErrSignIn, ErrService,
// ErrTransport, ErrResponse.
func (c *Client) do(ctx context.Context, ex exchange, out any) (err error) {
	c.init()
	defer func(start time.Time) { c.record(ctx, ex.op, start, err) }(time.Now())
	var body []byte
	if ex.body != nil {
		var err error
		if body, err = json.Marshal(ex.body); err != nil {
			return fmt.Errorf("intune: %s: %w", ex.op, err)
		}
	}
	attempts := 1
	if ex.retry {
		attempts += c.retries()
	}
	pause := c.backoff()
	var asked time.Duration // the Retry-After of the last answer, if longer
	for i := 0; i < attempts; i++ {
		if i > 0 {
			t := time.NewTimer(max(pause, asked))
			select {
			case <-ctx.Done():
				t.Stop()
				return unavailable(ErrTransport, fmt.Errorf("intune: %s: %w (after %v)", ex.op, ctx.Err(), err))
			case <-t.C:
			}
			pause, asked = pause*2, 0
		}
		var retry bool
		retry, err = c.once(ctx, ex, body, out)
		if err == nil || !retry || ctx.Err() != nil {
			break
		}
		var se *statusError
		if errors.As(err, &se) && se.retryAfter > 0 && i+1 < attempts {
			// The service's own schedule (RFC 9110 section 10.2.3), when it is longer
			// than ours; one it sets past MaxRetryAfter, or past the caller's deadline,
			// is not waited for: the call fails now, transient.
			if d, ok := ctx.Deadline(); se.retryAfter > MaxRetryAfter || ok && time.Until(d) < se.retryAfter {
				break
			}
			asked = se.retryAfter // for this pause only: the schedule goes on from ours
		}
	}
	return err
}

// retryAfter reads a Retry-After header: delay-seconds or an HTTP-date; 0 when absent
// or unreadable.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func unavailable(kind, err error) error {
	return &kindError{kind: kind, err: err}
}

// kindError marks err with a sentinel and crp.ErrUnavailable.
type kindError struct{ kind, err error }

func (e *kindError) Error() string { return e.err.Error() }
func (e *kindError) Unwrap() []error {
	return []error{e.err, e.kind, crp.ErrUnavailable}
}

// once runs one HTTP exchange; retry says whether a failure is transient.
func (c *Client) once(ctx context.Context, ex exchange, body []byte, out any) (retry bool, err error) {
	token, err := c.token(ctx, ex.scope)
	if err != nil {
		var r *refusal
		return !errors.As(err, &r), err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, ex.method, ex.url, rd)
	if err != nil {
		return false, fmt.Errorf("%w: intune: %s: %w", ErrConfig, ex.op, err)
	}
	reqID := newRequestID()
	if ex.requestID != nil {
		*ex.requestID = reqID
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("client-request-id", reqID)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.CallerInfo)
	if ex.apiVersion != "" {
		req.Header.Set("api-version", ex.apiVersion)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	start := c.now()
	resp, err := c.http.Do(req)
	log := c.log().With("op", ex.op, "clientRequestID", reqID)
	if ex.txID != "" {
		log = log.With("transactionID", ex.txID)
	}
	if err != nil {
		log.WarnContext(ctx, "intune: request failed", "err", redactURL(err), "duration", c.now().Sub(start))
		return true, unavailable(ErrTransport, fmt.Errorf("intune: %s (client-request-id %s): %w", ex.op, reqID, redactURL(err)))
	}
	defer resp.Body.Close()
	limit := c.maxResponse()
	data, rerr := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	log.InfoContext(ctx, "intune: request", "status", resp.StatusCode, "bytes", len(data), "duration", c.now().Sub(start))
	if rerr != nil {
		return true, unavailable(ErrTransport, fmt.Errorf("intune: %s (client-request-id %s): reading the answer: %w", ex.op, reqID, rerr))
	}
	if int64(len(data)) > limit {
		return false, unavailable(ErrResponse, fmt.Errorf("intune: %s (client-request-id %s): answer over %d bytes", ex.op, reqID, limit))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if resp.StatusCode == http.StatusUnauthorized {
			c.forgetToken(ex.scope)
		}
		se := &statusError{status: resp.StatusCode, requestID: reqID, detail: snippet(data)}
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			se.retryAfter = retryAfter(resp.Header, time.Now())
		}
		return retryableStatus(resp.StatusCode), unavailable(ErrService, fmt.Errorf("intune: %s: %w", ex.op, se))
	}
	if out == nil {
		return false, nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return false, unavailable(ErrResponse, fmt.Errorf("intune: %s (client-request-id %s): %w", ex.op, reqID, err))
	}
	return false, nil
}

// snippet returns the start of an error body, for the error message (service error
// bodies carry codes and messages, never our secrets).
func snippet(b []byte) string {
	const max = 200
	s := strings.TrimSpace(string(b))
	if len(s) > max {
		s = s[:max] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// redactURL drops the query of a *url.Error's URL (none of ours carry secrets, but a
// configured URL might).
func redactURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			u.RawQuery, u.User = "", nil
			return &url.Error{Op: ue.Op, URL: u.String(), Err: ue.Err}
		}
	}
	return err
}
