package scep

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// device is a requester with its key and self-signed certificate.
type device struct {
	key  *rsa.PrivateKey
	self *x509.Certificate
}

func newDevice(t testing.TB) device {
	testKeys(t)
	self, err := SelfSigned(rsaKeys[3], pkix.Name{CommonName: "device"}, nil)
	require.NoError(t, err)
	return device{rsaKeys[3], self}
}

// rawRequest builds a signed request with arbitrary attributes, for hostile cases.
func (d device) rawRequest(t testing.TB, to *x509.Certificate, payload []byte, attrs []signedAttr, h crypto.Hash) []byte {
	t.Helper()
	var env []byte
	if payload != nil {
		var err error
		env, err = encryptTo(nil, payload, to, AES256CBC, 0)
		require.NoError(t, err)
	}
	der, err := buildSignedData(signOptions{content: env, attrs: attrs, cert: d.self, key: d.key, hash: h})
	require.NoError(t, err)
	return der
}

// authEnvelopedRequest is a request whose pkcsPKIEnvelope is a ContentInfo of type
// id-ct-authEnvelopedData (RFC 5083), as a client encrypting with AES-GCM sends.
func authEnvelopedRequest(t testing.TB, d device, attrs []signedAttr) []byte {
	t.Helper()
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 23})
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1Int64(0) })
		})
	})
	der, err := buildSignedData(signOptions{content: b.BytesOrPanic(), attrs: attrs, cert: d.self, key: d.key, hash: crypto.SHA256})
	require.NoError(t, err)
	return der
}

func stdAttrs(typ string, nonce []byte) []signedAttr {
	return []signedAttr{
		{oidMessageType, printableValue(typ)},
		{oidTransactionID, printableValue("hostile-1")},
		{oidSenderNonce, octetValue(nonce)},
	}
}

func post(t testing.TB, u string, body []byte) (int, string, []byte) {
	t.Helper()
	resp, err := http.Post(u+"?operation=PKIOperation", "application/x-pki-message", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}

// expectFailure asserts a signed CertRep FAILURE with info.
func expectFailure(t testing.TB, pki *testPKI, code int, body []byte, info FailInfo) *PKIMessage {
	t.Helper()
	require.Equal(t, http.StatusOK, code, "body: %q", body)
	m, err := ParsePKIMessage(body, ParseOptions{AllowLegacy: true})
	require.NoError(t, err)
	require.Equal(t, pki.raSign.Raw, m.Signer.Raw, "CertRep signed by the RA signing certificate")
	require.Equal(t, CertRep, m.MessageType)
	require.Equal(t, Failure, m.Status)
	require.Equal(t, info, m.FailInfo)
	return m
}

func TestServerCapsAndCACert(t *testing.T) {
	pki := newTestPKI(t)
	ts, s := pki.httpServer(t, false)
	resp, err := http.Get(ts.URL + "/scep?operation=GetCACaps")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	caps := ParseCaps(string(b))
	require.Equal(t, s.Caps(), caps)
	require.True(t, caps.Has(CapAES) && caps.Has(CapSCEPStandard) && caps.Has(CapRenewal) && caps.Has(CapPOSTPKIOp))
	require.False(t, caps.Has(CapSHA1), "SHA-1 only with legacy")
	require.False(t, caps.Has(CapGetNextCACert), "no rollover CA configured")
	s.AllowLegacy, s.Renewal, s.NextCACerts = true, false, []*x509.Certificate{pki.ca}
	require.True(t, s.Caps().Has(CapSHA1))
	require.False(t, s.Caps().Has(CapRenewal))
	require.True(t, s.Caps().Has(CapGetNextCACert))
	s.AllowLegacy, s.Renewal, s.NextCACerts = false, true, nil

	// RA + CA: a degenerate PKCS#7 with the RA certificates and the CA.
	for _, msg := range []string{"", "&message=0", "&message=1"} {
		resp, err = http.Get(ts.URL + "/scep?operation=GetCACert" + msg)
		require.NoError(t, err)
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, "application/x-x509-ca-ra-cert", resp.Header.Get("Content-Type"))
		certs, _, err := parseDegenerate(b)
		require.NoError(t, err)
		require.Len(t, certs, 3)
	}
	// CA as its own RA: one DER certificate.
	ca := &Server{CACerts: []*x509.Certificate{pki.ca}, SignerCert: pki.ca, Signer: pki.caKey,
		Recipients: []Recipient{{pki.ca, pki.caKey.(crypto.Decrypter)}}, Responder: ResponderFunc(pki.respond)}
	rec := httptestRecorder(ca, http.MethodGet, "/?operation=GetCACert", nil)
	require.Equal(t, "application/x-x509-ca-cert", rec.Header().Get("Content-Type"))
	require.Equal(t, pki.ca.Raw, rec.Body.Bytes())
}

