package catemplate

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/scepkit/scepkit/profile"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

func TestNewCAKinds(t *testing.T) {
	cases := []struct {
		name string
		opts CAOptions
		ok   bool
		bits int
	}{
		{"rsa default", CAOptions{}, true, 3072},
		{"rsa 2048", CAOptions{KeySize: 2048}, true, 2048},
		{"rsa 4096", CAOptions{KeySize: 4096}, true, 4096},
		{"rsa 1024", CAOptions{KeySize: 1024}, false, 0},
		{"p256", CAOptions{KeyType: profile.ECDSAP256}, true, 256},
		{"p384", CAOptions{KeyType: profile.ECDSAP384}, true, 384},
		{"bad type", CAOptions{KeyType: 9}, false, 0},
		{"negative validity", CAOptions{KeyType: profile.ECDSAP256, Validity: -time.Hour}, false, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.opts.Now = func() time.Time { return testNow }
			ca, err := NewCA(c.opts)
			if !c.ok {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			cert := ca.Certificate
			require.True(t, cert.IsCA)
			require.Equal(t, "scepkit CA", cert.Subject.CommonName)
			require.NoError(t, cert.CheckSignatureFrom(cert))
			require.NotZero(t, cert.KeyUsage&x509.KeyUsageCertSign)
			require.NotZero(t, cert.KeyUsage&x509.KeyUsageCRLSign)
			require.Equal(t, testNow.Add(10*365*24*time.Hour), cert.NotAfter)
			switch k := cert.PublicKey.(type) {
			case *rsa.PublicKey:
				require.Equal(t, c.bits, k.N.BitLen())
			case *ecdsa.PublicKey:
				require.Equal(t, c.bits, k.Curve.Params().BitSize)
			}
		})
	}
}

func TestIntermediateCA(t *testing.T) {
	keys(t)
	root := testCA(t, 365*24*time.Hour)
	inter, err := NewCA(CAOptions{KeyType: profile.ECDSAP256, Parent: root, Subject: pkix.Name{CommonName: "Issuing CA"}, Now: root.Now})
	require.NoError(t, err)
	require.Equal(t, root.Certificate.NotAfter, inter.Certificate.NotAfter, "clamped to the parent")
	require.Equal(t, []*x509.Certificate{root.Certificate}, inter.Chain)
	require.NoError(t, inter.Certificate.CheckSignatureFrom(root.Certificate))

	r := render(t)
	csr := makeCSR(t, r, rsa2048)
	tmpl, err := Apply(clientTemplate(), csr, r, inter.Certificate, testNow, nil)
	require.NoError(t, err)
	cert, err := inter.Sign(context.Background(), tmpl, csr.PublicKey)
	require.NoError(t, err)
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root.Certificate)
	inters.AddCert(inter.Certificate)
	_, err = cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: testNow.Add(time.Hour), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	require.NoError(t, err)
}

func TestRevokeAndCRL(t *testing.T) {
	ca, err := NewCA(CAOptions{KeyType: profile.ECDSAP256, Now: func() time.Time { return testNow }})
	require.NoError(t, err)
	ctx := context.Background()
	s1, s2 := big.NewInt(1001), big.NewInt(7)
	require.False(t, ca.IsRevoked(s1))
	require.NoError(t, ca.Revoke(s1, 1, testNow))
	require.NoError(t, ca.Revoke(s2, 4, testNow.Add(time.Minute)))
	require.NoError(t, ca.Revoke(s1, 5, testNow.Add(time.Hour)), "second revocation is a no-op")
	require.True(t, ca.IsRevoked(s1))
	require.False(t, ca.IsRevoked(big.NewInt(2)))
	require.False(t, ca.IsRevoked(nil))
	require.Error(t, ca.Revoke(nil, 1, testNow))
	require.Error(t, ca.Revoke(big.NewInt(3), 7, testNow))
	require.Error(t, ca.Revoke(big.NewInt(3), 8, testNow), "removeFromCRL is for delta CRLs")
	require.Error(t, ca.Revoke(big.NewInt(3), 11, testNow))

	der, err := ca.CRL(ctx, testNow.Add(24*time.Hour))
	require.NoError(t, err)
	crl, err := x509.ParseRevocationList(der)
	require.NoError(t, err)
	require.NoError(t, crl.CheckSignatureFrom(ca.Certificate))
	require.Equal(t, testNow.UnixMicro(), crl.Number.Int64(), "the signing time in microseconds")
	first := crl.Number
	require.Len(t, crl.RevokedCertificateEntries, 2)
	require.Equal(t, int64(7), crl.RevokedCertificateEntries[0].SerialNumber.Int64())
	require.Equal(t, 4, crl.RevokedCertificateEntries[0].ReasonCode)
	require.Equal(t, 1, crl.RevokedCertificateEntries[1].ReasonCode)

	der, err = ca.CRL(ctx, testNow.Add(24*time.Hour))
	require.NoError(t, err)
	crl, err = x509.ParseRevocationList(der)
	require.NoError(t, err)
	require.Equal(t, new(big.Int).Add(first, big.NewInt(1)), crl.Number, "one more at the same instant")

	_, err = ca.CRL(ctx, testNow)
	require.Error(t, err)
}

