package crp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"math/big"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNamesKey(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	require.NoError(t, err)
	var parsed struct {
		Algorithm asn1.RawValue
		Key       asn1.BitString
	}
	_, err = asn1.Unmarshal(spki, &parsed)
	require.NoError(t, err)
	bits := parsed.Key.Bytes
	s1, s256, s512, m5 := sha1.Sum(spki), sha256.Sum256(spki), sha512.Sum512(spki), md5.Sum(bits)
	b1 := sha1.Sum(bits)
	other, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	require.NoError(t, err)
	other[len(other)-1] ^= 1

	for _, c := range []struct {
		name string
		id   string
		spki []byte
		want bool
	}{
		{"scep.Client, scepclient: base64 SHA-1 of the SubjectPublicKeyInfo", base64.StdEncoding.EncodeToString(s1[:]), spki, true},
		{"hex SHA-1, upper case", strings.ToUpper(hex.EncodeToString(s1[:])), spki, true},
		{"certmonger: decimal SHA-256", new(big.Int).SetBytes(s256[:]).String(), spki, true},
		{"URL base64 SHA-512, unpadded", base64.RawURLEncoding.EncodeToString(s512[:]), spki, true},
		{"hex MD5 of the key bits", hex.EncodeToString(m5[:]), spki, true},
		{"hex SHA-1 of the key bits", hex.EncodeToString(b1[:]), spki, true},
		{"another key", base64.StdEncoding.EncodeToString(s1[:]), other, false},
		{"a random transactionID", "hostile-0123456789abcdef", spki, false},
		{"a prefix of the digest", hex.EncodeToString(s1[:8]), spki, false},
		{"empty", "", spki, false},
		{"no key", base64.StdEncoding.EncodeToString(s1[:]), nil, false},
		{"too long to be a digest", strings.Repeat("a", 200), spki, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.want, namesKey(c.id, c.spki))
		})
	}
}
