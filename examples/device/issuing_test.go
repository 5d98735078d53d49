package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"math/big"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// TestEnrollUnderIssuingCA: with a root and an issuing CA under it, the device
// enrolls and saves its certificate whether the root or the issuing CA is pinned.
// Pinning the root made every enrollment fail after the server had issued (the
// challenge spent, nothing saved): the certificate was checked against the root alone.
func TestEnrollUnderIssuingCA(t *testing.T) {
	newKey := func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		require.NoError(t, err)
		return k
	}
	mk := func(tmpl, parent *x509.Certificate, pub any, key *rsa.PrivateKey) *x509.Certificate {
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
		require.NoError(t, err)
		c, err := x509.ParseCertificate(der)
		require.NoError(t, err)
		return c
	}
	rootKey, issuingKey, raKey := newKey(), newKey(), newKey()
	now := time.Now()
	rootTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	root := mk(rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	issuing := mk(&x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "issuing CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}, root, issuingKey.Public(), rootKey)
	ra := mk(&x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "RA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
		KeyUsage:           x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{{1, 3, 6, 1, 4, 1, 311, 20, 2, 1}}}, issuing, raKey.Public(), issuingKey)
	s := &scep.Server{CACerts: []*x509.Certificate{issuing, root}, SignerCert: ra, Signer: raKey,
		Recipients: []scep.Recipient{{Certificate: ra, Key: raKey}},
		Responder: scep.ResponderFunc(func(_ context.Context, req *scep.Request) (*scep.Response, error) {
			c := mk(&x509.Certificate{SerialNumber: big.NewInt(9), Subject: req.CSR.Subject,
				NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour)}, issuing, req.CSR.PublicKey, issuingKey)
			return &scep.Response{Certificate: c}, nil
		})}
	require.NoError(t, s.Validate())
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)

	for _, c := range []struct {
		name string
		pin  *x509.Certificate
	}{
		{"root pinned", root},
		{"issuing CA pinned", issuing},
	} {
		t.Run(c.name, func(t *testing.T) {
			fp := sha256.Sum256(c.pin.Raw)
			dir := t.TempDir()
			certPath := filepath.Join(dir, "device.crt")
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), []string{"-url", ts.URL, "-challenge", "secret", "-subject", "CN=device",
				"-ca-fingerprint", hex.EncodeToString(fp[:]), "-key", filepath.Join(dir, "device.key"), "-cert", certPath},
				&stdout, &stderr)
			require.NoError(t, err, stderr.String())
			cert := readCert(t, certPath)
			require.NoError(t, cert.CheckSignatureFrom(issuing))
		})
	}
}
