package scep

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Errors returned by the [Client].
var (
	// ErrRefused is wrapped in the *FailError a Client returns when the server
	// answered FAILURE; the FailError's Info is the server's failInfo.
	ErrRefused = errors.New("scep: request refused by the server")
	// ErrPending is returned when the server still answers PENDING as the context ends.
	ErrPending = errors.New("scep: request still pending")
	// ErrFingerprint is returned when no certificate GetCACert returned matches the
	// pinned CA fingerprint, and, before an exchange that needs the CA sends anything
	// (Enroll, Renew, GetCert, GetCRL, GetCACert, GetNextCACert), when a Client has no CAFingerprint
	// and does not set InsecureSkipCAVerify or has one that is not 32 bytes (a
	// SHA-256). GetCACaps alone needs no pin: its answer is not trusted for anything
	// that could weaken the exchange (see Cipher).
	ErrFingerprint = errors.New("scep: CA fingerprint mismatch")
	// ErrClientKey is returned by the Client's requests for a requester key it cannot
	// use: the CertRep is encrypted to that key with RSA key transport, so it must be
	// an RSA key that is also a crypto.Decrypter.
	ErrClientKey = errors.New("scep: unusable requester key")
	// ErrBadReply is returned for a reply that does not answer the request: wrong
	// transactionID or recipientNonce, unknown signer, wrong content, bad HTTP status,
	// and a GetCRL answer whose CRL the CA it names did not sign (see
	// [Client.GetCRL]).
	ErrBadReply = errors.New("scep: bad reply")
	// ErrStaleCRL is returned by [Client.GetCRL], along with ErrBadReply, for a CRL
	// whose nextUpdate has passed: the revocations since are missing from it.
	ErrStaleCRL = errors.New("scep: CRL past its nextUpdate")
)

// ClockSkew is how far past a certificate's NotAfter (or a CRL's nextUpdate) the
// Client's clock may be before it takes the certificate as expired (the CRL as stale).
// A NotBefore still to come is not held against a certificate: devices enroll with
// clocks far behind (no real-time clock, no time source yet), and what a date still
// to come would guard against is the CA's own doing.
const ClockSkew = 5 * time.Minute

// notExpired reports whether cert has not expired at now, give or take ClockSkew.
func notExpired(cert *x509.Certificate, now time.Time) bool {
	return !now.After(cert.NotAfter.Add(ClockSkew))
}

// DefaultMaxResponseBytes bounds what a Client reads of one HTTP response.
const DefaultMaxResponseBytes = 1 << 20

