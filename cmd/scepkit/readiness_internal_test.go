package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/stretchr/testify/require"
)

// TestReadinessSignsAsTheGateway: /readyz's key probe signs as issuance does. It
// signed every key over a SHA-256 digest, which an Ed25519 CA key refuses (it signs
// messages, with no digest), so a gateway with such a CA, which starts and issues,
// was never ready.
func TestReadinessSignsAsTheGateway(t *testing.T) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Ed25519 CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	ca := &catemplate.CA{Certificate: cert, Signer: key}
	ra, err := catemplate.NewRA(ca, catemplate.RAOptions{})
	require.NoError(t, err)

	g := &gateway{ca: ca, ra: ra}
	require.NoError(t, g.keysSign())
}
