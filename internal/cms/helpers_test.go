package cms

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/pem"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// readPEM returns the DER of the first PEM block in testdata/name.
func readPEM(tb testing.TB, name string) []byte {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(tb, err)
	block, _ := pem.Decode(data)
	require.NotNil(tb, block, name)
	return block.Bytes
}

func loadCert(tb testing.TB, name string) *x509.Certificate {
	tb.Helper()
	cert, err := x509.ParseCertificate(readPEM(tb, name))
	require.NoError(tb, err)
	return cert
}

func loadKey(tb testing.TB, name string) *rsa.PrivateKey {
	tb.Helper()
	k, err := x509.ParsePKCS8PrivateKey(readPEM(tb, name))
	require.NoError(tb, err)
	key, ok := k.(*rsa.PrivateKey)
	require.True(tb, ok)
	return key
}

type fixture struct {
	vectorCA      *x509.Certificate
	vectorKey     *rsa.PrivateKey
	recipientCert *x509.Certificate
	recipientKey  *rsa.PrivateKey
	otherCert     *x509.Certificate
	otherKey      *rsa.PrivateKey
	ecCert        *x509.Certificate
}

var (
	fixtureOnce sync.Once
	fixtureVal  fixture
)

func fixtures(tb testing.TB) *fixture {
	tb.Helper()
	fixtureOnce.Do(func() {
		fixtureVal = fixture{
			vectorCA:      loadCert(tb, "micromdm/ca.pem"),
			vectorKey:     loadKey(tb, "micromdm/testca-ca.key.unencrypted.pem"),
			recipientCert: loadCert(tb, "recipient.cert.pem"),
			recipientKey:  loadKey(tb, "recipient.key.pem"),
			otherCert:     loadCert(tb, "other.cert.pem"),
			otherKey:      loadKey(tb, "other.key.pem"),
			ecCert:        loadCert(tb, "ec.cert.pem"),
		}
	})
	require.NotNil(tb, fixtureVal.recipientKey, "fixtures failed to load")
	return &fixtureVal
}

func (f *fixture) us() []Recipient {
	return []Recipient{{Certificate: f.recipientCert, Key: f.recipientKey}}
}

var allCiphers = []ContentCipher{DESCBC, DESEDE3CBC, AES128CBC, AES192CBC, AES256CBC}
var allTransports = []KeyTransport{RSAPKCS1v15, RSAOAEPSHA1, RSAOAEPSHA256}

// fixedReader is a deterministic io.Reader (a counter), for reproducible
// substitute keys in tests.
type fixedReader struct{ n byte }

func (r *fixedReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.n
		r.n += 31
	}
	return len(p), nil
}

// decrypterFunc adapts a function to crypto.Decrypter.
type decrypterFunc struct {
	pub crypto.PublicKey
	f   func(ct []byte, opts crypto.DecrypterOpts) ([]byte, error)
}

func (d decrypterFunc) Public() crypto.PublicKey { return d.pub }
func (d decrypterFunc) Decrypt(_ io.Reader, ct []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	return d.f(ct, opts)
}

func sha1New() hash.Hash { return sha1.New() }