// Client is a SCEP client (RFC 8894): it fetches caps and CA certificates, and enrolls,
// renews, polls, and fetches certificates and CRLs. Its zero value is not usable: URL and
// CAFingerprint are required. A Client is safe for concurrent use.
//
// # Which certificates the Client trusts
//
// SCEP runs over plain HTTP, so everything rests on the CA certificate the Client pins
// with CAFingerprint. Of what GetCACert returns, the Client keeps:
//   - the certificate whose SHA-256 is CAFingerprint;
//   - CA certificates (basicConstraints cA) issued by a certificate it keeps, such as
//     an issuing CA under a pinned root;
//   - RA certificates issued by a CA certificate it keeps, where an RA certificate is
//     one [IsRA] accepts: not a CA, extended key usage Certificate Request Agent
//     (1.3.6.1.4.1.311.20.2.1, which NDES puts on its RA certificates and
//     catemplate.NewRA on both of its own), and no serverAuth, clientAuth or
//     anyExtendedKeyUsage.
//
// Everything else is dropped: a device certificate the same CA issued to someone else
// is not an RA, and neither is an RA or intermediate CA certificate that has expired
// (give or take [ClockSkew]): the key of a retired RA certificate may have been leaked
// or kept by whoever decommissioned it. The pinned CA itself is kept whatever its
// dates: the fingerprint is the caller's own decision, and replacing an expired CA
// means changing it.
//
// Requests are encrypted to a kept RA certificate with keyEncipherment, else to a kept
// RA, else to the issuing CA (the kept CA certificate that issued no other kept CA
// certificate). CertPoll names as the issuer (RFC 8894 §3.3.3) the CA that issued
// that RA, else the issuing CA. A CertRep or a GetNextCACert answer is accepted only
// when signed by a kept certificate; an issued certificate only when a kept CA
// certificate issued it. A server whose RA certificates lack the EKU can still be used:
// pin the CA and the client encrypts to the CA; if the server cannot decrypt that, its
// RA certificates need the EKU.
//
// # Following an RA renewal
//
// The RA may be renewed between the Client's GetCACert and the reply to its request
// (a request sent with certificates fetched just before a renewal, or served from a
// stale cache), and a request may stay PENDING for days, longer than the RA
// certificates it began with serve. When the reply to a request (PKCSReq,
// RenewalReq) or to a CertPoll is signed by no certificate the Client keeps, or is a
// FAILURE badMessageCheck (what a server answers a request encrypted to an RA it no
// longer holds), the Client fetches GetCACert again and keeps from it what it keeps
// at the start: the same pin, the same rules, expired certificates dropped. When that
// differs from what it held, it sends the same message once more with the new
// certificates (the same transactionID, signer and CSR, which a server that decided
// the first copy answers from its record of the transaction instead of deciding, and
// issuing, again) and polls with them from then on; otherwise the reply stands. An RA
// the pinned CA did not issue is dropped as at the start, so a reply it signs is still
// refused with [ErrBadReply] (the error also matches GetCACert's own, [ErrFingerprint]
// say, when that fetch fails). There is at most one GetCACert and one resend for the
// request and for each poll, within the context of the request, and every CertPoll
// names the CA of the certificates the request was last sent with.
//
// A reply signed by an RA the Client does not hold cannot be read, so whether the
// server decided the first copy is unknown; the resend relies on the server
// recognising it. scepkit's registration point does (by its type, signer and CSR); a
// server that decides each copy anew could issue twice for it. A CertPoll instead of
// the resend would not do: a transactionID made from the key, as this Client's are, is
// shared by a renewal with the same key and the enrollment before it, whose
// certificate a poll could bring back.
type Client struct {
	// URL is the SCEP endpoint, for example http://ndes.example.com/certsrv/mscep/mscep.dll.
	URL string
	// HTTPClient sends the requests; nil means a client with a 30-second timeout whose
	// transport, a clone of http.DefaultTransport made once per process when first
	// needed, reads at most DefaultMaxResponseHeaderBytes of response headers (a
	// DefaultTransport that is not an *http.Transport is used as it is). When
	// its CheckRedirect is nil, the Client uses a copy with the same redirect policy as
	// its default: a redirect is followed only to the same host name, at most 5 times
	// (see [ErrBadReply]). Its Transport's MaxResponseHeaderBytes bounds the headers
	// it reads (zero means net/http's default, megabytes).
	HTTPClient *http.Client
	// CAFingerprint is the SHA-256 of the CA certificate: GetCACert fails unless one
	// of the returned certificates has it, and keeps only the certificates described
	// in "Which certificates the Client trusts". Required unless InsecureSkipCAVerify.
	CAFingerprint []byte
	// InsecureSkipCAVerify, when CAFingerprint is empty, makes the Client trust
	// whatever certificates GetCACert returns, as [crypto/tls.Config]'s
	// InsecureSkipVerify does for TLS: anyone on the network path can then read the
	// challenge, answer in the CA's name and hand out certificates of his own. Use it
	// only to look at a server by hand or in tests that are about something else.
	InsecureSkipCAVerify bool
	// Cipher and Digest force the algorithms; zero means negotiated from GetCACaps:
	// AES-256 when AES or SCEPStandard is listed or nothing is (RFC 8894 section
	// 3.5.2: SCEPStandard implies AES), 3DES otherwise; SHA-512 when it is listed and
	// neither SHA-256 nor SCEPStandard (which implies SHA-256) is, SHA-256 otherwise. Single DES and SHA-1 are used only when set
	// here: GetCACaps is not signed, and negotiating them from it would let anyone on
	// the network path downgrade a pinned Client.
	Cipher Cipher
	Digest crypto.Hash
	// PollInterval is the wait between CertPoll requests while PENDING; zero means 10s.
	PollInterval time.Duration
	// MaxResponseBytes bounds the body of a response; zero means
	// DefaultMaxResponseBytes. Headers are bounded by the HTTPClient's transport.
	MaxResponseBytes int64
	// Rand is the source of randomness; nil means crypto/rand.
	Rand io.Reader
	// Now is the clock the Client checks expiry against (the certificates it keeps,
	// the certificate it is issued, a CRL's nextUpdate), give or take ClockSkew; nil
	// means time.Now. A device whose clock cannot be trusted may pass a better source.
	Now func() time.Time
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// DefaultMaxResponseHeaderBytes bounds the response headers the default HTTP client
// of a [Client] reads: a SCEP answer needs a few hundred bytes of them.
const DefaultMaxResponseHeaderBytes = 64 << 10

// defaultHTTPClient is the HTTP client of every Client whose HTTPClient is nil; one,
// so that its connections are reused. It is made once per process, when the first such
// Client sends a request, not when the package loads, so that a program that
// configures http.DefaultTransport in main (a proxy, its RootCAs) is heard: an
// *http.Transport is cloned with its headers bounded, any other RoundTripper is used
// as it is (its headers then bounded as it bounds them).
var defaultHTTPClient = sync.OnceValue(func() *http.Client {
	hc := &http.Client{Timeout: 30 * time.Second, CheckRedirect: sameServer, Transport: http.DefaultTransport}
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		tr := dt.Clone()
		tr.MaxResponseHeaderBytes = DefaultMaxResponseHeaderBytes
		hc.Transport = tr
	}
	return hc
})

func (c *Client) httpClient() *http.Client {
	if c.HTTPClient == nil {
		return defaultHTTPClient()
	}
	if c.HTTPClient.CheckRedirect == nil {
		hc := *c.HTTPClient
		hc.CheckRedirect = sameServer
		return &hc
	}
	return c.HTTPClient
}

