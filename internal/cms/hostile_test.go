package cms

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"io"
	"math/big"
	"math/bits"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// block returns n bytes of value v.
func fill(n int, v byte) []byte { return bytes.Repeat([]byte{v}, n) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// TestCBCPadding checks RFC 5652 §6.3 padding on crafted plaintexts: every
// bad padding is exactly ErrDecrypt, whatever the cipher and key transport.
func TestCBCPadding(t *testing.T) {
	t.Parallel()
	f := fixtures(t)
	for _, c := range []ContentCipher{AES128CBC, AES256CBC, DESEDE3CBC, DESCBC} {
		bs := c.BlockSize()
		tests := []struct {
			name      string
			plaintext []byte
			want      []byte // nil: ErrDecrypt
		}{
			{"pad 1", cat(fill(bs-1, 'a'), []byte{1}), fill(bs-1, 'a')},
			{"full pad block", cat(fill(bs, 'a'), fill(bs, byte(bs))), fill(bs, 'a')},
			{"pad equals whole content", fill(bs, byte(bs)), []byte{}},
			{"pad 0", cat(fill(bs-1, 'a'), []byte{0}), nil},
			{"pad blocksize+1", cat(fill(bs, 'a'), fill(bs, byte(bs+1))), nil},
			{"pad 255", fill(2*bs, 0xff), nil},
			{"pad 128", fill(bs, 0x80), nil},
			{"inconsistent pad bytes", cat(fill(bs-3, 'a'), []byte{3, 2, 3}), nil},
			{"inconsistent first pad byte", cat(fill(bs, 'a'), []byte{7}, fill(bs-1, byte(bs))), nil},
			{"pad longer than content", cat(fill(bs-2, 2), []byte{byte(bs), byte(bs)}), nil},
		}
		for _, kt := range allTransports {
			for _, tc := range tests {
				t.Run(c.String()+"/"+kt.String()+"/"+tc.name, func(t *testing.T) {
					t.Parallel()
					der := envelopeFor(t, f.recipientCert, c, kt, tc.plaintext)
					got, gotC, err := Decrypt(der, f.us(), DecryptOptions{AllowDES: true})
					require.Equal(t, c, gotC)
					if tc.want == nil {
						require.True(t, err == ErrDecrypt, "err = %v", err)
						require.Nil(t, got)
						return
					}
					require.NoError(t, err)
					require.Equal(t, tc.want, got)
				})
			}
		}
	}
}

// TestDecryptFailuresAreUniform covers every failure after the recipient was
// found: each must be exactly ErrDecrypt, with no wrapped detail.
func TestDecryptFailuresAreUniform(t *testing.T) {
	t.Parallel()
	f := fixtures(t)
	// The content key and IV are fixed too: with a random content (a new key and IV
	// each run), the fixed substitute key below decrypted it to valid padding about
	// one run in 256, and the four cases that use it failed together.
	key := fill(32, 0x5c)
	iv := fill(16, 0x36)
	good := rawCBC(t, AES256CBC, key, iv, cat([]byte("hello, world"), fill(4, 4)))
	alg := cbcAlgID(t, AES256CBC, iv)
	ri := func(kt KeyTransport, k []byte) [][]byte {
		return [][]byte{ktriDER(t, f.recipientCert, false, keyAlgDER(t, kt), wrap(t, f.recipientCert, k, kt))}
	}
	// A fixed substitute-key source makes the PKCS#1 v1.5 implicit rejection
	// reproducible (a random key passes the padding check 1 time in ~256).
	fixed := func() DecryptOptions { return DecryptOptions{Rand: &fixedReader{n: 7}} }

	tests := []struct {
		name string
		der  func() []byte
		rcp  func() []Recipient
		opts func() DecryptOptions
	}{
		{"control: succeeds", nil, nil, nil}, // checked separately below
		{"truncated ciphertext", func() []byte {
			return crafted{ris: ri(RSAPKCS1v15, key), cipherAlg: alg, ct: good[:15]}.der(t)
		}, nil, nil},
		{"ciphertext not a block multiple", func() []byte {
			return crafted{ris: ri(RSAOAEPSHA256, key), cipherAlg: alg, ct: cat(good, []byte{1})}.der(t)
		}, nil, nil},
		{"empty ciphertext", func() []byte {
			return crafted{ris: ri(RSAOAEPSHA1, key), cipherAlg: alg, ct: []byte{}}.der(t)
		}, nil, nil},
		{"absent ciphertext", func() []byte {
			return crafted{ris: ri(RSAOAEPSHA1, key), cipherAlg: alg, noContent: true}.der(t)
		}, nil, nil},
		{"PKCS1v15 wrapped key too short", func() []byte {
			return crafted{ris: ri(RSAPKCS1v15, key[:16]), cipherAlg: alg, ct: good}.der(t)
		}, nil, fixed},
		{"PKCS1v15 wrapped key too long", func() []byte {
			return crafted{ris: ri(RSAPKCS1v15, cat(key, key)), cipherAlg: alg, ct: good}.der(t)
		}, nil, fixed},
		{"OAEP wrapped key too short", func() []byte {
			return crafted{ris: ri(RSAOAEPSHA1, key[:24]), cipherAlg: alg, ct: good}.der(t)
		}, nil, nil},
		{"OAEP-SHA256 wrapped key empty", func() []byte {
			return crafted{ris: ri(RSAOAEPSHA256, []byte{}), cipherAlg: alg, ct: good}.der(t)
		}, nil, nil},
		{"encryptedKey shorter than the modulus", func() []byte {
			ek := wrap(t, f.recipientCert, key, RSAPKCS1v15)
			for ek[0] == 0 { // ek[1:] would be the same number, and unwrap the key
				ek = wrap(t, f.recipientCert, key, RSAPKCS1v15)
			}
			return crafted{ris: [][]byte{ktriDER(t, f.recipientCert, false, keyAlgDER(t, RSAPKCS1v15), ek[1:])}, cipherAlg: alg, ct: good}.der(t)
		}, nil, fixed},
		{"encryptedKey longer than the modulus", func() []byte {
			ek := wrap(t, f.recipientCert, key, RSAOAEPSHA1)
			return crafted{ris: [][]byte{ktriDER(t, f.recipientCert, false, keyAlgDER(t, RSAOAEPSHA1), cat(ek, []byte{0}))}, cipherAlg: alg, ct: good}.der(t)
		}, nil, nil},
		{"encryptedKey empty", func() []byte {
			return crafted{ris: [][]byte{ktriDER(t, f.recipientCert, false, keyAlgDER(t, RSAPKCS1v15), nil)}, cipherAlg: alg, ct: good}.der(t)
		}, nil, fixed},
		{"encryptedKey all 0xff (>= modulus)", func() []byte {
			return crafted{ris: [][]byte{ktriDER(t, f.recipientCert, false, keyAlgDER(t, RSAPKCS1v15), fill(256, 0xff))}, cipherAlg: alg, ct: good}.der(t)
		}, nil, fixed},
		{"PKCS1v15 key transport but OAEP-wrapped key", func() []byte {
			ek := wrap(t, f.recipientCert, key, RSAOAEPSHA1)
			return crafted{ris: [][]byte{ktriDER(t, f.recipientCert, false, keyAlgDER(t, RSAPKCS1v15), ek)}, cipherAlg: alg, ct: good}.der(t)
		}, nil, fixed},
		{"OAEP-SHA256 label but SHA1 wrapped", func() []byte {
			ek := wrap(t, f.recipientCert, key, RSAOAEPSHA1)
			return crafted{ris: [][]byte{ktriDER(t, f.recipientCert, false, keyAlgDER(t, RSAOAEPSHA256), ek)}, cipherAlg: alg, ct: good}.der(t)
		}, nil, nil},
		{"wrong recipient key PKCS1v15", nil, func() []Recipient {
			return []Recipient{{Certificate: f.recipientCert, Key: f.otherKey}}
		}, fixed},
		{"wrong recipient key OAEP", func() []byte {
			return crafted{ris: ri(RSAOAEPSHA256, key), cipherAlg: alg, ct: good}.der(t)
		}, func() []Recipient {
			return []Recipient{{Certificate: f.recipientCert, Key: f.otherKey}}
		}, nil},
		{"Decrypter fails", nil, func() []Recipient {
			return []Recipient{{Certificate: f.recipientCert, Key: decrypterFunc{f.recipientKey.Public(), func([]byte, crypto.DecrypterOpts) ([]byte, error) {
				return nil, errors.New("hsm: unavailable")
			}}}}
		}, nil},
		{"Decrypter returns a short key", nil, func() []Recipient {
			return []Recipient{{Certificate: f.recipientCert, Key: decrypterFunc{f.recipientKey.Public(), func([]byte, crypto.DecrypterOpts) ([]byte, error) {
				return key[:31], nil
			}}}}
		}, nil},
		{"Decrypter ignores SessionKeyLen and fails on padding", nil, func() []Recipient {
			return []Recipient{{Certificate: f.recipientCert, Key: decrypterFunc{f.recipientKey.Public(), func(ct []byte, _ crypto.DecrypterOpts) ([]byte, error) {
				return f.otherKey.Decrypt(nil, ct, nil)
			}}}}
		}, nil},
		{"substitute-key randomness fails", nil, nil, func() DecryptOptions {
			return DecryptOptions{Rand: io.LimitReader(rand.Reader, 0)}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			der := crafted{ris: ri(RSAPKCS1v15, key), cipherAlg: alg, ct: good}.der(t)
			if tc.der != nil {
				der = tc.der()
			}
			rcp := f.us()
			if tc.rcp != nil {
				rcp = tc.rcp()
			}
			var opts DecryptOptions
			if tc.opts != nil {
				opts = tc.opts()
			}
			got, c, err := Decrypt(der, rcp, opts)
			if tc.der == nil && tc.rcp == nil && tc.opts == nil {
				require.NoError(t, err)
				require.Equal(t, []byte("hello, world"), got)
				return
			}
			require.Equal(t, AES256CBC, c)
			require.True(t, err == ErrDecrypt, "err = %#v", err)
			require.Nil(t, got)
		})
	}
}

func TestUnsupportedAlgorithms(t *testing.T) {
	t.Parallel()
	f := fixtures(t)
	key := fill(32, 9)
	ct := fill(32, 1)
	iv8, iv16 := fill(8, 2), fill(16, 2)
	rc2Params := func() []byte { // RC2-CBCParameter ::= SEQUENCE { rc2ParameterVersion, iv }
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(58)
			b.AddASN1OctetString(iv8)
		})
		return b.BytesOrPanic()
	}
	oaep := func(hash, mgfHash asn1.ObjectIdentifier) []byte {
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidRSAESOAEP)
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(tagCtx0Cons, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(hash) })
				})
				b.AddASN1(tagCtx1Cons, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(oidMGF1)
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(mgfHash) })
					})
				})
			})
		})
		return b.BytesOrPanic()
	}
	sha384 := asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	aesAlg := cbcAlgID(t, AES256CBC, iv16)
	us := func(keyAlg []byte) [][]byte {
		return [][]byte{ktriDER(t, f.recipientCert, false, keyAlg, fill(256, 3))}
	}
	tests := []struct {
		name    string
		der     []byte
		opts    DecryptOptions
		wantOID asn1.ObjectIdentifier
		role    string
	}{
		{"RC2", crafted{ris: us(keyAlgDER(t, RSAPKCS1v15)), cipherAlg: algID(t, oidRC2CBC, rc2Params()), ct: ct}.der(t), DecryptOptions{AllowDES: true}, oidRC2CBC, "content encryption"},
		{"unknown cipher (AES-256-GCM)", crafted{ris: us(keyAlgDER(t, RSAPKCS1v15)), cipherAlg: algID(t, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 46}, octetString(t, iv16)), ct: ct}.der(t), DecryptOptions{}, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 46}, "content encryption"},
		{"DES without AllowDES", crafted{ris: us(keyAlgDER(t, RSAPKCS1v15)), cipherAlg: cbcAlgID(t, DESCBC, iv8), ct: ct}.der(t), DecryptOptions{}, oidDESCBC, "content encryption"},
		{"OAEP SHA-384", crafted{ris: us(oaep(sha384, sha384)), cipherAlg: aesAlg, ct: ct}.der(t), DecryptOptions{}, sha384, "OAEP hash"},
		{"OAEP SHA-256 with MGF1-SHA-1", crafted{ris: us(oaep(oidSHA256, oidSHA1)), cipherAlg: aesAlg, ct: ct}.der(t), DecryptOptions{}, oidSHA1, "OAEP mask generation"},
		{"RSASSA-PSS as key transport", crafted{ris: us(algID(t, asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}, nil)), cipherAlg: aesAlg, ct: ct}.der(t), DecryptOptions{}, asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}, "key transport"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := Decrypt(tc.der, f.us(), tc.opts)
			require.ErrorIs(t, err, ErrUnsupportedAlgorithm)
			var ae *AlgorithmError
			require.ErrorAs(t, err, &ae)
			require.Equal(t, tc.role, ae.Role)
			require.True(t, tc.wantOID.Equal(ae.OID), "OID %v", ae.OID)
			require.NotErrorIs(t, err, ErrDecrypt)
			require.NotErrorIs(t, err, ErrMalformed)
		})
	}

	t.Run("AuthEnvelopedData (AES-GCM)", func(t *testing.T) {
		t.Parallel()
		// It was "malformed", which scep answers badRequest; RFC 8894 §3.2.1.4 has
		// badAlg for an unsupported algorithm.
		oid := asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 23}
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
			b.AddASN1(tagCtx0Cons, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1Int64(0) })
			})
		})
		_, _, err := Decrypt(b.BytesOrPanic(), f.us(), DecryptOptions{})
		require.ErrorIs(t, err, ErrUnsupportedAlgorithm)
		require.NotErrorIs(t, err, ErrMalformed)
		var ae *AlgorithmError
		require.ErrorAs(t, err, &ae)
		require.True(t, oid.Equal(ae.OID))
	})
	t.Run("DES allowed", func(t *testing.T) {
		t.Parallel()
		der, err := Encrypt(nil, []byte("legacy"), []*x509.Certificate{f.recipientCert}, DESCBC, RSAPKCS1v15)
		require.NoError(t, err)
		_, _, err = Decrypt(der, f.us(), DecryptOptions{})
		require.ErrorIs(t, err, ErrUnsupportedAlgorithm)
		got, c, err := Decrypt(der, f.us(), DecryptOptions{AllowDES: true})
		require.NoError(t, err)
		require.Equal(t, DESCBC, c)
		require.Equal(t, []byte("legacy"), got)
	})
	t.Run("unsupported key transport of ours skipped for a supported one", func(t *testing.T) {
		t.Parallel()
		der := crafted{
			ris: [][]byte{
				ktriDER(t, f.recipientCert, false, oaep(sha384, sha384), fill(256, 3)),
				ktriDER(t, f.recipientCert, true, keyAlgDER(t, RSAOAEPSHA1), wrap(t, f.recipientCert, key, RSAOAEPSHA1)),
			},
			cipherAlg: aesAlg, ct: rawCBC(t, AES256CBC, key, iv16, fill(16, 16)),
		}.der(t)
		got, _, err := Decrypt(der, f.us(), DecryptOptions{})
		require.NoError(t, err)
		require.Empty(t, got)
	})
	_ = key
}

