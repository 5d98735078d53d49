package scep

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRolloverPreviousRA: after an RA rollover, a request still encrypted to the
// previous RA (from a device that fetched GetCACert before the switch) is served only
// while that device can verify the reply, which the previous signing certificate
// signs (RFC 8894 §3.5.2). Once that certificate has expired, the request is refused
// before the Responder sees it: nothing is issued for a reply no device could accept,
// and its one-time challenge is not spent.
func TestRolloverPreviousRA(t *testing.T) {
	p := newTestPKI(t)
	now := time.Now()
	// The previous RA signing certificate ends before its encryption certificate.
	oldSign := mkCert(t, &x509.Certificate{SerialNumber: big.NewInt(20), Subject: pkix.Name{CommonName: "previous RA signing"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(2 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{oidCertificateRequestAgent}}, p.ca, p.raKey.Public(), p.caKey)
	nextKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	next := mkCert(t, &x509.Certificate{SerialNumber: big.NewInt(21), Subject: pkix.Name{CommonName: "next RA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(20 * time.Hour),
		KeyUsage:           x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{oidCertificateRequestAgent}}, p.ca, nextKey.Public(), p.caKey)

	var mu sync.Mutex
	clock := now
	srv := p.server(false)
	srv.SignerCert = oldSign
	srv.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	srv.Rollover = &Rollover{At: now.Add(time.Hour), CACerts: []*x509.Certificate{p.ca}, SignerCert: next, Signer: nextKey,
		Recipients: []Recipient{{Certificate: next, Key: nextKey}}}
	require.NoError(t, srv.Validate())
	ts := httptest.NewServer(srv)
	defer ts.Close()
	d := newDevice(t)

	for _, tc := range []struct {
		name     string
		at       time.Duration // from now
		signedBy *x509.Certificate
		status   PKIStatus
	}{
		{"after the switch, the previous RA can sign", 90 * time.Minute, oldSign, Success},
		{"the previous signing certificate expired", 3 * time.Hour, next, Failure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			clock = now.Add(tc.at)
			mu.Unlock()
			issued := p.issuedCount()
			der, _, err := NewRequest(RequestOptions{Type: PKCSReq, TransactionID: "stale-" + tc.at.String(),
				Payload: newCSR(t, d.key, "device", "secret"), Recipient: p.raEnc, SignerCert: d.self, Signer: d.key})
			require.NoError(t, err)
			code, _, body := post(t, ts.URL, der)
			require.Equal(t, 200, code, "%s", body)
			rep, err := ParsePKIMessage(body, ParseOptions{})
			require.NoError(t, err)
			require.True(t, rep.Signer.Equal(tc.signedBy), "CertRep signed by %s", rep.Signer.Subject)
			require.Equal(t, tc.status, rep.Status, "failInfo %v", rep.FailInfo)
			if tc.status == Success {
				require.Equal(t, issued+1, p.issuedCount())
				return
			}
			require.Equal(t, BadMessageCheck, rep.FailInfo)
			require.Equal(t, issued, p.issuedCount(), "a certificate was issued for a reply the device cannot verify")
		})
	}
}
