package scep

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// scriptedServer plays a server the Client does not control, or anyone answering for
// it over plain HTTP: it answers GetCACaps with caps, GetCACert with certs (or, when
// set, with the single certificate caCertDER), GetNextCACert with next, and each
// PKIOperation with what reply makes of the request, decrypted when one of recipients
// can.
type scriptedServer struct {
	t          testing.TB
	caps       string
	certs      []*x509.Certificate
	caCertDER  []byte
	next       []byte
	recipients []Recipient
	reply      func(m *PKIMessage) []byte

	mu       sync.Mutex
	requests []*PKIMessage
	methods  []string
}

func (h *scriptedServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Query().Get("operation") {
	case "GetCACaps":
		io.WriteString(w, h.caps)
	case "GetCACert":
		if h.caCertDER != nil {
			w.Header().Set("Content-Type", "application/x-x509-ca-cert")
			w.Write(h.caCertDER)
			return
		}
		der, err := DegenerateCertificates(h.certs)
		require.NoError(h.t, err)
		w.Header().Set("Content-Type", "application/x-x509-ca-ra-cert")
		w.Write(der)
	case "GetNextCACert":
		w.Header().Set("Content-Type", "application/x-x509-next-ca-cert")
		w.Write(h.next)
	case "PKIOperation":
		var body []byte
		if r.Method == http.MethodPost {
			body, _ = io.ReadAll(r.Body)
		} else {
			body, _ = DecodeGETMessage(r.URL.RawQuery)
		}
		m, err := ParsePKIMessage(body, ParseOptions{AllowLegacy: true})
		if err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		_ = m.Decrypt(h.recipients...) // what the client encrypted to decides who reads it
		h.mu.Lock()
		h.requests = append(h.requests, m)
		h.methods = append(h.methods, r.Method)
		h.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-pki-message")
		w.Write(h.reply(m))
	default:
		http.Error(w, "not found", http.StatusNotFound)
	}
}

// client starts the server and returns a Client pinned to pin.
func (h *scriptedServer) client(pin *x509.Certificate) *Client {
	ts := httptestServer(h.t, h)
	fp := sha256.Sum256(pin.Raw)
	return &Client{URL: ts.URL, CAFingerprint: fp[:]}
}

// received returns the requests the server parsed so far.
func (h *scriptedServer) received() []*PKIMessage {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*PKIMessage(nil), h.requests...)
}

// issue returns a certificate for the key of m's CSR, signed by ca, valid for an hour
// unless edit changes it.
func issue(t testing.TB, m *PKIMessage, ca *x509.Certificate, caKey crypto.Signer, edit func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	require.NotNil(t, m.CSR, "the request was not decrypted")
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(4242), Subject: m.CSR.Subject,
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour)}
	if edit != nil {
		edit(tmpl)
	}
	return mkCert(t, tmpl, ca, m.CSR.PublicKey, caKey)
}

// raCert returns an RA certificate ([IsRA]) for key issued by ca, valid from notBefore
// to notAfter.
func raCert(t testing.TB, serial int64, ca *x509.Certificate, caKey crypto.Signer, key crypto.Signer, notBefore, notAfter time.Time) *x509.Certificate {
	t.Helper()
	return mkCert(t, &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: fmt.Sprintf("RA %d", serial)},
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{oidCertificateRequestAgent}}, ca, key.Public(), caKey)
}

// caCert returns an intermediate CA certificate for key issued by parent, valid from
// notBefore to notAfter.
func caCert(t testing.TB, serial int64, parent *x509.Certificate, parentKey crypto.Signer, key crypto.Signer, notBefore, notAfter time.Time) *x509.Certificate {
	t.Helper()
	return mkCert(t, &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: fmt.Sprintf("CA %d", serial)},
		NotBefore: notBefore, NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, parent, key.Public(), parentKey)
}