func TestRecipientSelection(t *testing.T) {
	t.Parallel()
	f := fixtures(t)
	content := []byte("certificate signing request")

	t.Run("several recipients, one ours", func(t *testing.T) {
		t.Parallel()
		der, err := Encrypt(nil, content, []*x509.Certificate{f.otherCert, f.vectorCA, f.recipientCert}, AES256CBC, RSAOAEPSHA256)
		require.NoError(t, err)
		env, err := Parse(der)
		require.NoError(t, err)
		require.Len(t, env.Recipients, 3)
		got, err := env.Decrypt(f.us(), DecryptOptions{})
		require.NoError(t, err)
		require.Equal(t, content, got)
		// Each recipient can decrypt with its own key.
		got, err = env.Decrypt([]Recipient{{Certificate: f.otherCert, Key: f.otherKey}}, DecryptOptions{})
		require.NoError(t, err)
		require.Equal(t, content, got)
	})
	t.Run("by subject key identifier", func(t *testing.T) {
		t.Parallel()
		for _, kt := range allTransports {
			der, err := EncryptWithOptions(nil, content, []*x509.Certificate{f.otherCert, f.recipientCert}, AES128CBC, kt, EncryptOptions{SubjectKeyID: true})
			require.NoError(t, err)
			env, err := Parse(der)
			require.NoError(t, err)
			require.Equal(t, 2, env.Version)
			for _, ri := range env.Recipients {
				require.Equal(t, 2, ri.Version)
				require.Nil(t, ri.IssuerAndSerial)
				require.NotEmpty(t, ri.SubjectKeyID)
			}
			got, err := env.Decrypt(f.us(), DecryptOptions{})
			require.NoError(t, err)
			require.Equal(t, content, got)
		}
	})
	t.Run("SKI requested but certificate has none", func(t *testing.T) {
		t.Parallel()
		noSKI := *f.recipientCert
		noSKI.SubjectKeyId = nil
		_, err := EncryptWithOptions(nil, content, []*x509.Certificate{&noSKI}, AES128CBC, RSAPKCS1v15, EncryptOptions{SubjectKeyID: true})
		require.Error(t, err)
	})

	der, err := Encrypt(nil, content, []*x509.Certificate{f.otherCert}, AES256CBC, RSAPKCS1v15)
	require.NoError(t, err)
	sameIssuerOtherSerial := *f.recipientCert
	sameIssuerOtherSerial.SerialNumber = new(big.Int).Add(f.recipientCert.SerialNumber, big.NewInt(1))
	otherIssuer := *f.otherCert
	otherIssuer.RawIssuer = f.recipientCert.RawIssuer

	kari := []byte{0xa1, 0x03, 0x02, 0x01, 0x03} // [1] { INTEGER 3 }, opaque to us
	kekri := []byte{0xa2, 0x03, 0x02, 0x01, 0x04}
	aesKey, iv := fill(32, 5), fill(16, 6)
	withOthers := crafted{
		version: 2,
		ris: [][]byte{kari, kekri,
			ktriDER(t, f.recipientCert, false, keyAlgDER(t, RSAPKCS1v15), wrap(t, f.recipientCert, aesKey, RSAPKCS1v15))},
		cipherAlg: cbcAlgID(t, AES256CBC, iv),
		ct:        rawCBC(t, AES256CBC, aesKey, iv, cat([]byte("kari skipped"), fill(4, 4))),
	}.der(t)
	onlyOthers := crafted{version: 2, ris: [][]byte{kari, kekri}, cipherAlg: cbcAlgID(t, AES256CBC, iv), ct: fill(16, 0)}.der(t)

	tests := []struct {
		name string
		der  []byte
		rcp  []Recipient
		want []byte // nil: ErrNoRecipient
	}{
		{"encrypted to another certificate", der, f.us(), nil},
		{"no recipients given", der, nil, nil},
		{"same issuer, other serial", der, []Recipient{{Certificate: &sameIssuerOtherSerial, Key: f.otherKey}}, nil},
		{"same serial, other issuer", der, []Recipient{{Certificate: &otherIssuer, Key: f.otherKey}}, nil},
		{"nil key skipped", der, []Recipient{{Certificate: f.otherCert}}, nil},
		{"nil certificate skipped", der, []Recipient{{Key: f.otherKey}}, nil},
		{"other RecipientInfo choices skipped", withOthers, f.us(), []byte("kari skipped")},
		{"only other RecipientInfo choices", onlyOthers, f.us(), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, _, err := Decrypt(tc.der, tc.rcp, DecryptOptions{})
			if tc.want == nil {
				require.ErrorIs(t, err, ErrNoRecipient)
				require.Nil(t, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
	env, err := Parse(withOthers)
	require.NoError(t, err)
	require.Equal(t, 2, env.OtherRecipients)
}

func TestMalformed(t *testing.T) {
	t.Parallel()
	f := fixtures(t)
	valid, err := Encrypt(nil, []byte("x"), []*x509.Certificate{f.recipientCert}, AES128CBC, RSAPKCS1v15)
	require.NoError(t, err)
	iv := fill(16, 1)
	ri := [][]byte{ktriDER(t, f.recipientCert, false, keyAlgDER(t, RSAPKCS1v15), fill(256, 1))}
	withVersion := func(v int64) []byte {
		return crafted{version: v, ris: ri, cipherAlg: cbcAlgID(t, AES128CBC, iv), ct: fill(16, 0)}.der(t)
	}
	dataContentInfo := []byte{0x30, 0x0f, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01, 0xa0, 0x02, 0x04, 0x00}
	tests := []struct {
		name string
		der  []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"garbage", []byte("this is not DER at all")},
		{"zero bytes", make([]byte, 64)},
		{"trailing data", cat(valid, []byte{0})},
		{"id-data ContentInfo", dataContentInfo},
		{"INTEGER", []byte{0x02, 0x01, 0x00}},
		{"empty SEQUENCE", []byte{0x30, 0x00}},
		{"version 5", withVersion(5)},
		{"version -1", withVersion(-1)},
		{"no RecipientInfo", crafted{cipherAlg: cbcAlgID(t, AES128CBC, iv), ct: fill(16, 0)}.der(t)},
		{"IV too short", crafted{ris: ri, cipherAlg: cbcAlgID(t, AES128CBC, iv[:8]), ct: fill(16, 0)}.der(t)},
		{"IV too long", crafted{ris: ri, cipherAlg: cbcAlgID(t, DESEDE3CBC, iv), ct: fill(16, 0)}.der(t)},
		{"IV missing", crafted{ris: ri, cipherAlg: algID(t, oidAES256CBC, nil), ct: fill(16, 0)}.der(t)},
		{"IV not an OCTET STRING", crafted{ris: ri, cipherAlg: algID(t, oidAES256CBC, []byte{0x05, 0x00}), ct: fill(16, 0)}.der(t)},
		{"unknown RecipientInfo tag", crafted{ris: [][]byte{{0x02, 0x01, 0x00}}, cipherAlg: cbcAlgID(t, AES128CBC, iv), ct: fill(16, 0)}.der(t)},
		{"rsaEncryption with parameters", crafted{ris: [][]byte{ktriDER(t, f.recipientCert, false, algID(t, oidRSAEncryption, []byte{0x04, 0x00}), fill(256, 1))}, cipherAlg: cbcAlgID(t, AES128CBC, iv), ct: fill(16, 0)}.der(t)},
		{"OAEP params not a SEQUENCE", crafted{ris: [][]byte{ktriDER(t, f.recipientCert, false, algID(t, oidRSAESOAEP, []byte{0x05, 0x00}), fill(256, 1))}, cipherAlg: cbcAlgID(t, AES128CBC, iv), ct: fill(16, 0)}.der(t)},
		{"OAEP params trailing element", crafted{ris: [][]byte{ktriDER(t, f.recipientCert, false, algID(t, oidRSAESOAEP, []byte{0x30, 0x02, 0x05, 0x00}), fill(256, 1))}, cipherAlg: cbcAlgID(t, AES128CBC, iv), ct: fill(16, 0)}.der(t)},
		{"constructed content with a non-OCTET STRING segment", func() []byte {
			d := crafted{ris: ri, cipherAlg: cbcAlgID(t, AES128CBC, iv), ct: fill(16, 0), segmentSize: 8}.der(t)
			i := bytes.LastIndex(d, []byte{0x04, 0x08})
			d[i] = 0x02
			return d
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env, err := Parse(tc.der)
			require.ErrorIs(t, err, ErrMalformed)
			require.Nil(t, env)
			_, _, err = Decrypt(tc.der, f.us(), DecryptOptions{})
			require.ErrorIs(t, err, ErrMalformed)
		})
	}

	t.Run("every truncation", func(t *testing.T) {
		t.Parallel()
		for n := range len(valid) {
			_, err := Parse(valid[:n])
			require.ErrorIs(t, err, ErrMalformed, "prefix %d", n)
		}
	})
	t.Run("nil Envelope", func(t *testing.T) {
		t.Parallel()
		var env *Envelope
		_, err := env.Decrypt(f.us(), DecryptOptions{})
		require.ErrorIs(t, err, ErrMalformed)
	})
}

// TestMutationsNeverPanic flips and truncates bytes all over a valid
// envelope; every result is either success or one of the four sentinels.
func TestMutationsNeverPanic(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	t.Parallel()
	f := fixtures(t)
	valid, err := Encrypt(nil, fill(40, 'z'), []*x509.Certificate{f.recipientCert}, AES256CBC, RSAOAEPSHA256)
	require.NoError(t, err)
	for i := range valid {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			m := bytes.Clone(valid)
			m[i] ^= x
			_, _, err := Decrypt(m, f.us(), DecryptOptions{})
			if err != nil {
				require.True(t, errors.Is(err, ErrMalformed) || errors.Is(err, ErrUnsupportedAlgorithm) ||
					errors.Is(err, ErrNoRecipient) || err == ErrDecrypt, "byte %d ^ %#x: %v", i, x, err)
			}
		}
	}
}

func TestEncryptErrors(t *testing.T) {
	t.Parallel()
	f := fixtures(t)
	to := []*x509.Certificate{f.recipientCert}
	tests := []struct {
		name      string
		rand      io.Reader
		to        []*x509.Certificate
		c         ContentCipher
		kt        KeyTransport
		algorithm bool
	}{
		{"unknown cipher", nil, to, 0, RSAPKCS1v15, true},
		{"cipher out of range", nil, to, 42, RSAPKCS1v15, true},
		{"unknown key transport", nil, to, AES128CBC, 0, true},
		{"EC recipient", nil, []*x509.Certificate{f.ecCert}, AES128CBC, RSAOAEPSHA256, true},
		{"no recipients", nil, nil, AES128CBC, RSAPKCS1v15, false},
		{"nil certificate", nil, []*x509.Certificate{nil}, AES128CBC, RSAPKCS1v15, false},
		{"failing randomness", io.LimitReader(rand.Reader, 10), to, AES128CBC, RSAPKCS1v15, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			der, err := Encrypt(tc.rand, []byte("x"), tc.to, tc.c, tc.kt)
			require.Error(t, err)
			require.Nil(t, der)
			require.Equal(t, tc.algorithm, errors.Is(err, ErrUnsupportedAlgorithm), "%v", err)
		})
	}
}

func TestEncryptUsesGivenRand(t *testing.T) {
	t.Parallel()
	f := fixtures(t)
	// OAEP and PKCS#1 v1.5 padding may draw from crypto/rand whatever reader
	// is given, so only the content key and IV are compared: the same reader
	// state gives the same IV and ciphertext.
	a, err := Encrypt(&fixedReader{}, []byte("same"), []*x509.Certificate{f.recipientCert}, AES256CBC, RSAOAEPSHA1)
	require.NoError(t, err)
	b, err := Encrypt(&fixedReader{}, []byte("same"), []*x509.Certificate{f.recipientCert}, AES256CBC, RSAOAEPSHA1)
	require.NoError(t, err)
	ea, err := Parse(a)
	require.NoError(t, err)
	eb, err := Parse(b)
	require.NoError(t, err)
	require.Equal(t, ea.IV, eb.IV)
	require.Equal(t, ea.encryptedContent, eb.encryptedContent)
	got, err := ea.Decrypt(f.us(), DecryptOptions{})
	require.NoError(t, err)
	require.Equal(t, []byte("same"), got)
}

func TestStrings(t *testing.T) {
	t.Parallel()
	require.Equal(t, "DES-CBC", DESCBC.String())
	require.Equal(t, "DES-EDE3-CBC", DESEDE3CBC.String())
	require.Equal(t, "AES-128-CBC", AES128CBC.String())
	require.Equal(t, "AES-192-CBC", AES192CBC.String())
	require.Equal(t, "AES-256-CBC", AES256CBC.String())
	require.Equal(t, "unknown(0)", ContentCipher(0).String())
	require.Equal(t, "unknown(-3)", ContentCipher(-3).String())
	require.Equal(t, "unknown(99)", ContentCipher(99).String())
	require.Equal(t, "RSA-PKCS1v15", RSAPKCS1v15.String())
	require.Equal(t, "RSA-OAEP-SHA1", RSAOAEPSHA1.String())
	require.Equal(t, "RSA-OAEP-SHA256", RSAOAEPSHA256.String())
	require.Equal(t, "unknown(0)", KeyTransport(0).String())
	require.Equal(t, "unknown(-1)", KeyTransport(-1).String())
	require.Nil(t, ContentCipher(0).OID())
	require.Zero(t, ContentCipher(7).KeySize())
	require.Zero(t, ContentCipher(-7).BlockSize())
	for _, c := range allCiphers {
		require.Equal(t, c, cipherByOID(c.OID()))
	}
	err := error(&AlgorithmError{Role: "content encryption", OID: oidRC2CBC, Reason: "no"})
	require.ErrorIs(t, err, ErrUnsupportedAlgorithm)
	require.Equal(t, "cms: unsupported content encryption algorithm 1.2.840.113549.3.2: no", err.Error())
}

func TestSetDESParity(t *testing.T) {
	t.Parallel()
	key := make([]byte, 256)
	for i := range key {
		key[i] = byte(i)
	}
	setDESParity(key)
	for i, k := range key {
		require.Equal(t, 1, bits.OnesCount8(k)%2, "byte %d = %#x", i, k)
		require.Equal(t, byte(i)&0xfe, k&0xfe, "byte %d: only the low bit may change", i)
	}
}