func TestServerHTTPErrors(t *testing.T) {
	pki := newTestPKI(t)
	s := pki.server(false)
	s.MaxBodyBytes = 1024
	s.MaxQueryBytes = 2048
	tests := []struct {
		name, method, target string
		body                 []byte
		code                 int
	}{
		{"no operation", http.MethodGet, "/scep", nil, 400},
		{"unknown operation", http.MethodGet, "/scep?operation=Nope", nil, 400},
		{"GetCACaps by POST", http.MethodPost, "/scep?operation=GetCACaps", nil, 405},
		{"PKIOperation by PUT", http.MethodPut, "/scep?operation=PKIOperation", []byte("x"), 405},
		{"PKIOperation GET without message", http.MethodGet, "/scep?operation=PKIOperation", nil, 400},
		{"PKIOperation GET bad base64", http.MethodGet, "/scep?operation=PKIOperation&message=%%%", nil, 400},
		{"oversized body", http.MethodPost, "/scep?operation=PKIOperation", make([]byte, 1025), 413},
		{"oversized query", http.MethodGet, "/scep?operation=PKIOperation&message=" + strings.Repeat("A", 2100), nil, 414},
		{"garbage DER", http.MethodPost, "/scep?operation=PKIOperation", []byte("garbage"), 400},
		{"empty body", http.MethodPost, "/scep?operation=PKIOperation", nil, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptestRecorder(s, tt.method, tt.target, tt.body)
			require.Equal(t, tt.code, rec.Code, rec.Body.String())
			require.NotContains(t, rec.Body.String(), "scep:", "no Go error text to the client")
			require.Equal(t, 0, pki.issuedCount())
		})
	}
	// Chunked body without Content-Length is also cut at the limit, never parsed truncated.
	ts := httptestServer(t, s)
	pr, pw := io.Pipe()
	go func() { pw.Write(make([]byte, 4096)); pw.Close() }()
	resp, err := http.Post(ts.URL+"?operation=PKIOperation", "", pr)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 413, resp.StatusCode)

	// A body shorter than its Content-Length is a bad request, not a parse of what came.
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "POST /scep?operation=PKIOperation HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n0123456789")
	require.NoError(t, err)
	require.NoError(t, conn.(*net.TCPConn).CloseWrite())
	reply, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	reply.Body.Close()
	require.Equal(t, 400, reply.StatusCode)
	require.Equal(t, 0, pki.issuedCount())
}

