package pemfile

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func selfSigned(t *testing.T, cn string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(1),
		Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)},
		&x509.Certificate{Subject: pkix.Name{CommonName: cn}}, key.Public(), key)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}

// TestReadCertificates: what Encode writes reads back in order, other blocks
// skipped; a file without a certificate, a certificate that does not parse and a
// missing file are errors, the first two naming the file.
func TestReadCertificates(t *testing.T) {
	dir := t.TempDir()
	leaf, chain := selfSigned(t, "leaf"), selfSigned(t, "chain")
	keyBlock := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}})
	bad := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x03, 1, 2, 3}})
	for _, tc := range []struct {
		name    string
		content []byte
		want    []*x509.Certificate
		err     error // with want nil: errors.Is; nil: any error naming the file
	}{
		{"leaf and chain", Encode([]*x509.Certificate{leaf, chain}), []*x509.Certificate{leaf, chain}, nil},
		{"a key between", append(append(Encode([]*x509.Certificate{leaf}), keyBlock...), Encode([]*x509.Certificate{chain})...),
			[]*x509.Certificate{leaf, chain}, nil},
		{"a key only", keyBlock, nil, ErrNoCertificate},
		{"empty", nil, nil, ErrNoCertificate},
		{"a certificate that does not parse", append(Encode([]*x509.Certificate{leaf}), bad...), nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".pem")
			require.NoError(t, os.WriteFile(path, tc.content, 0o600))
			got, err := ReadCertificates(path)
			if tc.want != nil {
				require.NoError(t, err)
				require.Len(t, got, len(tc.want))
				for i := range got {
					require.True(t, got[i].Equal(tc.want[i]))
				}
				return
			}
			require.Error(t, err)
			require.Nil(t, got)
			require.Contains(t, err.Error(), path)
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
			}
		})
	}
	_, err := ReadCertificates(filepath.Join(dir, "absent.pem"))
	require.ErrorIs(t, err, fs.ErrNotExist)
}
