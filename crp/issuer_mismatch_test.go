package crp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/catemplate"
)

// mismatchCA is a self-signed CA named cn with a key of its own (x509 gives it a
// subjectKeyIdentifier).
func mismatchCA(t *testing.T, cn string) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert, key
}

// mismatchLeaf is a certificate ca's key signs (its authorityKeyIdentifier is ca's
// subjectKeyIdentifier).
func mismatchLeaf(t *testing.T, ca *x509.Certificate, key crypto.Signer) *x509.Certificate {
	t.Helper()
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(7),
		Subject: pkix.Name{CommonName: "device"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour)}, ca, leafKey.Public(), key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert
}

// TestIssuerMismatchSaysWhatDiffers: a certificate the CA did not issue is refused
// with what differs: the issuer name, or, under the CA's name, the authority key
// identifier (a CA renewed with another key keeps its name: RFC 5280 §4.2.1.1).
// Without key identifiers to compare, the signature check tells.
func TestIssuerMismatchSaysWhatDiffers(t *testing.T) {
	ca, caKey := mismatchCA(t, "Contoso CA")
	sameName, sameNameKey := mismatchCA(t, "Contoso CA")
	other, otherKey := mismatchCA(t, "Fabrikam CA")
	require.NotEmpty(t, ca.SubjectKeyId)

	noKeyID := *ca // a CA certificate without a subjectKeyIdentifier
	noKeyID.SubjectKeyId = nil

	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		ca   *x509.Certificate
		want string // "" for no error
	}{
		{"issued by the CA", mismatchLeaf(t, ca, caKey), ca, ""},
		{"no certificate", nil, ca, "no certificate, or no CA certificate"},
		{"no CA certificate", mismatchLeaf(t, ca, caKey), nil, "no certificate, or no CA certificate"},
		{"another CA's name", mismatchLeaf(t, other, otherKey), ca, "issuer name differs from the CA's subject name"},
		{"the CA's name, another key", mismatchLeaf(t, sameName, sameNameKey), ca,
			"issuer name is the CA's, but the authority key identifier differs"},
		{"the CA's name, another key, no key identifier", mismatchLeaf(t, sameName, sameNameKey), &noKeyID,
			"verification failure"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := issuedUnder(tc.cert, tc.ca, nil)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			if !strings.Contains(tc.want, "issuer name") {
				require.NotContains(t, err.Error(), "issuer name differs", "the name is not what differs")
			}
		})
	}
}

// TestSignedByOurCAMostSpecific: after a rollover to a CA with another name, a
// certificate under the previous CA's name but another key is refused for its key
// identifier (what differs from the previous CA), not for the next CA's name.
func TestSignedByOurCAMostSpecific(t *testing.T) {
	prev, _ := mismatchCA(t, "Contoso CA")
	next, nextKey := mismatchCA(t, "Contoso CA 2")
	sameName, sameNameKey := mismatchCA(t, "Contoso CA")
	rp := &RegistrationPoint{CACert: prev, Rollover: &Rollover{At: time.Now().Add(-time.Minute),
		CA: &catemplate.CA{Certificate: next, Signer: nextKey}}}

	err := rp.signedByOurCA(mismatchLeaf(t, sameName, sameNameKey))
	require.ErrorIs(t, err, errAuthorityKeyID)
	require.NoError(t, rp.signedByOurCA(mismatchLeaf(t, next, nextKey)))
	stranger, strangerKey := mismatchCA(t, "Stranger CA")
	require.ErrorIs(t, rp.signedByOurCA(mismatchLeaf(t, stranger, strangerKey)), errIssuerName)
}