// sameServer is the Client's redirect policy, unless its HTTPClient has one: a redirect is followed only to
// the same host name (any port), with the same scheme or from http to https, and at
// most 5 times, so that a server (or anyone answering for it over plain HTTP) cannot
// send the request, its challenge encrypted but its metadata in clear, to another
// host.
func sameServer(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("scep: stopped after 5 redirects")
	}
	first := via[0].URL
	scheme := req.URL.Scheme == first.Scheme || (first.Scheme == "http" && req.URL.Scheme == "https")
	if !scheme || !strings.EqualFold(req.URL.Hostname(), first.Hostname()) {
		return fmt.Errorf("%w: redirect to another server refused", ErrBadReply)
	}
	return nil
}

func (c *Client) rand() io.Reader {
	if c.Rand != nil {
		return c.Rand
	}
	return rand.Reader
}

// get performs a GET with operation op and returns the body and its media type.
func (c *Client) get(ctx context.Context, op, message string) ([]byte, string, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, "", err
	}
	q := "operation=" + op
	if message != "" {
		q += "&message=" + message
	}
	u.RawQuery = q
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, "", err
	}
	return c.do(req)
}

func (c *Client) do(req *http.Request) ([]byte, string, error) {
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	limit := c.MaxResponseBytes
	if limit <= 0 {
		limit = DefaultMaxResponseBytes
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, "", err
	}
	if int64(len(body)) > limit {
		return nil, "", fmt.Errorf("%w: response larger than %d bytes", ErrBadReply, limit)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("%w: HTTP %d", ErrBadReply, resp.StatusCode)
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return body, mt, nil
}

// GetCACaps returns the server's capabilities.
func (c *Client) GetCACaps(ctx context.Context) (Caps, error) {
	body, _, err := c.get(ctx, "GetCACaps", "")
	if err != nil {
		return nil, err
	}
	return ParseCaps(string(body)), nil
}

// GetCACert returns the CA (and RA) certificates the Client trusts: the pinned CA and
// what chains to it (see [Client]), or with InsecureSkipCAVerify everything returned.
func (c *Client) GetCACert(ctx context.Context) ([]*x509.Certificate, error) {
	if err := c.checkPin(); err != nil {
		return nil, err
	}
	return c.getCACert(ctx)
}

// getCACert is GetCACert for a Client whose pin was checked.
func (c *Client) getCACert(ctx context.Context) ([]*x509.Certificate, error) {
	body, mt, err := c.get(ctx, "GetCACert", "")
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	if mt == "application/x-x509-ca-ra-cert" {
		certs, _, err = parseDegenerate(body)
	} else {
		var cert *x509.Certificate
		cert, err = x509.ParseCertificate(body)
		certs = []*x509.Certificate{cert}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: GetCACert: %s", ErrBadReply, errText(err))
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: GetCACert returned no certificate", ErrBadReply)
	}
	if err := checkCACerts("GetCACert", certs); err != nil {
		return nil, err
	}
	if len(c.CAFingerprint) > 0 {
		if certs = pinned(certs, c.CAFingerprint, c.now()); certs == nil {
			return nil, ErrFingerprint
		}
	}
	return certs, nil
}

// requesterKey is key as the Decrypter that reads the CertRep, which is encrypted to
// the signer certificate's key with RSA key transport (RFC 8894 §3.3.2).
func requesterKey(key crypto.Signer) (crypto.Decrypter, error) {
	if key == nil {
		return nil, fmt.Errorf("%w: no key", ErrClientKey)
	}
	dec, ok := key.(crypto.Decrypter)
	if _, rsaKey := key.Public().(*rsa.PublicKey); !ok || !rsaKey {
		return nil, fmt.Errorf("%w: the requester key must be an RSA key that is also a crypto.Decrypter, "+
			"to read the reply encrypted to it (got %T)", ErrClientKey, key)
	}
	return dec, nil
}

// checkPin refuses, before anything is sent, a Client that could trust no answer: no
// CAFingerprint without InsecureSkipCAVerify, or a CAFingerprint that is not a SHA-256
// (which no certificate could match).
func (c *Client) checkPin() error {
	switch n := len(c.CAFingerprint); {
	case n == 0 && !c.InsecureSkipCAVerify:
		return fmt.Errorf("%w: no CAFingerprint to check the server against (set it, or InsecureSkipCAVerify)", ErrFingerprint)
	case n != 0 && n != sha256.Size:
		return fmt.Errorf("%w: CAFingerprint is %d bytes, not the %d of a SHA-256", ErrFingerprint, n, sha256.Size)
	}
	return nil
}

// checkCACerts bounds the certificates GetCACert or GetNextCACert (op) returned: at
// most MaxCACerts, each with a key CheckKeySize accepts (keys the Client verifies
// with, and encrypts to).
func checkCACerts(op string, certs []*x509.Certificate) error {
	if len(certs) > MaxCACerts {
		return fmt.Errorf("%w: %s returned %d certificates (at most %d)", ErrBadReply, op, len(certs), MaxCACerts)
	}
	for _, cert := range certs {
		if err := CheckKeySize(cert.PublicKey); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrBadReply, op, err)
		}
	}
	return nil
}

// MaxCACerts is the most certificates a [Client] accepts from GetCACert: a CA, its
// chain and its RA certificates are a handful, and each one kept costs signature
// checks.
const MaxCACerts = 32

