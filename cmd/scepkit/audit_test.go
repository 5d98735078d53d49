package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestAuditRefusedCertBounded: an anonymous client presents a self-signed client
// certificate (the admin listener requests one, tls.RequestClientCert, and verifies it
// itself) whose subject is 60 KB: the audit line logs refused_cert in full, for
// every request on the connection. Before, each audit line carried it whole (60 KB); now
// it is cut at 256 bytes.
func TestAuditRefusedCertBounded(t *testing.T) {
	var logs syncBuffer
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "admin CA"}, IsCA: true,
		BasicConstraintsValid: true, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caT, caT, caKey.Public(), caKey)
	ca, _ := x509.ParseCertificate(caDER)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	a := &admin{clientCAs: pool, log: slog.New(slog.NewJSONHandler(&logs, nil))}

	ts := httptest.NewUnstartedServer(a.handler())
	ts.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	ts.StartTLS()
	defer ts.Close()

	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: strings.Repeat("A", 60000)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	require.NoError(t, err)
	tr := ts.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: k}}
	c := &http.Client{Transport: tr}
	for range 5 {
		resp, err := c.Get(ts.URL + "/v1/pending")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	}
	longest := 0
	for _, l := range strings.Split(logs.String(), "\n") {
		longest = max(longest, len(l))
	}
	t.Logf("5 anonymous requests wrote %d bytes of audit log; longest line %d bytes", len(logs.String()), longest)
	require.Less(t, longest, 4096, "an audit line is bounded")
}
