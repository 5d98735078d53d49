package scep

// An unauthenticated PKIOperation signed by a self-signed certificate with a huge RSA
// modulus must be refused (badAlg) before any RSA operation: the cost of one grows with
// the square of the modulus. (Found in review: a 262,144-bit key cost 2.9 s of CPU.)

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeRSASigner claims a huge public key and returns garbage of the right length.
type fakeRSASigner struct{ pub *rsa.PublicKey }

func (f fakeRSASigner) Public() crypto.PublicKey { return f.pub }
func (f fakeRSASigner) Sign(_ io.Reader, _ []byte, _ crypto.SignerOpts) ([]byte, error) {
	sig := make([]byte, (f.pub.N.BitLen()+7)/8)
	sig[len(sig)-1] = 2
	return sig, nil
}

func TestHugeRSASignerRefusedCheaply(t *testing.T) {
	p := newTestPKI(t)
	s := p.server(false)
	const bits = 1 << 18 // 262144-bit modulus: 32 KiB key, whole message ~70 KiB < 256 KiB limit
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), bits))
	require.NoError(t, err)
	n.SetBit(n, bits-1, 1)
	n.SetBit(n, 0, 1)
	pub := &rsa.PublicKey{N: n, E: 1<<31 - 1}
	// The certificate's own signature is never checked for a PKCSReq signer: sign it
	// with any key.
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "big"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, rsaKeys[3])
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	env, err := encryptTo(rand.Reader, []byte("x"), p.raEnc, AES256CBC, 0)
	require.NoError(t, err)
	msg, err := buildSignedData(signOptions{content: env, attrs: []signedAttr{
		{oidMessageType, printableValue("19")},
		{oidTransactionID, printableValue("big")},
		{oidSenderNonce, octetValue(make([]byte, 16))},
	}, cert: cert, key: fakeRSASigner{pub}, hash: crypto.SHA256, rand: rand.Reader})
	require.NoError(t, err)
	t.Logf("message size %d bytes (limit %d)", len(msg), DefaultMaxBodyBytes)
	start := time.Now()
	rec := httptestRecorder(s, http.MethodPost, "/scep?operation=PKIOperation", msg)
	took := time.Since(start)
	t.Logf("HTTP %d after %v", rec.Code, took)
	expectFailure(t, p, rec.Code, rec.Body.Bytes(), BadAlg)
}

func TestCheckKeySize(t *testing.T) {
	testKeys(t)
	require.NoError(t, CheckKeySize(rsaKeys[0].Public()))
	require.NoError(t, CheckKeySize(ecKey.Public()))
	big8193 := new(big.Int).Lsh(big.NewInt(1), 8192)
	require.ErrorIs(t, CheckKeySize(&rsa.PublicKey{N: big8193, E: 65537}), ErrUnsupportedAlgorithm)
	require.ErrorIs(t, CheckKeySize(&rsa.PublicKey{N: rsaKeys[0].N, E: 1}), ErrUnsupportedAlgorithm)
	// crypto/rsa refuses exponents over 2^31-1: refused here as badAlg, not left to
	// fail the signature check as badMessageCheck.
	require.NoError(t, CheckKeySize(&rsa.PublicKey{N: rsaKeys[0].N, E: 1<<31 - 1}))
	require.ErrorIs(t, CheckKeySize(&rsa.PublicKey{N: rsaKeys[0].N, E: 1 << 31}), ErrUnsupportedAlgorithm)
	require.ErrorIs(t, CheckKeySize(&rsa.PublicKey{E: 65537}), ErrUnsupportedAlgorithm)
}