// oidCertificateRequestAgent is the extended key usage that marks an RA certificate.
var oidCertificateRequestAgent = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 1}

// IsRA reports whether cert is marked as a SCEP RA certificate for a [Client]: it is
// not a CA, its extended key usage lists Certificate Request Agent
// (1.3.6.1.4.1.311.20.2.1), and it does not list serverAuth, clientAuth or
// anyExtendedKeyUsage, so no TLS or device certificate passes. Whether the right CA
// issued it is checked separately. An RA serving a Client needs both its signing and
// its encryption certificate marked.
func IsRA(cert *x509.Certificate) bool {
	if cert == nil || cert.IsCA {
		return false
	}
	for _, u := range cert.ExtKeyUsage {
		if u == x509.ExtKeyUsageServerAuth || u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageAny {
			return false
		}
	}
	for _, oid := range cert.UnknownExtKeyUsage {
		if oid.Equal(oidCertificateRequestAgent) {
			return true
		}
	}
	return false
}

// pinned returns the pinned CA, the CA certificates that chain to it and the RA
// certificates ([IsRA]) those issued, dropping any other: a man in the middle can slip
// in neither an RA of his own nor a device certificate the same CA issued him. A
// certificate other than the pinned one is kept only when it has not expired at now
// (see [ClockSkew]), and nothing is kept through one that has. It returns nil when no
// certificate has the fingerprint.
func pinned(certs []*x509.Certificate, fp []byte, now time.Time) []*x509.Certificate {
	trusted := make([]bool, len(certs))
	var work []int // trusted CAs whose children are still to be found
	for i, cert := range certs {
		sum := sha256.Sum256(cert.Raw)
		if subtle.ConstantTimeCompare(sum[:], fp) == 1 {
			trusted[i] = true
			work = append(work, i)
		}
	}
	if len(work) == 0 {
		return nil
	}
	// Each trusted CA is taken once and checks the certificates it names as their
	// issuer: every pair at most once, whatever order the server sent them in.
	for len(work) > 0 {
		parent := certs[work[0]]
		work = work[1:]
		if !parent.IsCA {
			continue
		}
		for i, cert := range certs {
			if trusted[i] || !(cert.IsCA || IsRA(cert)) || !bytes.Equal(cert.RawIssuer, parent.RawSubject) ||
				!notExpired(cert, now) {
				continue
			}
			if cert.CheckSignatureFrom(parent) == nil {
				trusted[i] = true
				work = append(work, i)
			}
		}
	}
	var out []*x509.Certificate
	for i, cert := range certs {
		if trusted[i] {
			out = append(out, cert)
		}
	}
	return out
}

