package cms

import (
	"crypto/rand"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/smallstep/pkcs7"
	"github.com/stretchr/testify/require"
)

func TestVectorPKCSReqEnvelope(t *testing.T) {
	t.Parallel()
	f := fixtures(t)
	der, err := os.ReadFile(filepath.Join("testdata", "micromdm", "PKCSReq.envelope.der"))
	require.NoError(t, err)
	want, err := os.ReadFile(filepath.Join("testdata", "micromdm", "PKCSReq.inner-csr.der"))
	require.NoError(t, err)

	env, err := Parse(der)
	require.NoError(t, err)
	require.Equal(t, DESEDE3CBC, env.Cipher)
	require.Len(t, env.Recipients, 1)
	require.Equal(t, RSAPKCS1v15, env.Recipients[0].KeyTransport)
	require.NotNil(t, env.Recipients[0].IssuerAndSerial)
	require.True(t, env.Recipients[0].Matches(f.vectorCA))

	got, c, err := Decrypt(der, []Recipient{
		{Certificate: f.recipientCert, Key: f.recipientKey}, // not ours for this one
		{Certificate: f.vectorCA, Key: f.vectorKey},
	}, DecryptOptions{})
	require.NoError(t, err)
	require.Equal(t, DESEDE3CBC, c)
	require.Equal(t, want, got)
}

func TestVectorNDESEnvelope(t *testing.T) {
	t.Parallel()
	der, err := os.ReadFile(filepath.Join("testdata", "micromdm", "CertRep_NoCertificatesForSigners.der"))
	require.NoError(t, err)
	p7, err := pkcs7.Parse(der)
	require.NoError(t, err)
	env, err := Parse(p7.Content)
	require.NoError(t, err)
	require.Equal(t, AES128CBC, env.Cipher)
	require.Len(t, env.IV, 16)
	require.Len(t, env.Recipients, 1)
	ri := env.Recipients[0]
	// The NDES envelope carries id-RSAES-OAEP with an empty parameter
	// SEQUENCE: all defaults, SHA-1 and MGF1-SHA-1.
	require.Equal(t, RSAOAEPSHA1, ri.KeyTransport)
	require.True(t, ri.KeyTransportOID.Equal(oidRSAESOAEP))
	require.NotNil(t, ri.IssuerAndSerial)
	require.Len(t, ri.EncryptedKey, 256)

	// Not addressed to us.
	_, err = env.Decrypt(fixtures(t).us(), DecryptOptions{})
	require.ErrorIs(t, err, ErrNoRecipient)
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	f := fixtures(t)
	content := make([]byte, 1000)
	_, _ = rand.Read(content)
	for _, c := range allCiphers {
		for _, kt := range allTransports {
			for _, n := range []int{0, 1, 15, 16, 17, len(content)} {
				t.Run(c.String()+"/"+kt.String(), func(t *testing.T) {
					t.Parallel()
					der, err := Encrypt(nil, content[:n], []*x509.Certificate{f.recipientCert}, c, kt)
					require.NoError(t, err)
					env, err := Parse(der)
					require.NoError(t, err)
					require.Equal(t, c, env.Cipher)
					require.Equal(t, 0, env.Version)
					require.Equal(t, kt, env.Recipients[0].KeyTransport)
					got, err := env.Decrypt(f.us(), DecryptOptions{AllowDES: true})
					require.NoError(t, err)
					require.Equal(t, content[:n], got)
				})
			}
		}
	}
}
