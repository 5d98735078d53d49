package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
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

// TestSignAlgorithmIsTheCAs: the algorithm start-up and /readyz probe a CA key with
// is the one catemplate.CA signs certificates and CRLs with, for every key type the
// CA may hold; a CA key the gateway cannot use is refused with the types it can.
func TestSignAlgorithmIsTheCAs(t *testing.T) {
	gen := map[string]func() (crypto.Signer, error){
		"RSA-2048": func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 2048) },
		"P-256":    func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) },
		"P-384":    func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P384(), rand.Reader) },
		"P-521":    func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P521(), rand.Reader) },
		"Ed25519": func() (crypto.Signer, error) {
			_, k, err := ed25519.GenerateKey(rand.Reader)
			return k, err
		},
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	for name, g := range gen {
		t.Run(name, func(t *testing.T) {
			key, err := g()
			require.NoError(t, err)
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
				NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
				BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
			require.NoError(t, err)
			cert, err := x509.ParseCertificate(der)
			require.NoError(t, err)
			ca := &catemplate.CA{Certificate: cert, Signer: key}

			want, _, err := signAlgorithm(key.Public(), caSigns)
			require.NoError(t, err)
			leaf, err := ca.Sign(context.Background(), &x509.Certificate{SerialNumber: big.NewInt(2),
				RawSubject: mustSubject(t, "device"), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
				KeyUsage: x509.KeyUsageDigitalSignature}, leafKey.Public())
			require.NoError(t, err)
			require.Equal(t, want, leaf.SignatureAlgorithm, "certificates")
			crlDER, err := ca.CRL(context.Background(), time.Now().Add(time.Hour))
			require.NoError(t, err)
			crl, err := x509.ParseRevocationList(crlDER)
			require.NoError(t, err)
			require.Equal(t, want, crl.SignatureAlgorithm, "CRLs")
		})
	}

	_, _, err = signAlgorithm(&ecdsa.PublicKey{Curve: elliptic.P224()}, caSigns)
	require.ErrorContains(t, err, "RSA, ECDSA (P-256, P-384, P-521) or Ed25519")
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	_, _, err = signAlgorithm(edPub, raSigns)
	require.ErrorContains(t, err, "the RA signs with RSA or ECDSA")
}

func mustSubject(t *testing.T, cn string) []byte {
	der, err := asn1.Marshal(pkix.Name{CommonName: cn}.ToRDNSequence())
	require.NoError(t, err)
	return der
}