// GetNextCACert returns the rollover CA chain the server announces, accepted only when
// signed by a certificate GetCACert kept: the pinned CA, a CA under it, or an RA (see
// [Client]); at most MaxCACerts certificates, each with a key CheckKeySize accepts, the
// expired ones left out (a chain may carry an expired cross-certificate), and an error
// when none is left. The announcement carries no nonce and no date (RFC 8894
// section 4.7): an older one, signed by the same CA or RA, can be replayed. The caller
// decides which of the certificates to trust as the next CA, and when, as for a pin.
func (c *Client) GetNextCACert(ctx context.Context) ([]*x509.Certificate, error) {
	current, err := c.GetCACert(ctx)
	if err != nil {
		return nil, err
	}
	body, _, err := c.get(ctx, "GetNextCACert", "")
	if err != nil {
		return nil, err
	}
	sd, err := parseSignedData(body)
	if err != nil || len(sd.signers) != 1 {
		return nil, fmt.Errorf("%w: GetNextCACert: not a signed message", ErrBadReply)
	}
	signer := sd.signers[0].findSigner(current)
	if signer == nil {
		return nil, fmt.Errorf("%w: GetNextCACert not signed by the current CA or RA", ErrBadReply)
	}
	if _, err := sd.signers[0].verify(signer, sd.content, false); err != nil {
		return nil, fmt.Errorf("%w: GetNextCACert: %s", ErrBadReply, errText(err))
	}
	certs, _, err := parseDegenerate(sd.content)
	if err != nil {
		return nil, fmt.Errorf("%w: GetNextCACert: %s", ErrBadReply, errText(err))
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: GetNextCACert returned no certificate", ErrBadReply)
	}
	if err := checkCACerts("GetNextCACert", certs); err != nil {
		return nil, err
	}
	now := c.now()
	var out []*x509.Certificate
	for _, cert := range certs {
		if notExpired(cert, now) {
			out = append(out, cert)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: GetNextCACert: every certificate announced has expired", ErrBadReply)
	}
	return out, nil
}

// session is what one exchange with the server needs: its certificates and algorithms.
type session struct {
	caps      Caps
	certs     []*x509.Certificate // kept by getCACert when the session opened
	fp        []byte              // the Client's CAFingerprint
	ca        *x509.Certificate   // the issuing CA, for CertPoll's issuer
	recipient *x509.Certificate   // where requests are encrypted to
	cipher    Cipher
	digest    crypto.Hash
}

func (c *Client) open(ctx context.Context) (*session, error) {
	if err := c.checkPin(); err != nil {
		return nil, err
	}
	caps, err := c.GetCACaps(ctx)
	if err != nil {
		return nil, err
	}
	certs, err := c.getCACert(ctx)
	if err != nil {
		return nil, err
	}
	return c.session(caps, certs)
}

// session builds a session from caps and certs (what getCACert kept): its algorithms,
// the certificate requests are encrypted to and the CA a CertPoll names.
func (c *Client) session(caps Caps, certs []*x509.Certificate) (*session, error) {
	s := &session{caps: caps, certs: certs, fp: c.CAFingerprint, cipher: c.Cipher, digest: c.Digest}
	if s.cipher == 0 {
		s.cipher = caps.Cipher()
	}
	if s.digest == 0 {
		s.digest = crypto.SHA256
		if caps.Has(CapSHA512) && !caps.supports(CapSHA256) {
			s.digest = crypto.SHA512
		}
	}
	// The recipient is an RA certificate for key encipherment when there is one, then
	// any other RSA certificate that is not a CA, then the issuing CA.
	for _, cert := range certs {
		if _, ok := cert.PublicKey.(*rsa.PublicKey); !ok || cert.IsCA {
			continue
		}
		if s.recipient == nil || (cert.KeyUsage&x509.KeyUsageKeyEncipherment != 0 &&
			s.recipient.KeyUsage&x509.KeyUsageKeyEncipherment == 0) {
			s.recipient = cert
		}
	}
	s.ca = issuingCA(certs, s.recipient)
	if s.recipient == nil {
		s.recipient = s.ca
		for _, cert := range certs {
			if _, ok := s.recipient.PublicKey.(*rsa.PublicKey); ok {
				break
			}
			if cert.IsCA {
				s.recipient = cert // an RSA CA, when the issuing one is not
			}
		}
	}
	if _, ok := s.recipient.PublicKey.(*rsa.PublicKey); !ok {
		return nil, fmt.Errorf("%w: no RSA certificate to encrypt to", ErrUnsupportedAlgorithm)
	}
	return s, nil
}

// issuingCA returns the CA certificate that CertPoll names as the issuer (RFC 8894
// §3.3.3), of any key type: the one among certs that issued ra when ra is not nil,
// else the deepest, one that issued no other CA certificate among certs (the first
// such in the server's order), else the last certificate.
func issuingCA(certs []*x509.Certificate, ra *x509.Certificate) *x509.Certificate {
	if ra != nil {
		for _, ca := range certs {
			// CertPoll needs the issuer's name only (pinned checked the signature).
			if ca.IsCA && bytes.Equal(ra.RawIssuer, ca.RawSubject) {
				return ca
			}
		}
	}
	for _, ca := range certs {
		if !ca.IsCA {
			continue
		}
		parent := false
		for _, child := range certs {
			if child != ca && child.IsCA && bytes.Equal(child.RawIssuer, ca.RawSubject) &&
				!bytes.Equal(child.RawSubject, ca.RawSubject) {
				parent = true
				break
			}
		}
		if !parent {
			return ca
		}
	}
	return certs[len(certs)-1]
}

// kept returns the session's certificates that are still kept at now: polling can
// outlast an RA or intermediate certificate.
func (s *session) kept(now time.Time) []*x509.Certificate {
	if len(s.fp) == 0 {
		return s.certs
	}
	return pinned(s.certs, s.fp, now)
}

// errUnknownSigner is wrapped, with ErrBadReply, in the error of exchange for a
// CertRep signed by no certificate the session keeps.
var errUnknownSigner = errors.New("CertRep signed by a certificate GetCACert did not return, or one not valid now")

// exchange sends one request and returns the verified, decrypted CertRep, and the
// session's certificates kept when it arrived (see [session.kept]).
func (c *Client) exchange(ctx context.Context, s *session, typ MessageType, tid string, payload []byte,
	signerCert *x509.Certificate, key crypto.Signer) (*PKIMessage, []*x509.Certificate, error) {
	dec, err := requesterKey(key)
	if err != nil {
		return nil, nil, err
	}
	der, nonce, err := NewRequest(RequestOptions{Type: typ, TransactionID: tid, Payload: payload,
		Recipient: s.recipient, Cipher: s.cipher, Digest: s.digest, SignerCert: signerCert, Signer: key,
		Rand: c.rand()})
	if err != nil {
		return nil, nil, err
	}
	var body []byte
	if s.caps.supports(CapPOSTPKIOp) {
		u, err := url.Parse(c.URL)
		if err != nil {
			return nil, nil, err
		}
		u.RawQuery = "operation=PKIOperation"
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(der))
		if err != nil {
			return nil, nil, err
		}
		req.Header.Set("Content-Type", "application/x-pki-message")
		body, _, err = c.do(req)
		if err != nil {
			return nil, nil, err
		}
	} else {
		body, _, err = c.get(ctx, "PKIOperation", url.QueryEscape(base64.StdEncoding.EncodeToString(der)))
		if err != nil {
			return nil, nil, err
		}
	}
	// The signer's dates are checked with ClockSkew by kept, not by ParseOptions.Time.
	kept := s.kept(c.now())
	rep, err := parsePKIMessage(body, ParseOptions{AllowLegacy: s.digest == crypto.SHA1 || s.cipher == DESCBC,
		Certificates: kept})
	if err != nil {
		if rep != nil && rep.Signer == nil && errors.Is(err, ErrBadSignature) {
			// Signed by a certificate neither the reply nor the session holds.
			return nil, nil, fmt.Errorf("%w: %w (%s)", ErrBadReply, errUnknownSigner, errText(err))
		}
		return nil, nil, fmt.Errorf("%w: %s", ErrBadReply, errText(err))
	}
	switch {
	case rep.MessageType != CertRep:
		return nil, nil, fmt.Errorf("%w: reply is a %v", ErrBadReply, rep.MessageType)
	case rep.TransactionID != tid:
		return nil, nil, fmt.Errorf("%w: transactionID mismatch", ErrBadReply)
	case !bytes.Equal(rep.RecipientNonce, nonce):
		return nil, nil, fmt.Errorf("%w: recipientNonce does not match our senderNonce", ErrBadReply)
	}
	trusted := false
	for _, cert := range kept {
		if bytes.Equal(cert.Raw, rep.Signer.Raw) {
			trusted = true
		}
	}
	if !trusted {
		return nil, nil, fmt.Errorf("%w: %w", ErrBadReply, errUnknownSigner)
	}
	switch rep.Status {
	case Failure:
		return rep, kept, &FailError{Info: rep.FailInfo, Err: ErrRefused}
	case Pending:
		return rep, kept, nil
	}
	if err := rep.Decrypt(Recipient{Certificate: signerCert, Key: dec}); err != nil {
		return nil, nil, fmt.Errorf("%w: %s", ErrBadReply, errText(err))
	}
	return rep, kept, nil
}