func TestServerHostileMessages(t *testing.T) {
	pki := newTestPKI(t)
	ts, _ := pki.httpServer(t, false)
	d := newDevice(t)
	nonce := bytes.Repeat([]byte{7}, 16)
	csr := newCSR(t, d.key, "device", "secret")
	other := newTestPKI(t) // another RA: same keys are reused, so use a fresh certificate
	otherRA := mkCert(t, &x509.Certificate{SerialNumber: other.raEnc.SerialNumber, Subject: pkix.Name{CommonName: "other RA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}, d.self, rsaKeys[0].Public(), d.key)
	tests := []struct {
		name string
		der  []byte
		info FailInfo
	}{
		{"messageType 99", d.rawRequest(t, pki.raEnc, csr, stdAttrs("99", nonce), crypto.SHA256), BadRequest},
		{"messageType non-numeric", d.rawRequest(t, pki.raEnc, csr, stdAttrs("PKCSReq", nonce), crypto.SHA256), BadRequest},
		{"messageType empty", d.rawRequest(t, pki.raEnc, csr, stdAttrs("", nonce), crypto.SHA256), BadRequest},
		// A decimal number's text (RFC 8894 §3.2.1.2), not what strconv.Atoi takes.
		{"messageType +19", d.rawRequest(t, pki.raEnc, csr, stdAttrs("+19", nonce), crypto.SHA256), BadRequest},
		{"messageType -19", d.rawRequest(t, pki.raEnc, csr, stdAttrs("-19", nonce), crypto.SHA256), BadRequest},
		{"UpdateReq", d.rawRequest(t, pki.raEnc, csr, stdAttrs("18", nonce), crypto.SHA256), BadRequest},
		{"CertRep sent to server", d.rawRequest(t, pki.raEnc, csr, stdAttrs("3", nonce), crypto.SHA256), BadRequest},
		{"nonce too short", d.rawRequest(t, pki.raEnc, csr, stdAttrs("19", []byte{1, 2, 3}), crypto.SHA256), BadRequest},
		{"SHA-1 without legacy", d.rawRequest(t, pki.raEnc, csr, stdAttrs("19", nonce), crypto.SHA1), BadAlg},
		{"encrypted to another RA", d.rawRequest(t, otherRA, csr, stdAttrs("19", nonce), crypto.SHA256), BadMessageCheck},
		{"no envelope", d.rawRequest(t, pki.raEnc, nil, stdAttrs("19", nonce), crypto.SHA256), BadRequest},
		// AES-GCM (RFC 5083), not an EnvelopedData: an unsupported algorithm
		// (RFC 8894 §3.2.1.4), as DES is; it was badRequest.
		{"AuthEnvelopedData", authEnvelopedRequest(t, d, stdAttrs("19", nonce)), BadAlg},
		{"not a CSR", d.rawRequest(t, pki.raEnc, []byte{0x30, 0x00}, stdAttrs("19", nonce), crypto.SHA256), BadMessageCheck},
		{"duplicate messageType", d.rawRequest(t, pki.raEnc, csr, append(stdAttrs("19", nonce),
			signedAttr{oidMessageType, printableValue("19")}), crypto.SHA256), BadRequest},
		{"bad PrintableString", d.rawRequest(t, pki.raEnc, csr, []signedAttr{{oidMessageType, printableValue("19")},
			{oidTransactionID, printableValue("tid_with_underscore")}, {oidSenderNonce, octetValue(nonce)}}, crypto.SHA256), -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := post(t, ts.URL, tt.der)
			if tt.info < 0 {
				require.Equal(t, http.StatusBadRequest, code)
			} else {
				m := expectFailure(t, pki, code, body, tt.info)
				require.Equal(t, "hostile-1", m.TransactionID)
			}
			require.Equal(t, 0, pki.issuedCount(), "no certificate issued")
		})
	}
	// A tampered signature.
	good := d.rawRequest(t, pki.raEnc, csr, stdAttrs("19", nonce), crypto.SHA256)
	bad := append([]byte(nil), good...)
	bad[len(bad)-5] ^= 0xff
	code, _, body := post(t, ts.URL, bad)
	expectFailure(t, pki, code, body, BadMessageCheck)
	// Truncated DER.
	code, _, _ = post(t, ts.URL, good[:len(good)/2])
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, 0, pki.issuedCount())
	// And the server still enrolls a good request afterwards.
	code, _, body = post(t, ts.URL, good)
	require.Equal(t, http.StatusOK, code)
	m, err := ParsePKIMessage(body, ParseOptions{})
	require.NoError(t, err)
	require.Equal(t, Success, m.Status)
	require.Equal(t, 1, pki.issuedCount())
}

// TestGETEncodings sends the same PKIOperation in every encoding real clients use.
func TestGETEncodings(t *testing.T) {
	pki := newTestPKI(t)
	ts, _ := pki.httpServer(t, false)
	d := newDevice(t)
	csr := newCSR(t, d.key, "device", "wrong")
	var der []byte
	// Find a message whose base64 has '+', '/' and padding so every variant differs.
	for i := 0; ; i++ {
		nonce := bytes.Repeat([]byte{byte(i)}, 16)
		der = d.rawRequest(t, pki.raEnc, csr, stdAttrs("19", nonce), crypto.SHA256)
		s := base64.StdEncoding.EncodeToString(der)
		if strings.Contains(s, "+") && strings.Contains(s, "/") && strings.HasSuffix(s, "=") {
			break
		}
	}
	std := base64.StdEncoding.EncodeToString(der)
	wrapped := ""
	for i := 0; i < len(std); i += 64 {
		wrapped += std[i:min(i+64, len(std))] + "\r\n"
	}
	variants := map[string]string{
		"std percent-encoded":    url.QueryEscape(std),
		"std raw plus":           std,
		"only = escaped":         strings.ReplaceAll(std, "=", "%3D"),
		"url-safe padded":        base64.URLEncoding.EncodeToString(der),
		"url-safe unpadded":      base64.RawURLEncoding.EncodeToString(der),
		"std unpadded":           base64.RawStdEncoding.EncodeToString(der),
		"CRLF-wrapped (Cisco)":   url.QueryEscape(wrapped),
		"plus decoded as space ": strings.ReplaceAll(url.QueryEscape(std), "%2B", "%20"),
	}
	for name, q := range variants {
		t.Run(name, func(t *testing.T) {
			got, err := DecodeGETMessage("operation=PKIOperation&message=" + q)
			require.NoError(t, err)
			require.Equal(t, der, got)
			resp, err := http.Get(ts.URL + "/scep?operation=PKIOperation&message=" + q)
			require.NoError(t, err)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			expectFailure(t, pki, resp.StatusCode, b, BadRequest) // wrong challenge
		})
	}
}

// TestClient runs the Client against the Server: POST and GET, enrollment, renewal,
// GetCert, GetCRL, polling, fingerprint pinning, failures.
func TestClient(t *testing.T) {
	pki := newTestPKI(t)
	ts, s := pki.httpServer(t, false)
	d := newDevice(t)
	ctx := context.Background()
	fp := sha256.Sum256(pki.ca.Raw)
	c := &Client{URL: ts.URL + "/scep", CAFingerprint: fp[:], PollInterval: 10 * time.Millisecond}

	caps, err := c.GetCACaps(ctx)
	require.NoError(t, err)
	require.Equal(t, s.Caps(), caps)

	cert, err := c.Enroll(ctx, newCSR(t, d.key, "device", "secret"), d.key)
	require.NoError(t, err)
	require.NoError(t, cert.CheckSignatureFrom(pki.ca))
	require.Equal(t, "device", cert.Subject.CommonName)

	_, err = c.Enroll(ctx, newCSR(t, d.key, "device", "wrong"), d.key)
	var fe *FailError
	require.ErrorAs(t, err, &fe)
	require.ErrorIs(t, err, ErrRefused)
	require.Equal(t, BadRequest, fe.Info)

	renewed, err := c.Renew(ctx, newCSR(t, d.key, "device", ""), cert, d.key)
	require.NoError(t, err)
	require.NotEqual(t, cert.SerialNumber, renewed.SerialNumber)

	got, err := c.GetCert(ctx, cert.RawIssuer, cert.SerialNumber, renewed, d.key)
	require.NoError(t, err)
	require.Equal(t, cert.Raw, got.Raw)
	_, err = c.GetCert(ctx, cert.RawIssuer, cert.SerialNumber.Add(cert.SerialNumber, cert.SerialNumber), renewed, d.key)
	require.ErrorAs(t, err, &fe)
	require.Equal(t, BadCertID, fe.Info)

	crl, err := c.GetCRL(ctx, cert.RawIssuer, renewed.SerialNumber, renewed, d.key)
	require.NoError(t, err)
	require.NoError(t, crl.CheckSignatureFrom(pki.ca))

	// PENDING, polled with CertPoll until the context ends.
	c.PollInterval = 200 * time.Millisecond
	pctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	_, err = c.Enroll(pctx, newCSR(t, d.key, "device", "pending"), d.key)
	require.ErrorIs(t, err, ErrPending)

	// GET only (no POSTPKIOperation): a server that lists nothing.
	getOnly := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("operation") == "GetCACaps" {
			io.WriteString(w, "AES\nSHA-256\n")
			return
		}
		require.Equal(t, http.MethodGet, r.Method)
		s.ServeHTTP(w, r)
	}))
	cert2, err := (&Client{URL: getOnly.URL, CAFingerprint: fp[:]}).Enroll(ctx, newCSR(t, d.key, "get", "secret"), d.key)
	require.NoError(t, err)
	require.Equal(t, "get", cert2.Subject.CommonName)

	// Wrong fingerprint.
	bad := &Client{URL: ts.URL, CAFingerprint: make([]byte, 32)}
	_, err = bad.Enroll(ctx, newCSR(t, d.key, "device", "secret"), d.key)
	require.ErrorIs(t, err, ErrFingerprint)
}