func TestNewRA(t *testing.T) {
	ca := testCA(t, 0)
	for _, combined := range []bool{false, true} {
		ra, err := NewRA(ca, RAOptions{Combined: combined})
		require.NoError(t, err)
		require.Equal(t, combined, ra.Combined())
		require.NoError(t, ra.SigningCertificate.CheckSignatureFrom(ca.Certificate))
		require.NoError(t, ra.EncryptionCertificate.CheckSignatureFrom(ca.Certificate))
		require.IsType(t, &rsa.PublicKey{}, ra.EncryptionCertificate.PublicKey)
		require.Equal(t, "scepkit RA", ra.SigningCertificate.Subject.CommonName)
		if combined {
			require.Len(t, ra.Certificates(), 1)
			require.Equal(t, x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment, ra.SigningCertificate.KeyUsage)
		} else {
			require.Len(t, ra.Certificates(), 2)
			require.Equal(t, x509.KeyUsageDigitalSignature, ra.SigningCertificate.KeyUsage)
			require.Equal(t, x509.KeyUsageKeyEncipherment, ra.EncryptionCertificate.KeyUsage)
			require.False(t, ra.SigningCertificate.PublicKey.(*rsa.PublicKey).Equal(ra.EncryptionCertificate.PublicKey))
		}
		require.Equal(t, OIDCertificateRequestAgent, ra.SigningCertificate.UnknownExtKeyUsage[0])
		// Both certificates are RAs by scep.Client's rule, or a pinning client would
		// neither encrypt to the RA nor believe its replies.
		for _, c := range ra.Certificates() {
			require.True(t, scep.IsRA(c), c.Subject)
		}
		// The decrypter decrypts what is encrypted to the certificate.
		ct, err := rsa.EncryptPKCS1v15(rand.Reader, ra.EncryptionCertificate.PublicKey.(*rsa.PublicKey), []byte("key"))
		require.NoError(t, err)
		pt, err := ra.Decrypter.Decrypt(rand.Reader, ct, nil)
		require.NoError(t, err)
		require.Equal(t, "key", string(pt))
	}
	_, err := NewRA(nil, RAOptions{})
	require.Error(t, err)
	ec, err := NewCA(CAOptions{KeyType: profile.ECDSAP256})
	require.NoError(t, err)
	_, err = NewRA(ca, RAOptions{Combined: true, SigningKey: ec.Signer})
	require.Error(t, err, "combined RA needs RSA")
}

func TestSaveLoad(t *testing.T) {
	ca := testCA(t, 0)
	ra, err := NewRA(ca, RAOptions{})
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), "pki")
	require.NoError(t, SaveCA(dir, ca))
	require.NoError(t, SaveRA(dir, ra))

	st, err := os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), st.Mode().Perm())
	for _, f := range []string{CAKeyFile, RASigningKeyFile, RAEncryptKeyFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), f)
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 6, "no temporary files left behind")

	ca2, err := LoadCA(dir)
	require.NoError(t, err)
	require.True(t, ca.Certificate.Equal(ca2.Certificate))
	ra2, err := LoadRA(dir)
	require.NoError(t, err)
	require.True(t, ra.SigningCertificate.Equal(ra2.SigningCertificate))
	require.False(t, ra2.Combined())

	// The loaded CA signs, and saving again replaces files in place.
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(5), NotBefore: testNow, NotAfter: testNow.Add(time.Hour)}
	_, err = ca2.Sign(context.Background(), tmpl, ra.Signer.Public())
	require.NoError(t, err)
	require.NoError(t, SaveCA(dir, ca2))

	// Combined RA round trip.
	cra, err := NewRA(ca, RAOptions{Combined: true})
	require.NoError(t, err)
	cdir := t.TempDir()
	require.NoError(t, SaveRA(cdir, cra))
	cra2, err := LoadRA(cdir)
	require.NoError(t, err)
	require.True(t, cra2.Combined())

	// A key that does not match its certificate is refused.
	other := testCA(t, 0)
	require.NoError(t, SaveCA(cdir, other))
	b, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(cdir, CAKeyFile), b, 0o600))
	_, err = LoadCA(cdir)
	require.ErrorContains(t, err, "does not match")

	_, err = LoadCA(t.TempDir())
	require.Error(t, err)
	require.ErrorIs(t, SaveCA(t.TempDir(), &CA{Certificate: ca.Certificate, Signer: opaqueSigner{ca.Signer}}), ErrKeyNotExportable)
}

// opaqueSigner hides the concrete key type, as an HSM signer does.
type opaqueSigner struct{ crypto.Signer }
