package hostile

// Hand-built CMS for hostile messages. Everything here is written with cryptobyte from
// RFC 5652 and RFC 8894 so that each field can be bent on its own; nothing goes through
// scepkit's own builders, so a bug shared by scepkit's encoder and decoder cannot hide.

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"math/big"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

var (
	oidData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidSignedData    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidEnvelopedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3}

	oidContentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidMessageDigest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}

	oidMessageType   = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 2}
	oidSenderNonce   = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 5}
	oidTransactionID = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 7}

	oidMD5    = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 5}
	oidSHA1   = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}

	oidRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidMD5WithRSA    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 4}
	oidSHA1WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}
	oidSHA256WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}

	oidAES256CBC = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidDESCBC    = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 7}
	oidRC2CBC    = asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 2}
)

// attr is one CMS Attribute: its type and the DER of each of its values.
type attr struct {
	oid    asn1.ObjectIdentifier
	values [][]byte
}

func der(f func(b *cryptobyte.Builder)) []byte {
	var b cryptobyte.Builder
	f(&b)
	return b.BytesOrPanic()
}

func printable(s string) []byte {
	return der(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.PrintableString, func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
	})
}

func utf8String(s string) []byte {
	return der(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
	})
}

func octets(v []byte) []byte {
	return der(func(b *cryptobyte.Builder) { b.AddASN1OctetString(v) })
}

func oidValue(o asn1.ObjectIdentifier) []byte {
	return der(func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(o) })
}

func algID(b *cryptobyte.Builder, o asn1.ObjectIdentifier, params []byte) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(o)
		if params != nil {
			b.AddBytes(params)
		}
	})
}

var asn1Null = []byte{0x05, 0x00}

func (a attr) encode() []byte {
	return der(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(a.oid)
			b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
				for _, v := range a.values {
					b.AddBytes(v)
				}
			})
		})
	})
}

// scepAttrs are the three SCEP attributes every request carries.
func scepAttrs(typ, tid string, nonce []byte) []attr {
	return []attr{
		{oidMessageType, [][]byte{printable(typ)}},
		{oidTransactionID, [][]byte{printable(tid)}},
		{oidSenderNonce, [][]byte{octets(nonce)}},
	}
}

// signOpts describes a PKIMessage (CMS SignedData) to build.
type signOpts struct {
	content []byte // the pkcsPKIEnvelope; nil means no eContent
	attrs   []attr // SCEP attributes; contentType and messageDigest are added
	cert    *x509.Certificate
	key     crypto.Signer
	hash    crypto.Hash // SHA-256 when zero; SHA-1 and MD5 for hostile cases

	contentTypeAttr asn1.ObjectIdentifier // contentType attribute value; id-data when nil
	digestOverride  []byte                // messageDigest value instead of the content's digest
	omitCerts       bool                  // no certificates field
	extraCerts      [][]byte              // raw elements added to the certificates field
	unsorted        bool                  // signed attributes left in the order given (not DER SET OF order)
	twoSigners      bool                  // the SignerInfo twice
	flipSignature   bool                  // corrupt one bit of the signature
}

func hashInfo(h crypto.Hash) (digestOID, sigOID asn1.ObjectIdentifier, sum func([]byte) []byte) {
	switch h {
	case crypto.MD5:
		return oidMD5, oidMD5WithRSA, func(b []byte) []byte { s := md5.Sum(b); return s[:] }
	case crypto.SHA1:
		return oidSHA1, oidSHA1WithRSA, func(b []byte) []byte { s := sha1.Sum(b); return s[:] }
	}
	return oidSHA256, oidSHA256WithRSA, func(b []byte) []byte { s := sha256.Sum256(b); return s[:] }
}

