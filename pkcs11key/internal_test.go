//go:build cgo

package pkcs11key

import (
	"crypto/rand"
	"crypto/rsa"
	"testing"

	"github.com/ThalesGroup/crypto11"
	"github.com/scepkit/scepkit/internal/softhsmtest"
	"github.com/stretchr/testify/require"
)

func openTestToken(t *testing.T) *Token {
	t.Helper()
	st := softhsmtest.New(t)
	tok, err := Open(Config{Module: st.Module, TokenLabel: st.Label, PIN: st.PIN})
	require.NoError(t, err)
	t.Cleanup(func() { tok.Close() })
	return tok
}

// TestGeneratedKeyStaysInToken: a generated private key is sensitive and not
// extractable, so the token never hands it out.
func TestGeneratedKeyStaysInToken(t *testing.T) {
	tok := openTestToken(t)
	for _, kt := range []KeyType{RSA2048, ECDSAP256} {
		t.Run(kt.String(), func(t *testing.T) {
			k, err := tok.GenerateKey("stay-"+kt.String(), kt)
			require.NoError(t, err)
			attrs, err := tok.tok.ctx.GetAttributes(k.s.(crypto11.Signer), []crypto11.AttributeType{crypto11.CkaSensitive, crypto11.CkaExtractable})
			require.NoError(t, err)
			require.Equal(t, []byte{1}, attrs[crypto11.CkaSensitive].Value, "CKA_SENSITIVE")
			require.Equal(t, []byte{0}, attrs[crypto11.CkaExtractable].Value, "CKA_EXTRACTABLE")
		})
	}
}

// TestSessionKeyLen: crypto11 refuses rsa.PKCS1v15DecryptOptions.SessionKeyLen, which
// CMS decryption passes so that a bad padding looks like a bad content key; Key
// provides it: the plaintext when it has that length, random bytes (and no error)
// for a bad padding or another length.
func TestSessionKeyLen(t *testing.T) {
	tok := openTestToken(t)
	k, err := tok.GenerateKey("session", RSA2048)
	require.NoError(t, err)
	pub := k.Public().(*rsa.PublicKey)

	_, err = k.dec.Decrypt(rand.Reader, make([]byte, 256), &rsa.PKCS1v15DecryptOptions{SessionKeyLen: 32})
	require.Error(t, err, "crypto11 alone refuses SessionKeyLen: without Key, every CMS decryption fails")

	secret := []byte("0123456789abcdef0123456789abcdef")
	ct, err := rsa.EncryptPKCS1v15(rand.Reader, pub, secret)
	require.NoError(t, err)
	short, err := rsa.EncryptPKCS1v15(rand.Reader, pub, secret[:16])
	require.NoError(t, err)
	bad := append([]byte(nil), ct...)
	bad[10] ^= 0xff

	cases := []struct {
		name   string
		ct     []byte
		want   []byte // nil: random bytes of the session key length
		keyLen int
	}{
		{"right length", ct, secret, 32},
		{"other length", short, nil, 32},
		{"bad padding", bad, nil, 32},
		{"wrong size ciphertext", ct[:100], nil, 32},
		{"no SessionKeyLen", ct, secret, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := k.Decrypt(rand.Reader, tc.ct, &rsa.PKCS1v15DecryptOptions{SessionKeyLen: tc.keyLen})
			require.NoError(t, err)
			if tc.want != nil {
				require.Equal(t, tc.want, got)
				return
			}
			require.Len(t, got, tc.keyLen)
			require.NotEqual(t, secret, got)
			again, err := k.Decrypt(rand.Reader, tc.ct, &rsa.PKCS1v15DecryptOptions{SessionKeyLen: tc.keyLen})
			require.NoError(t, err)
			require.NotEqual(t, got, again, "fresh random bytes each time")
		})
	}
	_, err = k.Decrypt(rand.Reader, bad, nil)
	require.Error(t, err, "without SessionKeyLen a bad padding is an error, as in crypto/rsa")
}

// TestClosedToken: once the token is closed, its keys refuse to decrypt with an error,
// also with SessionKeyLen (which answers random bytes only for what depends on the
// ciphertext: a bad padding or another length); a second Close does not panic.
func TestClosedToken(t *testing.T) {
	st := softhsmtest.New(t)
	tok, err := Open(Config{Module: st.Module, TokenLabel: st.Label, PIN: st.PIN})
	require.NoError(t, err)
	k, err := tok.GenerateKey("closed", RSA2048)
	require.NoError(t, err)
	ct, err := rsa.EncryptPKCS1v15(rand.Reader, k.Public().(*rsa.PublicKey), make([]byte, 32))
	require.NoError(t, err)
	require.NoError(t, tok.Close())
	require.NotPanics(t, func() { tok.Close() })
	_, err = k.Decrypt(rand.Reader, ct, nil)
	require.Error(t, err)
	got, err := k.Decrypt(rand.Reader, ct, &rsa.PKCS1v15DecryptOptions{SessionKeyLen: 32})
	require.Error(t, err, "a closed token answered %d bytes as if it had decrypted", len(got))
}
