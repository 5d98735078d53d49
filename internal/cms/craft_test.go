package cms

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// crafted describes an EnvelopedData to build byte by byte, so that tests
// can produce what Encrypt never would.
type crafted struct {
	version     int64
	bare        bool     // no ContentInfo wrapper
	ris         [][]byte // RecipientInfo elements, in order
	cipherAlg   []byte   // contentEncryptionAlgorithm DER
	ct          []byte
	noContent   bool
	segmentSize int    // >0: constructed encryptedContent in segments of this size
	contentElem []byte // if set, the whole encryptedContent element, verbatim
}

func (c crafted) der(tb testing.TB) []byte {
	tb.Helper()
	var b cryptobyte.Builder
	ed := func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(c.version)
			b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
				for _, ri := range c.ris {
					b.AddBytes(ri)
				}
			})
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(oidData)
				b.AddBytes(c.cipherAlg)
				switch {
				case c.contentElem != nil:
					b.AddBytes(c.contentElem)
				case c.noContent:
				case c.segmentSize > 0:
					b.AddASN1(tagCtx0Cons, func(b *cryptobyte.Builder) {
						for rest := c.ct; len(rest) > 0; {
							n := min(c.segmentSize, len(rest))
							b.AddASN1OctetString(rest[:n])
							rest = rest[n:]
						}
					})
				default:
					b.AddASN1(tagCtx0Prim, func(b *cryptobyte.Builder) { b.AddBytes(c.ct) })
				}
			})
		})
	}
	if c.bare {
		ed(&b)
	} else {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidEnvelopedData)
			b.AddASN1(tagCtx0Cons, ed)
		})
	}
	out, err := b.Bytes()
	require.NoError(tb, err)
	return out
}

func algID(tb testing.TB, oid asn1.ObjectIdentifier, params []byte) []byte {
	tb.Helper()
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		if params != nil {
			b.AddBytes(params)
		}
	})
	out, err := b.Bytes()
	require.NoError(tb, err)
	return out
}

func octetString(tb testing.TB, v []byte) []byte {
	tb.Helper()
	var b cryptobyte.Builder
	b.AddASN1OctetString(v)
	out, err := b.Bytes()
	require.NoError(tb, err)
	return out
}

func cbcAlgID(tb testing.TB, c ContentCipher, iv []byte) []byte {
	return algID(tb, c.OID(), octetString(tb, iv))
}

// ktriDER builds a KeyTransRecipientInfo for cert with the given
// keyEncryptionAlgorithm DER and encryptedKey.
func ktriDER(tb testing.TB, cert *x509.Certificate, bySKI bool, keyAlg, ek []byte) []byte {
	tb.Helper()
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		if bySKI {
			b.AddASN1Int64(2)
			b.AddASN1(tagCtx0Prim, func(b *cryptobyte.Builder) { b.AddBytes(cert.SubjectKeyId) })
		} else {
			b.AddASN1Int64(0)
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddBytes(cert.RawIssuer)
				b.AddASN1BigInt(cert.SerialNumber)
			})
		}
		b.AddBytes(keyAlg)
		b.AddASN1OctetString(ek)
	})
	out, err := b.Bytes()
	require.NoError(tb, err)
	return out
}

// keyAlgDER returns the keyEncryptionAlgorithm DER that Encrypt writes.
func keyAlgDER(tb testing.TB, kt KeyTransport) []byte {
	tb.Helper()
	var b cryptobyte.Builder
	addKeyTransportAlgorithm(&b, kt)
	out, err := b.Bytes()
	require.NoError(tb, err)
	return out
}

// wrap encrypts key to cert's RSA key with kt.
func wrap(tb testing.TB, cert *x509.Certificate, key []byte, kt KeyTransport) []byte {
	tb.Helper()
	pub := cert.PublicKey.(*rsa.PublicKey)
	var ek []byte
	var err error
	switch kt {
	case RSAPKCS1v15:
		ek, err = rsa.EncryptPKCS1v15(rand.Reader, pub, key)
	case RSAOAEPSHA1:
		ek, err = rsa.EncryptOAEP(sha1New(), rand.Reader, pub, key, nil)
	case RSAOAEPSHA256:
		ek, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, key, nil)
	}
	require.NoError(tb, err)
	return ek
}

// rawCBC encrypts plaintext (already a block multiple, padding as chosen by
// the test) with CBC.
func rawCBC(tb testing.TB, c ContentCipher, key, iv, plaintext []byte) []byte {
	tb.Helper()
	var block cipher.Block
	var err error
	switch c {
	case DESCBC:
		block, err = des.NewCipher(key)
	case DESEDE3CBC:
		block, err = des.NewTripleDESCipher(key)
	default:
		block, err = aes.NewCipher(key)
	}
	require.NoError(tb, err)
	require.Zero(tb, len(plaintext)%block.BlockSize())
	out := make([]byte, len(plaintext))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(out, plaintext)
	return out
}

// envelopeFor builds a single-recipient envelope to cert whose decrypted
// (still padded) content is plaintext.
func envelopeFor(tb testing.TB, cert *x509.Certificate, c ContentCipher, kt KeyTransport, plaintext []byte) []byte {
	tb.Helper()
	key := make([]byte, c.KeySize())
	iv := make([]byte, c.BlockSize())
	_, _ = rand.Read(key)
	_, _ = rand.Read(iv)
	return crafted{
		ris:       [][]byte{ktriDER(tb, cert, false, keyAlgDER(tb, kt), wrap(tb, cert, key, kt))},
		cipherAlg: cbcAlgID(tb, c, iv),
		ct:        rawCBC(tb, c, key, iv, plaintext),
	}.der(tb)
}
