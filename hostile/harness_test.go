package hostile

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

const (
	alice       = "alice@example.com"
	aliceLaptop = "alice-laptop"
)

// Keys are expensive to make under -race: three, made once.
var (
	keysOnce    sync.Once
	deviceKey   *rsa.PrivateKey // the honest device
	attackerKey *rsa.PrivateKey // someone else
	otherKey    *rsa.PrivateKey // another RA, another device
)

func keys() {
	keysOnce.Do(func() {
		for _, k := range []**rsa.PrivateKey{&deviceKey, &attackerKey, &otherKey} {
			var err error
			if *k, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
				panic(err)
			}
		}
	})
}

// syncBuffer collects log output written from the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Timeouts of examples/quickstart's newHTTPServer (main.go), replicated here because a
// test cannot import package main. If the example changes them, change these too.
const (
	quickstartReadHeaderTimeout = 5 * time.Second
	quickstartReadTimeout       = 30 * time.Second
	quickstartWriteTimeout      = 60 * time.Second
	quickstartIdleTimeout       = 120 * time.Second
	quickstartMaxHeaderBytes    = 128 << 10
)

// quickstartServer is the http.Server the quickstart runs, with the same timeouts.
func quickstartServer(h http.Handler, errLog io.Writer) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: quickstartReadHeaderTimeout,
		ReadTimeout:       quickstartReadTimeout,
		WriteTimeout:      quickstartWriteTimeout,
		IdleTimeout:       quickstartIdleTimeout,
		MaxHeaderBytes:    quickstartMaxHeaderBytes,
		ErrorLog:          log.New(errLog, "", 0),
	}
}

// harness is one running gateway (scep.Server + CRP from crptest) behind the
// quickstart's http.Server on 127.0.0.1, and the honest device that uses it.
type harness struct {
	env    *crptest.Env
	addr   string // host:port
	url    string // the SCEP endpoint
	ca     *x509.Certificate
	raEnc  *x509.Certificate
	raSign *x509.Certificate
	client *scep.Client
	http   *http.Client
	self   *x509.Certificate // the device's self-signed signer certificate
	logs   *syncBuffer       // slog records of the SCEP server and the CRP
	errLog *syncBuffer       // net/http's own errors (a recovered handler panic lands here)
}

func newHarness(t *testing.T, opts crptest.Options) *harness {
	t.Helper()
	keys()
	h := &harness{logs: &syncBuffer{}, errLog: &syncBuffer{}}
	opts.Logger = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	env, err := crptest.New(opts)
	require.NoError(t, err)
	h.env = env
	h.ca, h.raEnc, h.raSign = env.CA.Certificate, env.RA.EncryptionCertificate, env.RA.SigningCertificate
	mux := http.NewServeMux()
	mux.Handle("/scep", env.Server)
	srv := quickstartServer(mux, h.errLog)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	h.addr = ln.Addr().String()
	h.url = "http://" + h.addr + "/scep"
	h.http = &http.Client{Timeout: 15 * time.Second}
	h.client = &scep.Client{URL: h.url, HTTPClient: h.http, CAFingerprint: env.CAFingerprint()}
	h.self, err = scep.SelfSigned(deviceKey, pkix.Name{CommonName: alice}, nil)
	require.NoError(t, err)
	return h
}

// challenge mints a genuine challenge.
func (h *harness) challenge(t testing.TB, user, device string) string {
	t.Helper()
	ch, _, err := h.env.Challenge(user, device, 0)
	require.NoError(t, err)
	return ch
}

// csr builds a CSR for key with subject, carrying ch unless it is empty.
func csrFor(t testing.TB, key *rsa.PrivateKey, subject pkix.Name, ch string) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject}, key)
	require.NoError(t, err)
	if ch != "" {
		der, err = scep.AddChallengePassword(der, ch, key, nil)
		require.NoError(t, err)
	}
	return der
}

// goodCSR is what the honest device sends: its key, the profile's subject, a fresh
// challenge for alice's laptop.
func (h *harness) goodCSR(t testing.TB) []byte {
	return csrFor(t, deviceKey, pkix.Name{CommonName: alice}, h.challenge(t, alice, aliceLaptop))
}