// TestClientRefusesForgedReplies: a reply from a signer not in GetCACert is refused.
func TestClientRefusesForgedReplies(t *testing.T) {
	pki := newTestPKI(t)
	_, s := pki.httpServer(t, false)
	d := newDevice(t)
	forger := &Replier{Cert: d.self, Key: d.key}
	ts := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("operation") != "PKIOperation" {
			s.ServeHTTP(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		m, err := ParsePKIMessage(body, ParseOptions{})
		require.NoError(t, err)
		require.NoError(t, m.Decrypt(s.Recipients...))
		rep, err := forger.Success(m, d.self)
		require.NoError(t, err)
		w.Write(rep)
	}))
	fp := sha256.Sum256(pki.ca.Raw)
	_, err := (&Client{URL: ts.URL, CAFingerprint: fp[:]}).Enroll(context.Background(), newCSR(t, d.key, "device", "secret"), d.key)
	require.ErrorIs(t, err, ErrBadReply)
}

func TestParseCaps(t *testing.T) {
	tests := []struct {
		in   string
		want Caps
	}{
		{"", nil},
		{"AES\nSHA-256\n", Caps{CapAES, CapSHA256}},
		{"aes\r\nsha-256\r\nPOSTPKIOPERATION\r\n", Caps{CapAES, CapSHA256, CapPOSTPKIOp}},
		{"Renewal\n\n\nRenewal\nFutureThing\n", Caps{CapRenewal, "FutureThing"}},
		{"  DES3  SHA-1 ", Caps{CapDES3, CapSHA1}},
		// Capabilities are ASCII words: a long s (U+017F) or a Kelvin sign (U+212A)
		// is no S or k, as Unicode case folding would have it.
		{"POſTPKIOperation\nAEſ\nSHA-256\n", Caps{"POſTPKIOperation", "AEſ", CapSHA256}},
		{"\u212Aeyword", Caps{"\u212Aeyword"}},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, ParseCaps(tt.in), "%q", tt.in)
	}
	require.False(t, Caps{"AEſ"}.Has(CapAES), "Has folds ASCII letters only")
	require.Equal(t, AES256CBC, Caps{}.Cipher())
	require.Equal(t, DES3CBC, Caps{CapDES3}.Cipher())
	require.Equal(t, DES3CBC, Caps{CapSHA1}.Cipher(), "never single DES from caps: they are not signed")
	require.Equal(t, "AES\nSHA-256\n", Caps{CapAES, CapSHA256}.String())
	require.Equal(t, Caps{CapAES, CapSHA256, "X"}, Caps{"X", CapSHA256, CapAES}.Sorted())
}

