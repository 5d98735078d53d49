package profile

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
	"github.com/stretchr/testify/require"
)

func TestSignMobileConfig(t *testing.T) {
	testKeys(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Profile signer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, ecKey.Public(), ecKey)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)

	mc, err := MobileConfig(exportRendered(t, IOS), exportOpts)
	require.NoError(t, err)
	signed, err := SignMobileConfig(mc, cert, ecKey, nil)
	require.NoError(t, err)
	p7, err := pkcs7.Parse(signed)
	require.NoError(t, err)
	require.NoError(t, p7.Verify())
	require.Equal(t, mc, p7.Content)
	require.Equal(t, cert.Raw, p7.GetOnlySigner().Raw)

	_, err = SignMobileConfig(mc, nil, ecKey, nil)
	require.ErrorIs(t, err, ErrExport)
}