// enrollGood enrolls the honest device with scep.Client and checks the certificate.
func (h *harness) enrollGood(t testing.TB) *x509.Certificate {
	t.Helper()
	before := h.env.Issuer.Count()
	cert, err := h.client.Enroll(context.Background(), h.goodCSR(t), deviceKey)
	require.NoError(t, err, "a good enrollment right after the hostile request")
	require.Equal(t, alice, cert.Subject.CommonName)
	require.NoError(t, cert.CheckSignatureFrom(h.ca))
	require.True(t, cert.PublicKey.(*rsa.PublicKey).Equal(deviceKey.Public()))
	require.Equal(t, before+1, h.env.Issuer.Count(), "exactly one certificate for the good enrollment")
	return cert
}

// deviceTID is the transactionID scep.Client uses for key: base64 of the SHA-1 of its
// SubjectPublicKeyInfo (RFC 8894 §3.2.1.1).
func deviceTID(t testing.TB, key *rsa.PrivateKey) string {
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	require.NoError(t, err)
	sum := sha1.Sum(der)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// wire is one HTTP exchange a case sends, and what the reply must echo.
type wire struct {
	method  string // POST when empty
	query   string // "operation=PKIOperation" when empty
	body    []byte
	chunked bool // send the body without Content-Length

	tid   string // transactionID the CertRep must echo ("" when not asserted)
	nonce []byte // senderNonce the CertRep must carry as recipientNonce (nil when not asserted)
}

func (h *harness) send(t testing.TB, w wire) (int, string, []byte) {
	t.Helper()
	method, query := w.method, w.query
	if method == "" {
		method = http.MethodPost
	}
	if query == "" {
		query = "operation=PKIOperation"
	}
	var body io.Reader
	if w.body != nil {
		body = bytes.NewReader(w.body)
		if w.chunked {
			body = struct{ io.Reader }{body} // hides the length: Transfer-Encoding chunked
		}
	}
	req, err := http.NewRequest(method, h.url+"?"+query, body)
	require.NoError(t, err)
	if w.chunked {
		req.ContentLength = -1
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-pki-message")
	}
	resp, err := h.http.Do(req)
	require.NoError(t, err, "the server answers (no panic, no dropped connection)")
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}

// spec describes a PKIMessage for the hostile cases; every zero field means what the
// honest device would send.
type spec struct {
	typ      string // "19" (PKCSReq) when empty
	tid      string // a fresh transactionID when empty
	nonce    []byte // 16 fresh bytes when nil
	attrs    []attr // replace the SCEP attributes entirely when not nil
	payload  []byte // plaintext to encrypt; a good CSR when nil
	envelope []byte // the pkcsPKIEnvelope as is, when not nil
	noEnv    bool   // no eContent at all
	cert     *x509.Certificate
	key      *rsa.PrivateKey
	tweak    func(*signOpts)
}

// newTID is a fresh transactionID, always 24 characters so that replies have the same
// length.
func newTID() string {
	return "hostile-" + hex.EncodeToString(randBytes(8))
}

func (h *harness) message(t testing.TB, s spec) wire {
	t.Helper()
	if s.typ == "" {
		s.typ = "19"
	}
	if s.tid == "" {
		s.tid = newTID()
	}
	if s.nonce == nil {
		s.nonce = randBytes(16)
	}
	if s.cert == nil {
		s.cert, s.key = h.self, deviceKey
	}
	if s.key == nil {
		s.key = deviceKey
	}
	attrs := s.attrs
	if attrs == nil {
		attrs = scepAttrs(s.typ, s.tid, s.nonce)
	}
	content := s.envelope
	if content == nil && !s.noEnv {
		p := s.payload
		if p == nil {
			p = h.goodCSR(t)
		}
		content = goodEnvelope(t, h.raEnc, p)
	}
	o := signOpts{content: content, attrs: attrs, cert: s.cert, key: s.key}
	if s.tweak != nil {
		s.tweak(&o)
	}
	w := wire{body: signedData(t, o), tid: s.tid}
	if s.attrs == nil && len(s.nonce) >= 8 && len(s.nonce) <= 32 {
		w.nonce = s.nonce
	}
	return w
}

// want is the exact answer a case expects: an HTTP status, or (status 200) a CertRep
// FAILURE with a failInfo.
type want struct {
	code int
	info scep.FailInfo
}

func failure(info scep.FailInfo) want { return want{http.StatusOK, info} }
func status(code int) want            { return want{code, -1} }

func (w want) String() string {
	if w.info < 0 {
		return http.StatusText(w.code)
	}
	return "FAILURE " + w.info.String()
}

// answer is what a padding-oracle observer sees of a reply.
type answer struct {
	code    int
	ctype   string
	info    scep.FailInfo
	bodyLen int
}

// leaks are strings that would mean internal detail reached the client.
var leaks = []string{"scep:", "crp:", "cms:", "challenge:", "panic", "goroutine", "x509:", "asn1:"}

// check asserts the exact answer.
func (h *harness) check(t testing.TB, w wire, code int, ctype string, body []byte, exp want) answer {
	t.Helper()
	require.Equal(t, exp.code, code, "HTTP status; body %q", truncate(body))
	if exp.info < 0 {
		for _, l := range leaks {
			require.NotContains(t, string(body), l, "no internal detail in an HTTP error")
		}
		return answer{code: code, ctype: ctype, info: -1, bodyLen: len(body)}
	}
	require.Equal(t, "application/x-pki-message", ctype)
	// Strict parse: a gateway without legacy algorithms never answers with SHA-1.
	m, err := scep.ParsePKIMessage(body, scep.ParseOptions{AllowLegacy: h.env.Server.AllowLegacy})
	require.NoError(t, err, "the CertRep parses and its signature verifies")
	require.Equal(t, h.raSign.Raw, m.Signer.Raw, "signed by the RA signing certificate")
	require.NoError(t, m.Signer.CheckSignatureFrom(h.ca), "the RA chains to the CA")
	require.Equal(t, scep.CertRep, m.MessageType)
	require.Equal(t, scep.Failure, m.Status)
	require.Equal(t, exp.info, m.FailInfo, "failInfo")
	require.Empty(t, m.Issued)
	if w.tid != "" {
		require.Equal(t, w.tid, m.TransactionID)
	}
	if w.nonce != nil {
		require.Equal(t, w.nonce, m.RecipientNonce)
	}
	require.NotEmpty(t, m.SenderNonce)
	require.NotEqual(t, w.nonce, m.SenderNonce, "a fresh senderNonce (RFC 8894 §3.2.1.5), not the request's echoed")
	for _, l := range leaks {
		require.NotContains(t, m.FailInfoText, l)
	}
	return answer{code: code, ctype: ctype, info: m.FailInfo, bodyLen: len(body)}
}

func truncate(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}

// ---- challenge forgery ----

func decodeSeg(t testing.TB, s string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

func encodeSeg(t testing.TB, m map[string]any) string {
	t.Helper()
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return base64.RawURLEncoding.EncodeToString(b)
}

// toWire and fromWire convert between a JWS and the challenge alphabet ('+' and '/'
// for '-' and '_').
func toWire(jws string) string    { return strings.NewReplacer("-", "+", "_", "/").Replace(jws) }
func fromWire(ch string) string   { return strings.NewReplacer("+", "-", "/", "_").Replace(ch) }
func splitJWS(ch string) []string { return strings.Split(fromWire(ch), ".") }

// forge takes a genuine challenge for alice's laptop, lets mutate change its header
// and claims, and signs the result with method and key.
func (h *harness) forge(t testing.TB, method jwt.SigningMethod, key any, mutate func(hdr, claims map[string]any)) string {
	t.Helper()
	p := splitJWS(h.challenge(t, alice, aliceLaptop))
	hdr, claims := decodeSeg(t, p[0]), decodeSeg(t, p[1])
	if mutate != nil {
		mutate(hdr, claims)
	}
	hdr["alg"] = method.Alg()
	tok := jwt.NewWithClaims(method, jwt.MapClaims(claims))
	tok.Header = hdr
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return toWire(s)
}

// mdmSigned re-signs with the MDM's own key (EdDSA), as a compromised or buggy MDM could.
func (h *harness) mdmSigned(t testing.TB, mutate func(hdr, claims map[string]any)) string {
	return h.forge(t, jwt.SigningMethodEdDSA, h.env.Challenges.Key, mutate)
}

func setTimes(iat, nbf, exp time.Time) func(_, c map[string]any) {
	return func(_, c map[string]any) {
		c["iat"] = iat.Unix()
		if _, ok := c["nbf"]; ok {
			c["nbf"] = nbf.Unix()
		}
		c["exp"] = exp.Unix()
	}
}