// signedData builds a ContentInfo holding a SignedData with one RSA signer.
func signedData(t testing.TB, o signOpts) []byte {
	t.Helper()
	digestOID, sigOID, sum := hashInfo(o.hash)
	h := o.hash
	if h == 0 {
		h = crypto.SHA256
	}
	ct := o.contentTypeAttr
	if ct == nil {
		ct = oidData
	}
	md := o.digestOverride
	if md == nil {
		md = sum(o.content)
	}
	all := append([]attr{{oidContentType, [][]byte{oidValue(ct)}}, {oidMessageDigest, [][]byte{octets(md)}}}, o.attrs...)
	enc := make([][]byte, len(all))
	for i, a := range all {
		enc[i] = a.encode()
	}
	if !o.unsorted {
		sort.Slice(enc, func(i, j int) bool { return bytes.Compare(enc[i], enc[j]) < 0 })
	}
	body := bytes.Join(enc, nil)
	setDER := der(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(body) })
	})
	sig, err := o.key.Sign(rand.Reader, sum(setDER), h)
	require.NoError(t, err)
	if o.flipSignature {
		sig[len(sig)/2] ^= 0x01
	}
	signerInfo := der(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(1)
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddBytes(o.cert.RawIssuer)
				b.AddASN1BigInt(o.cert.SerialNumber)
			})
			algID(b, digestOID, asn1Null)
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(body) })
			algID(b, sigOID, asn1Null)
			b.AddASN1OctetString(sig)
		})
	})
	return der(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidSignedData)
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1Int64(1)
					b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { algID(b, digestOID, asn1Null) })
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(oidData)
						if o.content != nil {
							b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
								b.AddASN1OctetString(o.content)
							})
						}
					})
					if !o.omitCerts {
						b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
							b.AddBytes(o.cert.Raw)
							for _, c := range o.extraCerts {
								b.AddBytes(c)
							}
						})
					}
					b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
						b.AddBytes(signerInfo)
						if o.twoSigners {
							b.AddBytes(signerInfo)
						}
					})
				})
			})
		})
	})
}

// indefinite rewrites the outer layers of a DER ContentInfo (the ContentInfo, its [0]
// and the SignedData) in BER indefinite-length form, as some clients stream them.
// Everything inside the SignedData keeps its DER.
func indefinite(t testing.TB, msg []byte) []byte {
	t.Helper()
	var rewrap func(elem []byte, depth int) []byte
	rewrap = func(elem []byte, depth int) []byte {
		s := cryptobyte.String(elem)
		var content cryptobyte.String
		var tag cbasn1.Tag
		require.True(t, s.ReadAnyASN1(&content, &tag))
		out := []byte{byte(tag), 0x80}
		for !content.Empty() {
			var child cryptobyte.String
			var ctag cbasn1.Tag
			require.True(t, content.ReadAnyASN1Element(&child, &ctag))
			if (depth == 0 && ctag == cbasn1.Tag(0).Constructed().ContextSpecific()) ||
				(depth == 1 && ctag == cbasn1.SEQUENCE) {
				out = append(out, rewrap(child, depth+1)...)
			} else {
				out = append(out, child...)
			}
		}
		return append(out, 0, 0)
	}
	return rewrap(msg, 0)
}

// envOpts describes a pkcsPKIEnvelope (CMS EnvelopedData with one key-transport
// recipient) to build.
type envOpts struct {
	to         *x509.Certificate     // recipient identified by issuer and serial, RSA key wrapped to it
	cipherOID  asn1.ObjectIdentifier // AES-256-CBC when nil
	params     []byte                // DER of the cipher parameters; OCTET STRING IV when nil
	wrapped    []byte                // encryptedKey instead of the RSA-wrapped content key
	ciphertext []byte                // encryptedContent, as is
}

func envelopedData(o envOpts) []byte {
	return der(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidEnvelopedData)
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1Int64(0)
					b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1Int64(0)
							b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
								b.AddBytes(o.to.RawIssuer)
								b.AddASN1BigInt(o.to.SerialNumber)
							})
							algID(b, oidRSAEncryption, asn1Null)
							b.AddASN1OctetString(o.wrapped)
						})
					})
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(oidData)
						algID(b, o.cipherOID, o.params)
						b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) {
							b.AddBytes(o.ciphertext)
						})
					})
				})
			})
		})
	})
}