// TestServerRefusesUnreachableSigner: a request signed with an ECDSA key cannot receive
// an RSA-encrypted reply, so it is refused before the Responder issues anything.
func TestServerRefusesUnreachableSigner(t *testing.T) {
	pki := newTestPKI(t)
	ts, _ := pki.httpServer(t, false)
	self, err := SelfSigned(ecKey, pkix.Name{CommonName: "ec"}, nil)
	require.NoError(t, err)
	der, _, err := NewRequest(RequestOptions{Type: PKCSReq, TransactionID: "ec-1", Payload: newCSR(t, ecKey, "ec", "secret"),
		Recipient: pki.raEnc, SignerCert: self, Signer: ecKey})
	require.NoError(t, err)
	code, _, body := post(t, ts.URL, der)
	expectFailure(t, pki, code, body, BadAlg)
	require.Equal(t, 0, pki.issuedCount(), "no certificate issued")
}

// TestGetNextCACert: a rollover CA is announced in the caps and served signed by the
// current RA; the client verifies it against the current certificates.
func TestGetNextCACert(t *testing.T) {
	pki := newTestPKI(t)
	ts, s := pki.httpServer(t, false)
	next := mkCert(t, &x509.Certificate{SerialNumber: big.NewInt(50), Subject: pkix.Name{CommonName: "next CA"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(48 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}, pki.ca, rsaKeys[3].Public(), pki.caKey)
	fp := sha256.Sum256(pki.ca.Raw)
	c := &Client{URL: ts.URL, CAFingerprint: fp[:]}
	_, err := c.GetNextCACert(context.Background())
	require.ErrorIs(t, err, ErrBadReply, "no rollover configured: 404")
	s.NextCACerts = []*x509.Certificate{next}
	caps, err := c.GetCACaps(context.Background())
	require.NoError(t, err)
	require.True(t, caps.Has(CapGetNextCACert))
	got, err := c.GetNextCACert(context.Background())
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, next.Raw, got[0].Raw)
}

// TestRenewWithPKCSReq: when the server does not list Renewal, Client.Renew sends a
// PKCSReq signed by the certificate being renewed (RFC 8894 §3.3.1.2).
func TestRenewWithPKCSReq(t *testing.T) {
	pki := newTestPKI(t)
	ts, s := pki.httpServer(t, false)
	d := newDevice(t)
	ctx := context.Background()
	fp := sha256.Sum256(pki.ca.Raw)
	c := &Client{URL: ts.URL, CAFingerprint: fp[:]}
	cert, err := c.Enroll(ctx, newCSR(t, d.key, "device", "secret"), d.key)
	require.NoError(t, err)
	s.Renewal = false
	var seen []MessageType
	inner := s.Responder
	s.Responder = ResponderFunc(func(ctx context.Context, req *Request) (*Response, error) {
		seen = append(seen, req.MessageType)
		return inner.Respond(ctx, req)
	})
	renewed, err := c.Renew(ctx, newCSR(t, d.key, "device", ""), cert, d.key)
	require.NoError(t, err)
	require.Equal(t, []MessageType{PKCSReq}, seen)
	require.NotEqual(t, cert.SerialNumber, renewed.SerialNumber)
}

func TestServerDisableDES3(t *testing.T) {
	pki := newTestPKI(t)
	ts, s := pki.httpServer(t, false)
	s.DisableDES3 = true
	require.False(t, s.Caps().Has(CapDES3))
	d := newDevice(t)
	for _, c := range []Cipher{DES3CBC, AES128CBC} {
		der, _, err := NewRequest(RequestOptions{Type: PKCSReq, TransactionID: "des3-" + c.String(),
			Payload: newCSR(t, d.key, "device", "secret"), Recipient: pki.raEnc, Cipher: c, SignerCert: d.self, Signer: d.key})
		require.NoError(t, err)
		code, _, body := post(t, ts.URL, der)
		if c == DES3CBC {
			expectFailure(t, pki, code, body, BadAlg)
			continue
		}
		m, err := ParsePKIMessage(body, ParseOptions{})
		require.NoError(t, err)
		require.Equal(t, Success, m.Status)
	}
	require.Equal(t, 1, pki.issuedCount())
}

// countingDecrypter counts the private-key operations of a real key.
type countingDecrypter struct {
	crypto.Decrypter
	n atomic.Int32
}

func (c *countingDecrypter) Decrypt(r io.Reader, ct []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	c.n.Add(1)
	return c.Decrypter.Decrypt(r, ct, opts)
}

// TestServerDisableDES3RefusesBeforeDecrypting: with DisableDES3 a 3DES envelope is
// refused with badAlg before the RA key is used, whoever it is addressed to, as single
// DES without AllowLegacy is; an AES one is still decrypted.
func TestServerDisableDES3RefusesBeforeDecrypting(t *testing.T) {
	pki := newTestPKI(t)
	key := &countingDecrypter{Decrypter: pki.raEncK}
	s := pki.server(false)
	s.DisableDES3, s.Recipients = true, []Recipient{{Certificate: pki.raEnc, Key: key}}
	require.NoError(t, s.Validate())
	ts := httptestServer(t, s)
	d := newDevice(t)
	stranger := mkCert(t, &x509.Certificate{SerialNumber: big.NewInt(77), Subject: pkix.Name{CommonName: "someone else"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}, d.self, rsaKeys[0].Public(), d.key)
	for _, to := range []*x509.Certificate{pki.raEnc, stranger} {
		der, _, err := NewRequest(RequestOptions{Type: PKCSReq, TransactionID: "des3-" + to.Subject.CommonName,
			Payload: newCSR(t, d.key, "device", "secret"), Recipient: to, Cipher: DES3CBC, SignerCert: d.self, Signer: d.key})
		require.NoError(t, err)
		code, _, body := post(t, ts.URL, der)
		expectFailure(t, pki, code, body, BadAlg)
	}
	require.Zero(t, key.n.Load(), "the RA key decrypted a key for a refused cipher")
	require.Zero(t, pki.issuedCount())
	der, _, err := NewRequest(RequestOptions{Type: PKCSReq, TransactionID: "aes",
		Payload: newCSR(t, d.key, "device", "secret"), Recipient: pki.raEnc, Cipher: AES128CBC, SignerCert: d.self, Signer: d.key})
	require.NoError(t, err)
	_, _, body := post(t, ts.URL, der)
	m, err := ParsePKIMessage(body, ParseOptions{})
	require.NoError(t, err)
	require.Equal(t, Success, m.Status)
	require.Equal(t, int32(1), key.n.Load())
}

// TestParseOptionDisableDES3: ParseOptions.DisableDES3 makes Decrypt refuse a 3DES
// envelope (ErrUnsupportedAlgorithm), the option a Server with DisableDES3 parses
// with; without it the same message decrypts.
func TestParseOptionDisableDES3(t *testing.T) {
	pki := newTestPKI(t)
	d := newDevice(t)
	der, _, err := NewRequest(RequestOptions{Type: PKCSReq, TransactionID: "des3",
		Payload: newCSR(t, d.key, "device", "secret"), Recipient: pki.raEnc, Cipher: DES3CBC, SignerCert: d.self, Signer: d.key})
	require.NoError(t, err)
	for _, disable := range []bool{true, false} {
		m, err := ParsePKIMessage(der, ParseOptions{DisableDES3: disable})
		require.NoError(t, err)
		err = m.Decrypt(Recipient{Certificate: pki.raEnc, Key: pki.raEncK})
		if disable {
			require.ErrorIs(t, err, ErrUnsupportedAlgorithm)
			require.Nil(t, m.CSR)
		} else {
			require.NoError(t, err)
			require.NotNil(t, m.CSR)
		}
	}
}

// TestServerWithoutCACertsDoesNotPanic: a Server used without Validate and without
// CACerts (or any other field Validate requires) answers 503 to every operation, its
// Responder never called: it used to panic while choosing the set of certificates,
// then to answer a PKIOperation with no CA, and a zero Server advertised capabilities
// in GetCACaps.
func TestServerWithoutCACertsDoesNotPanic(t *testing.T) {
	pki := newTestPKI(t)
	d := newDevice(t)
	der, _, err := NewRequest(RequestOptions{Type: PKCSReq, TransactionID: "no-ca",
		Payload: newCSR(t, d.key, "device", "secret"), Recipient: pki.raEnc, SignerCert: d.self, Signer: d.key})
	require.NoError(t, err)
	for _, c := range []struct {
		name  string
		unset func(*Server)
	}{
		{"zero Server", func(s *Server) { *s = Server{} }},
		{"no CACerts", func(s *Server) { s.CACerts = nil }},
		{"no Recipients", func(s *Server) { s.Recipients = nil }},
		{"no Signer", func(s *Server) { s.Signer = nil }},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := pki.server(false)
			called := false
			s.Responder = ResponderFunc(func(context.Context, *Request) (*Response, error) {
				called = true
				return nil, Fail(BadRequest, errors.New("no CA"))
			})
			c.unset(s)
			ts := httptestServer(t, s)
			code, _, body := post(t, ts.URL, der)
			require.Equal(t, http.StatusServiceUnavailable, code, string(body))
			for _, op := range []string{"GetCACaps", "GetCACert", "GetNextCACert"} {
				resp, err := http.Get(ts.URL + "?operation=" + op)
				require.NoError(t, err)
				resp.Body.Close()
				require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, op)
			}
			require.False(t, called)
		})
	}
}

