package scep

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestClientCertPollNamesIssuingCA: CertPoll's issuerAndSubject names the CA that
// issues (RFC 8894 §3.3.3). With a pinned root, an issuing CA and an RA, the root was
// named; with an ECDSA CA and an RSA RA, the RA.
func TestClientCertPollNamesIssuingCA(t *testing.T) {
	pki := newTestPKI(t)
	d := newDevice(t)
	now := time.Now()
	root, rootKey := pki.ca, pki.caKey
	issuing := caCert(t, 50, root, rootKey, rsaKeys[2], now.Add(-time.Hour), now.Add(time.Hour))
	raUnderIssuing := raCert(t, 51, issuing, rsaKeys[2], rsaKeys[1], now.Add(-time.Hour), now.Add(time.Hour))
	ecTmpl := &x509.Certificate{SerialNumber: big.NewInt(52), Subject: pkix.Name{CommonName: "ECDSA CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	ecCA := mkCert(t, ecTmpl, ecTmpl, ecKey.Public(), ecKey)
	raUnderEC := raCert(t, 53, ecCA, ecKey, rsaKeys[1], now.Add(-time.Hour), now.Add(time.Hour))
	for _, c := range []struct {
		name       string
		certs      []*x509.Certificate
		pin        *x509.Certificate
		ra         *x509.Certificate
		raKey      crypto.Decrypter
		wantIssuer *x509.Certificate
	}{
		{"root, issuing CA, RA", []*x509.Certificate{root, issuing, raUnderIssuing}, root, raUnderIssuing, rsaKeys[1], issuing},
		{"RA, issuing CA, root", []*x509.Certificate{raUnderIssuing, issuing, root}, root, raUnderIssuing, rsaKeys[1], issuing},
		{"ECDSA CA and RSA RA", []*x509.Certificate{ecCA, raUnderEC}, ecCA, raUnderEC, rsaKeys[1], ecCA},
		{"root and issuing CA without RA", []*x509.Certificate{root, issuing}, root, issuing, rsaKeys[2], issuing},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := &scriptedServer{t: t, caps: "AES\nSHA-256\nPOSTPKIOperation\n", certs: c.certs,
				recipients: []Recipient{{Certificate: c.ra, Key: c.raKey}}}
			rp := &Replier{Cert: c.ra, Key: c.raKey.(crypto.Signer)}
			h.reply = func(m *PKIMessage) []byte {
				var rep []byte
				var err error
				if m.MessageType == CertPoll {
					rep, err = rp.Failure(m, BadCertID)
				} else {
					rep, err = rp.Pending(m)
				}
				require.NoError(t, err)
				return rep
			}
			cl := h.client(c.pin)
			cl.PollInterval = time.Millisecond
			_, err := cl.Enroll(context.Background(), newCSR(t, d.key, "device", "secret"), d.key)
			require.ErrorIs(t, err, ErrRefused)
			reqs := h.received()
			require.Len(t, reqs, 2)
			require.NotNil(t, reqs[0].CSR, "the PKCSReq was not encrypted to the RA")
			require.Equal(t, CertPoll, reqs[1].MessageType)
			require.NotNil(t, reqs[1].IssuerAndSubject)
			require.Equal(t, c.wantIssuer.RawSubject, reqs[1].IssuerAndSubject.Issuer)
		})
	}
}
