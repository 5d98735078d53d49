package scep

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Keys are expensive to generate: the tests share a few, made once.
var (
	keyOnce sync.Once
	rsaKeys [4]*rsa.PrivateKey
	ecKey   *ecdsa.PrivateKey
)

// testKeys loads the test keys from testdata/test-keys.pem (four RSA-2048 keys and one
// ECDSA P-256 key, made for these tests with openssl): generating them on every run,
// and in every fuzz worker, is slow.
func testKeys(t testing.TB) {
	t.Helper()
	keyOnce.Do(func() {
		b, err := os.ReadFile("testdata/test-keys.pem")
		if err != nil {
			panic(err)
		}
		i := 0
		for {
			var blk *pem.Block
			if blk, b = pem.Decode(b); blk == nil {
				break
			}
			switch blk.Type {
			case "RSA PRIVATE KEY":
				k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
				if err != nil {
					panic(err)
				}
				rsaKeys[i] = k
				i++
			case "EC PRIVATE KEY":
				k, err := x509.ParseECPrivateKey(blk.Bytes)
				if err != nil {
					panic(err)
				}
				ecKey = k
			}
		}
		if i != len(rsaKeys) || ecKey == nil {
			panic("testdata/test-keys.pem: want 4 RSA keys and 1 EC key")
		}
	})
}

// testPKI is a CA with a separate RA signing and RA encryption certificate, as NDES has.
type testPKI struct {
	ca      *x509.Certificate
	caKey   crypto.Signer
	raSign  *x509.Certificate
	raKey   crypto.Signer
	raEnc   *x509.Certificate
	raEncK  crypto.Decrypter
	mu      sync.Mutex
	issued  []*x509.Certificate
	serial  int64
	pending map[string]bool
}

func mkCert(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	testKeys(t)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "scepkit test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	ca := mkCert(t, caTmpl, caTmpl, rsaKeys[0].Public(), rsaKeys[0])
	ra := func(serial int64, cn string, ku x509.KeyUsage, key crypto.Signer) *x509.Certificate {
		return mkCert(t, &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: ku,
			UnknownExtKeyUsage: []asn1.ObjectIdentifier{oidCertificateRequestAgent},
		}, ca, key.Public(), rsaKeys[0])
	}
	return &testPKI{
		ca: ca, caKey: rsaKeys[0],
		raSign: ra(2, "scepkit test RA signing", x509.KeyUsageDigitalSignature, rsaKeys[1]), raKey: rsaKeys[1],
		raEnc: ra(3, "scepkit test RA encryption", x509.KeyUsageKeyEncipherment, rsaKeys[2]), raEncK: rsaKeys[2],
		serial: 100, pending: map[string]bool{},
	}
}

var errWrongChallenge = errors.New("wrong challenge")

// respond is a simple test Responder: it issues for the challenge "secret", checks
// proof of possession, accepts renewals signed by a certificate it issued, and answers
// GetCert from what it issued.
func (p *testPKI) respond(_ context.Context, req *Request) (*Response, error) {
	switch req.MessageType {
	case PKCSReq, RenewalReq:
		if err := req.CSR.CheckSignature(); err != nil {
			return nil, Fail(BadMessageCheck, err)
		}
		renewal := false
		if req.Signer != nil {
			if err := req.Signer.CheckSignatureFrom(p.ca); err == nil {
				renewal = true
			}
		}
		if req.MessageType == RenewalReq && !renewal {
			return nil, Fail(BadRequest, errors.New("renewal signer not ours"))
		}
		if req.ChallengePassword == "pending" {
			return &Response{Status: Pending}, nil
		}
		if !renewal && subtle.ConstantTimeCompare([]byte(req.ChallengePassword), []byte("secret")) != 1 {
			return nil, Fail(BadRequest, errWrongChallenge)
		}
		p.mu.Lock()
		p.serial++
		serial := p.serial
		p.mu.Unlock()
		now := time.Now()
		c, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: req.CSR.Subject,
			NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
			KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}, p.ca, req.CSR.PublicKey, p.caKey)
		if err != nil {
			return nil, err
		}
		cert, err := x509.ParseCertificate(c)
		if err != nil {
			return nil, err
		}
		p.mu.Lock()
		p.issued = append(p.issued, cert)
		p.mu.Unlock()
		return &Response{Certificate: cert, Chain: []*x509.Certificate{p.ca}}, nil
	case GetCert:
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.issued {
			if c.SerialNumber.Cmp(req.IssuerAndSerial.Serial) == 0 {
				return &Response{Certificate: c}, nil
			}
		}
		return nil, Fail(BadCertID, errors.New("no such certificate"))
	case CertPoll:
		return &Response{Status: Pending}, nil
	case GetCRL:
		crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
			Number: big.NewInt(1), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour),
		}, p.ca, p.caKey)
		if err != nil {
			return nil, err
		}
		return &Response{CRL: crl}, nil
	}
	return nil, Fail(BadRequest, errors.New("unexpected"))
}

func (p *testPKI) issuedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.issued)
}

func (p *testPKI) server(legacy bool) *Server {
	return &Server{
		CACerts: []*x509.Certificate{p.ca}, SignerCert: p.raSign, Signer: p.raKey,
		Recipients: []Recipient{{Certificate: p.raEnc, Key: p.raEncK}},
		Responder:  ResponderFunc(p.respond), AllowLegacy: legacy, Renewal: true,
	}
}

func (p *testPKI) httpServer(t testing.TB, legacy bool) (*httptest.Server, *Server) {
	t.Helper()
	s := p.server(legacy)
	s.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	require.NoError(t, s.Validate())
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return ts, s
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(b))
	return len(b), nil
}

func httptestRecorder(h http.Handler, method, target string, body []byte) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	h.ServeHTTP(rec, req)
	return rec
}

func httptestServer(t testing.TB, h http.Handler) *httptest.Server {
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts
}