// sealed is the material of an envelope before it is assembled, so cases can bend it.
type sealed struct {
	key, iv, plaintext []byte
}

// pad applies PKCS#7 padding (RFC 5652 §6.3).
func pad(b []byte, block int) []byte {
	n := block - len(b)%block
	return append(append([]byte(nil), b...), bytes.Repeat([]byte{byte(n)}, n)...)
}

func cbcEncrypt(t testing.TB, blk cipher.Block, iv, padded []byte) []byte {
	t.Helper()
	require.Zero(t, len(padded)%blk.BlockSize())
	out := make([]byte, len(padded))
	cipher.NewCBCEncrypter(blk, iv).CryptBlocks(out, padded)
	return out
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

func wrapKey(t testing.TB, to *x509.Certificate, key []byte) []byte {
	t.Helper()
	w, err := rsa.EncryptPKCS1v15(rand.Reader, to.PublicKey.(*rsa.PublicKey), key)
	require.NoError(t, err)
	return w
}

// aesEnvelope encrypts padded (already padded, a multiple of 16 bytes) with AES-256-CBC
// to cert; wrappedKey, when set, replaces the RSA-wrapped key.
func aesEnvelope(t testing.TB, to *x509.Certificate, padded []byte) []byte {
	t.Helper()
	key, iv := randBytes(32), randBytes(16)
	blk, err := aes.NewCipher(key)
	require.NoError(t, err)
	return envelopedData(envOpts{to: to, cipherOID: oidAES256CBC, params: octets(iv),
		wrapped: wrapKey(t, to, key), ciphertext: cbcEncrypt(t, blk, iv, padded)})
}

// goodEnvelope is a correct AES-256-CBC envelope of content for to.
func goodEnvelope(t testing.TB, to *x509.Certificate, content []byte) []byte {
	return aesEnvelope(t, to, pad(content, aes.BlockSize))
}

// desEnvelope is a correct single-DES envelope (legacy; refused unless allowed).
func desEnvelope(t testing.TB, to *x509.Certificate, content []byte) []byte {
	t.Helper()
	key, iv := randBytes(8), randBytes(8)
	blk, err := des.NewCipher(key)
	require.NoError(t, err)
	return envelopedData(envOpts{to: to, cipherOID: oidDESCBC, params: octets(iv),
		wrapped: wrapKey(t, to, key), ciphertext: cbcEncrypt(t, blk, iv, pad(content, des.BlockSize))})
}

// rc2Envelope names RC2-CBC (RFC 8018 B.2.3: RC2-CBC-Parameter ::= SEQUENCE {
// rc2ParameterVersion INTEGER, iv OCTET STRING(SIZE(8)) }; version 58 means a 128-bit
// effective key). The ciphertext is random: the algorithm must be refused before any
// key is used.
func rc2Envelope(t testing.TB, to *x509.Certificate, n int) []byte {
	params := der(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(58)
			b.AddASN1OctetString(randBytes(8))
		})
	})
	return envelopedData(envOpts{to: to, cipherOID: oidRC2CBC, params: params,
		wrapped: wrapKey(t, to, randBytes(16)), ciphertext: randBytes((n/8 + 1) * 8)})
}

// issuerAndSerial is the payload of GetCert and GetCRL.
func issuerAndSerial(issuer []byte, serial *big.Int) []byte {
	return der(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddBytes(issuer)
			b.AddASN1BigInt(serial)
		})
	})
}

// issuerAndSubject is the payload of CertPoll.
func issuerAndSubject(issuer, subject []byte) []byte {
	return der(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddBytes(issuer)
			b.AddBytes(subject)
		})
	})
}