// TestMetricLabelsBounded: a requester chooses its messageType, so the metric label
// that names it must come from a fixed set: any number that is no message type counts
// as "unknown", or a flood of validly self-signed messages with types 0 to 9999 would
// make as many time series.
func TestMetricLabelsBounded(t *testing.T) {
	pki := newTestPKI(t)
	reader := sdkmetric.NewManualReader()
	s := pki.server(false)
	s.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	require.NoError(t, s.Validate())
	ts := httptestServer(t, s)
	d := newDevice(t)
	csr := newCSR(t, d.key, "device", "secret")
	nonce := bytes.Repeat([]byte{7}, 16)
	for _, typ := range []string{"0", "1", "99", "100", "4242", "9999", "-1", "18"} {
		code, _, body := post(t, ts.URL, d.rawRequest(t, pki.raEnc, csr, stdAttrs(typ, nonce), crypto.SHA256))
		expectFailure(t, pki, code, body, BadRequest)
	}
	require.Zero(t, pki.issuedCount())
	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	types := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != MetricRequests {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				if v, ok := dp.Attributes.Value(AttrMessageType); ok {
					types[v.AsString()] += dp.Value
				}
			}
		}
	}
	require.Equal(t, map[string]int64{"unknown": 7, "UpdateReq": 1}, types)
}

