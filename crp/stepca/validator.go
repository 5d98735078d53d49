package stepca

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/internal/plainhttp"
)

// DefaultMaxResponse bounds the answer a Validator reads.
const DefaultMaxResponse = 64 << 10

// Validator is a crp.ChallengeValidator that asks a service speaking step-ca's
// SCEPCHALLENGE webhook format (an MDM that already serves step-ca) to judge
// challenges: it posts the challenge, the SCEP transactionID and the CSR, signed with
// X-Smallstep-Signature, and passes the request only on {"allow": true}. Put it in
// RegistrationPoint.Validators.
//
// The URL must be https, or plain http on a loopback host, and no redirect may lead
// to plain http elsewhere: the answer is not signed, so over plain http anyone on the
// path could allow any challenge.
//
// A refusal ({"allow": false}) refuses in phase 2; no answer (transport error,
// timeout, a non-2xx status, a malformed or oversized answer) refuses in phase 2 with
// an error matching crp.ErrUnavailable, so that the device may retry. The challenge,
// the secret and the tokens are never logged.
type Validator struct {
	// URL is the webhook's address. Required.
	URL string
	// Secret is the webhook secret (decoded). Required.
	Secret []byte
	// WebhookID and ProvisionerName are sent as step-ca sends them; optional.
	WebhookID, ProvisionerName string
	// BearerToken, or Username and Password, authenticate the request when set.
	BearerToken        string
	Username, Password string
	// Client sends the request (its TLS settings carry any client certificate);
	// nil means a client with http.DefaultTransport. Its CheckRedirect is kept, after
	// the refusal of a redirect to plain http.
	Client *http.Client
	// Accept, if set, chooses the challenges to judge; nil means every non-empty
	// challenge that is not one of scepkit's own (challenge.LooksLikeToken).
	Accept func(challenge string) bool
	// Timeout bounds a call; zero means DefaultTimeout. MaxResponse bounds the
	// answer; zero means DefaultMaxResponse.
	Timeout     time.Duration
	MaxResponse int64
	// Now is the clock of the timestamp; nil means time.Now.
	Now func() time.Time
}

var _ crp.ChallengeValidator = (*Validator)(nil)

// Accepts implements crp.ChallengeValidator.
func (v *Validator) Accepts(ch string) bool {
	if v.Accept != nil {
		return v.Accept(ch)
	}
	return ch != "" && !challenge.LooksLikeToken(ch)
}

// ErrRefused: the service answered {"allow": false}.
var ErrRefused = errors.New("stepca: the webhook did not allow the request")

// Validate implements crp.ChallengeValidator.
func (v *Validator) Validate(ctx context.Context, tx *crp.Transaction) error {
	if tx.CSR == nil {
		return &crp.Error{Phase: crp.PhaseGateway, Reason: crp.ReasonCSRSignature, Err: errors.New("no CSR")}
	}
	resp, err := v.call(ctx, tx.ID, tx.CSR, tx.Challenge)
	switch {
	case err != nil:
		return &crp.Error{Phase: crp.PhaseGenuineness, Reason: crp.ReasonInternal,
			Err: fmt.Errorf("%w: no verdict from the webhook: %w", crp.ErrUnavailable, err)}
	case !resp.Allow:
		detail := ""
		if resp.Error != nil {
			detail = ": " + oneLine(resp.Error.Code+" "+resp.Error.Message, 200)
		}
		return &crp.Error{Phase: crp.PhaseGenuineness, Reason: crp.ReasonCheckFailed, Err: fmt.Errorf("%w%s", ErrRefused, detail)}
	}
	return nil
}

func (v *Validator) call(ctx context.Context, txID string, csr *x509.CertificateRequest, ch string) (*Response, error) {
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	body, err := json.Marshal(&Request{Timestamp: now(), ProvisionerName: v.ProvisionerName,
		X509CertificateRequest: newCertificateRequest(csr), SCEPChallenge: ch, SCEPTransactionID: txID})
	if err != nil {
		return nil, err
	}
	timeout := v.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.URL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if !plainhttp.Protected(req.URL) {
		// The answer is not signed: over plain http anyone on the path could allow.
		return nil, errors.New("the webhook URL is plain http to a host that is not loopback: use https")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderSignature, Sign(v.Secret, body))
	if v.WebhookID != "" {
		req.Header.Set(HeaderWebhookID, v.WebhookID)
	}
	if v.BearerToken != "" {
		req.Header.Set("Authorization", "Bearer "+v.BearerToken)
	} else if v.Username != "" || v.Password != "" {
		req.SetBasicAuth(v.Username, v.Password)
	}
	client := http.Client{}
	if v.Client != nil {
		client = *v.Client
	}
	client.CheckRedirect = plainhttp.CheckRedirect(client.CheckRedirect)
	res, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	max := v.MaxResponse
	if max <= 0 {
		max = DefaultMaxResponse
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, max+1))
	switch {
	case err != nil:
		return nil, err
	case res.StatusCode < 200 || res.StatusCode > 299:
		return nil, fmt.Errorf("HTTP %d", res.StatusCode)
	case int64(len(b)) > max:
		return nil, fmt.Errorf("answer over %d bytes", max)
	}
	var out Response
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("malformed answer: %w", err)
	}
	return &out, nil
}

// newCertificateRequest writes a CSR as step-ca does.
func newCertificateRequest(csr *x509.CertificateRequest) *CertificateRequest {
	s := csr.Subject
	out := &CertificateRequest{Version: csr.Version, RawSubject: csr.RawSubject, DNSNames: csr.DNSNames,
		EmailAddresses: csr.EmailAddresses, IPAddresses: csr.IPAddresses,
		PublicKey: csr.RawSubjectPublicKeyInfo, PublicKeyAlgorithm: csr.PublicKeyAlgorithm.String(), Raw: csr.Raw,
		Subject: Name{Country: s.Country, Organization: s.Organization, OrganizationalUnit: s.OrganizationalUnit,
			Locality: s.Locality, Province: s.Province, StreetAddress: s.StreetAddress, PostalCode: s.PostalCode,
			SerialNumber: s.SerialNumber, CommonName: s.CommonName}}
	for _, u := range csr.URIs {
		out.URIs = append(out.URIs, u.String())
	}
	return out
}
