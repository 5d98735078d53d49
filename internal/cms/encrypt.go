package cms

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	cryptorand "crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"slices"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// EncryptOptions configures EncryptWithOptions. The zero value gives what
// Encrypt does.
type EncryptOptions struct {
	// SubjectKeyID identifies recipients by their subject key identifier
	// (KeyTransRecipientInfo version 2) instead of issuer and serial number.
	// Every certificate must then carry that extension.
	SubjectKeyID bool
}

// Encrypt returns the DER of a ContentInfo (contentType id-envelopedData)
// wrapping an EnvelopedData (RFC 5652 §6) that encrypts content with cipher c
// under a fresh key, transported to every certificate in to with kt. Only
// RSA public keys are supported. Recipients are identified by
// issuerAndSerialNumber, so the EnvelopedData version is 0 (§6.1). rand
// (nil: crypto/rand.Reader) supplies the content key and the IV.
func Encrypt(rand io.Reader, content []byte, to []*x509.Certificate, c ContentCipher, kt KeyTransport) ([]byte, error) {
	return EncryptWithOptions(rand, content, to, c, kt, EncryptOptions{})
}

// EncryptWithOptions is Encrypt with options. With opts.SubjectKeyID the
// recipients are identified by subject key identifier and the EnvelopedData
// version is 2 (RFC 5652 §6.1).
func EncryptWithOptions(rand io.Reader, content []byte, to []*x509.Certificate, c ContentCipher, kt KeyTransport, opts EncryptOptions) ([]byte, error) {
	if rand == nil {
		rand = cryptorand.Reader
	}
	ci, ok := c.info()
	if !ok {
		return nil, &AlgorithmError{Role: "content encryption", Reason: "unknown cipher " + c.String()}
	}
	if kt != RSAPKCS1v15 && kt != RSAOAEPSHA1 && kt != RSAOAEPSHA256 {
		return nil, &AlgorithmError{Role: "key transport", Reason: "unknown key transport " + kt.String()}
	}
	if len(to) == 0 {
		return nil, errors.New("cms: no recipient certificates")
	}

	key := make([]byte, ci.keySize)
	if _, err := io.ReadFull(rand, key); err != nil {
		return nil, fmt.Errorf("cms: reading content key: %w", err)
	}
	if c == DESCBC || c == DESEDE3CBC {
		setDESParity(key)
	}
	iv := make([]byte, ci.blockSize)
	if _, err := io.ReadFull(rand, iv); err != nil {
		return nil, fmt.Errorf("cms: reading IV: %w", err)
	}
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
	if err != nil {
		return nil, fmt.Errorf("cms: %v: %w", c, err)
	}
	// PKCS#7 padding, RFC 5652 §6.3: always 1..blockSize octets.
	pad := ci.blockSize - len(content)%ci.blockSize
	ct := make([]byte, len(content)+pad)
	copy(ct, content)
	for i := len(content); i < len(ct); i++ {
		ct[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, ct)

	ris := make([][]byte, 0, len(to))
	for i, cert := range to {
		ri, err := keyTransRecipientInfo(rand, cert, key, kt, opts)
		if err != nil {
			return nil, fmt.Errorf("cms: recipient %d: %w", i, err)
		}
		ris = append(ris, ri)
	}
	// DER: the elements of a SET OF are sorted by their encodings
	// (X.690 §11.6).
	slices.SortFunc(ris, bytes.Compare)

	version := int64(0)
	if opts.SubjectKeyID {
		version = 2 // a RecipientInfo with version 2 (§6.1)
	}
	size := len(ct) + 256 // sized once: no regrowth while building
	for _, ri := range ris {
		size += len(ri)
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, size))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // ContentInfo
		b.AddASN1ObjectIdentifier(oidEnvelopedData)
		b.AddASN1(tagCtx0Cons, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // EnvelopedData
				b.AddASN1Int64(version)
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
					for _, ri := range ris {
						b.AddBytes(ri)
					}
				})
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // EncryptedContentInfo
					b.AddASN1ObjectIdentifier(oidData)
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(ci.oid)
						b.AddASN1OctetString(iv)
					})
					b.AddASN1(tagCtx0Prim, func(b *cryptobyte.Builder) {
						b.AddBytes(ct)
					})
				})
			})
		})
	})
	return b.Bytes()
}