// loggedServer is a Server logging JSON into logs, served over HTTP on 127.0.0.1.
func loggedServer(t *testing.T) (pki *testPKI, logs *bytes.Buffer, ts *httptest.Server) {
	t.Helper()
	pki, logs = newTestPKI(t), new(bytes.Buffer)
	s := pki.server(false)
	s.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	require.NoError(t, s.Validate())
	return pki, logs, httptestServer(t, s)
}

// TestLogBoundedOnHostileText: the text a requester chooses (a messageType of 50,000
// characters, an object identifier of 20,000 arcs) reaches the log only cut short: each
// log record stays under 2 KiB, and the request gets its answer.
func TestLogBoundedOnHostileText(t *testing.T) {
	pki, logs, ts := loggedServer(t)
	d := newDevice(t)
	nonce := bytes.Repeat([]byte{7}, 16)
	csr := newCSR(t, d.key, "device", "secret")
	code, _, body := post(t, ts.URL, d.rawRequest(t, pki.raEnc, csr, stdAttrs(strings.Repeat("A", 50000), nonce), crypto.SHA256))
	expectFailure(t, pki, code, body, BadRequest)
	long := make([]int, 20000)
	for i := range long {
		long[i] = 1
	}
	oid, err := asn1.Marshal(asn1.ObjectIdentifier(long))
	require.NoError(t, err)
	var ci cryptobyte.Builder
	ci.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(oid)
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { b.AddASN1NULL() })
	})
	code, _, _ = post(t, ts.URL, ci.BytesOrPanic())
	require.Equal(t, http.StatusBadRequest, code)
	require.Zero(t, pki.issuedCount())
	records := strings.Split(strings.TrimSpace(logs.String()), "\n")
	require.Len(t, records, 2)
	for _, rec := range records {
		require.Less(t, len(rec), 2048, "a log record of %d bytes", len(rec))
	}
}