// transactionID derives a transactionID from a public key, as RFC 8894 §3.2.1.1
// suggests: the SHA-1 of the key's DER, base64-encoded. It only names the transaction.
func transactionID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha1.Sum(der)
	return base64.StdEncoding.EncodeToString(sum[:]), nil
}

// SelfSigned returns a short-lived self-signed certificate for key, to sign a first
// enrollment (RFC 8894 §2.3). subject is copied from the CSR.
func SelfSigned(key crypto.Signer, subject pkix.Name, r io.Reader) (*x509.Certificate, error) {
	if r == nil {
		r = rand.Reader
	}
	serial, err := rand.Int(r, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: serial.Add(serial, big.NewInt(1)), Subject: subject,
		NotBefore: now.Add(-10 * time.Minute), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}
	der, err := x509.CreateCertificate(r, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// Enroll sends a PKCSReq for csr (DER; add the challenge with [AddChallengePassword])
// signed by a self-signed certificate for key, and returns the issued certificate. key
// must be the CSR's key and, to read the reply, a crypto.Decrypter (RSA). On PENDING it
// polls with CertPoll every PollInterval until ctx ends, with no bound of its own (an
// approval may take days: RFC 8894 section 3.3.3 leaves the limit to the client), so
// give ctx the deadline you accept; it then returns an error matching [ErrPending].
// The request and each poll follow an RA renewal (see [Client]). A FAILURE is a
// *[FailError] wrapping [ErrRefused].
func (c *Client) Enroll(ctx context.Context, csr []byte, key crypto.Signer) (*x509.Certificate, error) {
	if _, err := requesterKey(key); err != nil {
		return nil, err
	}
	parsed, err := x509.ParseCertificateRequest(csr)
	if err != nil {
		return nil, err
	}
	signer, err := SelfSigned(key, parsed.Subject, c.rand())
	if err != nil {
		return nil, err
	}
	return c.request(ctx, PKCSReq, csr, parsed, signer, key)
}

// Renew asks for a new certificate for csr, signing with the certificate being renewed
// and its key: a RenewalReq when the server lists Renewal, else a PKCSReq signed by the
// old certificate (RFC 8894 §3.3.1.2). The CSR may carry a new key. The request
// follows an RA renewal and, on PENDING, polls as Enroll does, until ctx ends.
func (c *Client) Renew(ctx context.Context, csr []byte, old *x509.Certificate, oldKey crypto.Signer) (*x509.Certificate, error) {
	if old == nil {
		return nil, fmt.Errorf("%w: Renew needs the certificate being renewed", ErrClientKey)
	}
	if _, err := requesterKey(oldKey); err != nil {
		return nil, err
	}
	parsed, err := x509.ParseCertificateRequest(csr)
	if err != nil {
		return nil, err
	}
	s, err := c.open(ctx)
	if err != nil {
		return nil, err
	}
	typ := PKCSReq
	if s.caps.Has(CapRenewal) {
		typ = RenewalReq
	}
	return c.requestWith(ctx, s, typ, csr, parsed, old, oldKey)
}

func (c *Client) request(ctx context.Context, typ MessageType, csr []byte, parsed *x509.CertificateRequest,
	signer *x509.Certificate, key crypto.Signer) (*x509.Certificate, error) {
	s, err := c.open(ctx)
	if err != nil {
		return nil, err
	}
	return c.requestWith(ctx, s, typ, csr, parsed, signer, key)
}

func (c *Client) requestWith(ctx context.Context, s *session, typ MessageType, csr []byte,
	parsed *x509.CertificateRequest, signer *x509.Certificate, key crypto.Signer) (*x509.Certificate, error) {
	tid, err := transactionID(parsed.PublicKey)
	if err != nil {
		return nil, err
	}
	s, rep, kept, err := c.send(ctx, s, typ, tid, csr, signer, key)
	if err != nil {
		return nil, err
	}
	// Every poll names the CA the request went to (RFC 8894 §3.3.3): that of the
	// session its answer came from, whatever certificates a later GetCACert brings.
	poll, err := MarshalIssuerAndSubject(s.ca.RawSubject, parsed.RawSubject)
	if err != nil {
		return nil, err
	}
	for err == nil && rep.Status == Pending {
		interval := c.PollInterval
		if interval <= 0 {
			interval = 10 * time.Second
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w: %w", ErrPending, ctx.Err())
		case <-t.C:
		}
		s, rep, kept, err = c.send(ctx, s, CertPoll, tid, poll, signer, key)
		if err != nil && ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", ErrPending, ctx.Err())
		}
	}
	if err != nil {
		return nil, err
	}
	return issuedFor(rep, parsed.PublicKey, kept, c.now())
}

// send sends one request (the PKCSReq or RenewalReq, or a CertPoll) of type typ with
// payload under transactionID tid, and follows an RA renewal. When the reply says that
// the session's certificates are stale (it is signed by none the session keeps, or it
// is a FAILURE badMessageCheck: the server could not read a request encrypted to an RA
// it no longer holds), send fetches GetCACert once more, keeps what the same checks as
// at the start keep, and when that differs from the session's certificates sends the
// same request once more with them: the same type, payload, signer and transactionID,
// which a server that decided the first copy answers from its record of the
// transaction. The session it returns is the one its answer came from. Either way the
// reply to the last copy sent is what counts: at most one GetCACert and one resend per
// call, within ctx.
func (c *Client) send(ctx context.Context, s *session, typ MessageType, tid string, payload []byte,
	signer *x509.Certificate, key crypto.Signer) (*session, *PKIMessage, []*x509.Certificate, error) {
	rep, kept, err := c.exchange(ctx, s, typ, tid, payload, signer, key)
	var fe *FailError
	if !errors.Is(err, errUnknownSigner) && !(errors.As(err, &fe) && fe.Info == BadMessageCheck) {
		return s, rep, kept, err
	}
	certs, ferr := c.getCACert(ctx)
	if ferr != nil {
		return s, nil, nil, fmt.Errorf("%w (fetching GetCACert again: %w)", err, ferr)
	}
	if sameCerts(certs, s.certs) {
		return s, rep, kept, err
	}
	fresh, ferr := c.session(s.caps, certs)
	if ferr != nil {
		return s, nil, nil, fmt.Errorf("%w (fetching GetCACert again: %w)", err, ferr)
	}
	rep, kept, err = c.exchange(ctx, fresh, typ, tid, payload, signer, key)
	return fresh, rep, kept, err
}

// sameCerts reports whether a and b hold the same certificates in the same order.
func sameCerts(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

// issuedFor returns the certificate of a SUCCESS whose key is pub, that was issued by
// one of the CA certificates GetCACert returned (after pinning) and that has not
// expired at now (give or take ClockSkew). A NotBefore still to come is accepted: the
// device's clock may be behind, and refusing now would lose a certificate whose
// challenge is spent. Its subject is the CA's choice (RFC 8894 lets a CA change what
// the CSR asked for): callers that need the CSR's check it.
func issuedFor(rep *PKIMessage, pub crypto.PublicKey, cas []*x509.Certificate, now time.Time) (*x509.Certificate, error) {
	for _, cert := range rep.Issued {
		if !samePublicKey(cert.PublicKey, pub) {
			continue
		}
		if !issuedByOneOf(cert, cas) {
			return nil, fmt.Errorf("%w: the issued certificate does not chain to the CA", ErrBadReply)
		}
		if !notExpired(cert, now) {
			return nil, fmt.Errorf("%w: the issued certificate expired on %s", ErrBadReply, cert.NotAfter.UTC().Format(time.RFC3339))
		}
		return cert, nil
	}
	return nil, fmt.Errorf("%w: no issued certificate for our key", ErrBadReply)
}

func issuedByOneOf(cert *x509.Certificate, cas []*x509.Certificate) bool {
	for _, ca := range cas {
		if ca.IsCA && cert.CheckSignatureFrom(ca) == nil {
			return true
		}
	}
	return false
}

// GetCert fetches the certificate issuer+serial names (RFC 8894 §3.3.4), signing the
// request with cert and key.
func (c *Client) GetCert(ctx context.Context, issuer []byte, serial *big.Int, cert *x509.Certificate, key crypto.Signer) (*x509.Certificate, error) {
	rep, kept, err := c.issuerAndSerial(ctx, GetCert, issuer, serial, cert, key)
	if err != nil {
		return nil, err
	}
	for _, c := range rep.Issued {
		if c.SerialNumber.Cmp(serial) == 0 && bytes.Equal(c.RawIssuer, issuer) && issuedByOneOf(c, kept) {
			return c, nil
		}
	}
	if !namesKeptCA(issuer, kept) {
		return nil, fmt.Errorf("%w: GetCert: %s", ErrBadReply, errIssuerNotKept)
	}
	return nil, fmt.Errorf("%w: GetCert reply lacks the certificate", ErrBadReply)
}

// errIssuerNotKept explains a reply about a certificate of a CA the server no longer
// returns: the client has nothing to check it with.
const errIssuerNotKept = "the issuer named is not among the CA certificates GetCACert returns " +
	"(after a CA rollover, the previous CA is no longer returned: check its certificates and CRL against it directly)"

// namesKeptCA reports whether one of the CA certificates in cas has the subject issuer.
func namesKeptCA(issuer []byte, cas []*x509.Certificate) bool {
	for _, ca := range cas {
		if ca.IsCA && bytes.Equal(ca.RawSubject, issuer) {
			return true
		}
	}
	return false
}

// GetCRL fetches the CRL for the certificate issuer+serial names (RFC 8894 §3.3.4),
// signing the request with cert and key.
//
// The RA's signature on the reply vouches for the message, not for the CRL inside it:
// GetCRL returns the CRL only when it is issued and signed by a CA certificate the
// Client keeps (see [Client]) whose subject is issuer, and, when cert is the
// certificate asked about (its issuer and serial), by the CA that issued cert, which
// during a CA rollover may be a CA other than the one the server now issues with.
// Any other CRL, including one signed in the CA's name with another key (the RA's,
// say), is refused with an error wrapping [ErrBadReply]. A CRL whose nextUpdate is
// more than [ClockSkew] past is refused with an error wrapping both ErrBadReply and
// [ErrStaleCRL]: anyone on the path could replay an old CRL that predates a
// revocation. A CRL without nextUpdate is returned as it is.
func (c *Client) GetCRL(ctx context.Context, issuer []byte, serial *big.Int, cert *x509.Certificate, key crypto.Signer) (*x509.RevocationList, error) {
	rep, kept, err := c.issuerAndSerial(ctx, GetCRL, issuer, serial, cert, key)
	if err != nil {
		return nil, err
	}
	if rep.CRL == nil {
		return nil, fmt.Errorf("%w: GetCRL reply has no CRL", ErrBadReply)
	}
	crl, err := x509.ParseRevocationList(rep.CRL)
	if err != nil {
		return nil, fmt.Errorf("%w: GetCRL: %s", ErrBadReply, errText(err))
	}
	if !crlSignedByIssuer(crl, issuer, serial, cert, kept) {
		if !namesKeptCA(issuer, kept) {
			return nil, fmt.Errorf("%w: GetCRL: %s", ErrBadReply, errIssuerNotKept)
		}
		return nil, fmt.Errorf("%w: GetCRL: the CRL is not signed by the CA the request names", ErrBadReply)
	}
	if !crl.NextUpdate.IsZero() && c.now().After(crl.NextUpdate.Add(ClockSkew)) {
		return nil, fmt.Errorf("%w: GetCRL: %w: nextUpdate was %s", ErrBadReply, ErrStaleCRL,
			crl.NextUpdate.UTC().Format(time.RFC3339))
	}
	return crl, nil
}

// crlSignedByIssuer reports whether crl was issued and signed by one of the CA
// certificates in cas named issuer; when cert is the certificate issuer+serial names,
// only by one that issued cert.
func crlSignedByIssuer(crl *x509.RevocationList, issuer []byte, serial *big.Int, cert *x509.Certificate, cas []*x509.Certificate) bool {
	asked := cert != nil && bytes.Equal(cert.RawIssuer, issuer) && cert.SerialNumber.Cmp(serial) == 0
	for _, ca := range cas {
		switch {
		case !ca.IsCA || !bytes.Equal(ca.RawSubject, issuer) || !bytes.Equal(crl.RawIssuer, ca.RawSubject):
		case asked && cert.CheckSignatureFrom(ca) != nil:
		case crl.CheckSignatureFrom(ca) == nil:
			return true
		}
	}
	return false
}

func (c *Client) issuerAndSerial(ctx context.Context, typ MessageType, issuer []byte, serial *big.Int,
	cert *x509.Certificate, key crypto.Signer) (*PKIMessage, []*x509.Certificate, error) {
	s, err := c.open(ctx)
	if err != nil {
		return nil, nil, err
	}
	payload, err := MarshalIssuerAndSerial(issuer, serial)
	if err != nil {
		return nil, nil, err
	}
	tid := strings.ToUpper(fmt.Sprintf("%x", serial.Bytes()))
	if tid == "" {
		tid = "0"
	}
	rep, kept, err := c.exchange(ctx, s, typ, typ.String()+"-"+tid, payload, cert, key)
	if err != nil {
		return nil, nil, err
	}
	if rep.Status != Success {
		return nil, nil, fmt.Errorf("%w: %v answered %v", ErrBadReply, typ, rep.Status)
	}
	return rep, kept, nil
}