// keyTransRecipientInfo encrypts key for cert and returns the DER of the
// KeyTransRecipientInfo (RFC 5652 §6.2.1).
func keyTransRecipientInfo(rand io.Reader, cert *x509.Certificate, key []byte, kt KeyTransport, opts EncryptOptions) ([]byte, error) {
	if cert == nil {
		return nil, errors.New("nil certificate")
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, &AlgorithmError{Role: "key transport", Reason: fmt.Sprintf("recipient key is %T, not RSA", cert.PublicKey)}
	}
	if opts.SubjectKeyID && len(cert.SubjectKeyId) == 0 {
		return nil, errors.New("certificate has no subject key identifier")
	}
	if !opts.SubjectKeyID && (cert.SerialNumber == nil || len(cert.RawIssuer) == 0) {
		return nil, errors.New("certificate has no issuer or serial number")
	}
	var ek []byte
	var err error
	if kt == RSAPKCS1v15 {
		ek, err = rsa.EncryptPKCS1v15(rand, pub, key)
	} else {
		ek, err = rsa.EncryptOAEP(kt.oaepHash().New(), rand, pub, key, nil)
	}
	if err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		if opts.SubjectKeyID {
			b.AddASN1Int64(2)
			b.AddASN1(tagCtx0Prim, func(b *cryptobyte.Builder) { b.AddBytes(cert.SubjectKeyId) })
		} else {
			b.AddASN1Int64(0)
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // IssuerAndSerialNumber
				b.AddBytes(cert.RawIssuer)
				b.AddASN1BigInt(cert.SerialNumber)
			})
		}
		addKeyTransportAlgorithm(b, kt)
		b.AddASN1OctetString(ek)
	})
	return b.Bytes()
}

// addKeyTransportAlgorithm adds the keyEncryptionAlgorithm AlgorithmIdentifier.
func addKeyTransportAlgorithm(b *cryptobyte.Builder, kt KeyTransport) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		switch kt {
		case RSAPKCS1v15:
			// RFC 3370 §4.2.1: rsaEncryption with NULL parameters.
			b.AddASN1ObjectIdentifier(oidRSAEncryption)
			b.AddASN1NULL()
		case RSAOAEPSHA1:
			// RFC 3560 §3: all defaults, so DER leaves the SEQUENCE empty.
			b.AddASN1ObjectIdentifier(oidRSAESOAEP)
			b.AddASN1(cbasn1.SEQUENCE, func(*cryptobyte.Builder) {})
		case RSAOAEPSHA256:
			// hashFunc [0] sha256, maskGenFunc [1] mgf1(sha256); the default
			// empty label is omitted. The hash parameters are omitted, the
			// encoding RFC 4055 §2.1 calls correct and the one OpenSSL writes
			// (readers must accept both absent and NULL).
			b.AddASN1ObjectIdentifier(oidRSAESOAEP)
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(tagCtx0Cons, func(b *cryptobyte.Builder) {
					addHashAlgorithm(b)
				})
				b.AddASN1(tagCtx1Cons, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(oidMGF1)
						addHashAlgorithm(b)
					})
				})
			})
		}
	})
}

func addHashAlgorithm(b *cryptobyte.Builder) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oidSHA256)
	})
}

// setDESParity sets the low bit of every key byte so that each byte has odd
// parity (FIPS 46-3 §3); crypto/des ignores parity but other implementations
// may check it.
func setDESParity(key []byte) {
	for i, k := range key {
		k &= 0xfe
		p := k ^ k>>4
		p ^= p >> 2
		p ^= p >> 1
		key[i] = k | (^p & 1)
	}
}
