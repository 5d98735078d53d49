package hostile

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

var oidSHA224WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 14}

// resignCSR signs the certificationRequestInfo of csr again with key, under the
// signature algorithm oid and its hash h (RFC 2986: the CSR is the info, the
// algorithm and the signature), for algorithms crypto/x509 will not sign with.
func resignCSR(t testing.TB, csr []byte, key *rsa.PrivateKey, oid asn1.ObjectIdentifier, h crypto.Hash) []byte {
	t.Helper()
	in := cryptobyte.String(csr)
	var body, info cryptobyte.String
	require.True(t, in.ReadASN1(&body, cbasn1.SEQUENCE))
	require.True(t, body.ReadASN1Element(&info, cbasn1.SEQUENCE))
	d := h.New()
	d.Write(info)
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, h, d.Sum(nil))
	require.NoError(t, err)
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(info)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
			b.AddASN1NULL()
		})
		b.AddASN1BitString(sig)
	})
	out, err := b.Bytes()
	require.NoError(t, err)
	return out
}