// TestLogNamesRefusedDigest: a request refused for its digest algorithm is logged with
// the digest it named, not with SHA-256, the digest its FAILURE is signed with.
func TestLogNamesRefusedDigest(t *testing.T) {
	pki, logs, ts := loggedServer(t)
	d := newDevice(t)
	csr := newCSR(t, d.key, "device", "secret")
	der := d.rawRequest(t, pki.raEnc, csr, stdAttrs("tid-sha224", bytes.Repeat([]byte{7}, 16)), crypto.SHA256)
	// SHA-224's OID differs from SHA-256's in its last arc only.
	sha256OID := []byte{0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01}
	sha224OID := []byte{0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04}
	require.Equal(t, 2, bytes.Count(der, sha256OID), "digestAlgorithms and the SignerInfo's digestAlgorithm")
	code, _, body := post(t, ts.URL, bytes.ReplaceAll(der, sha256OID, sha224OID))
	expectFailure(t, pki, code, body, BadAlg)
	require.Zero(t, pki.issuedCount())
	var rec struct {
		Msg    string `json:"msg"`
		Digest string `json:"digest"`
	}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		require.NoError(t, json.Unmarshal([]byte(line), &rec))
		if rec.Msg == "scep: PKIOperation" {
			break
		}
	}
	require.Equal(t, "scep: PKIOperation", rec.Msg, logs.String())
	require.Equal(t, "SHA-224", rec.Digest)
}
