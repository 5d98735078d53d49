package cms

import (
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
)

// Object identifiers used by this package.
var (
	oidData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1} // RFC 5652 §4
	oidEnvelopedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3} // RFC 5652 §6.1
	// id-ct-authEnvelopedData, RFC 5083 §1.1: AES-GCM and other AEAD content.
	oidAuthEnvelopedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 23}

	oidRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1} // RFC 3370 §4.2.1
	oidRSAESOAEP     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 7} // RFC 3560 §2.2
	oidMGF1          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8} // RFC 8017 A.2.1
	oidPSpecified    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 9} // RFC 8017 A.2.1
	oidSHA1          = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}

	oidDESCBC     = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 7}
	oidDESEDE3CBC = asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7} // RFC 3370 §5.1
	oidRC2CBC     = asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 2} // RFC 3370 §5.2, refused
	oidAES128CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES192CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidAES256CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
)

// ContentCipher identifies a content-encryption algorithm. The zero value
// means "not recognised".
type ContentCipher int

// Content-encryption algorithms, all in CBC mode with PKCS#7 padding
// (RFC 5652 §6.3).
const (
	// DESCBC is single DES (1.3.14.3.2.7). RFC 8894 §3.5.1 forbids it; it is
	// decrypted only with DecryptOptions.AllowDES.
	DESCBC ContentCipher = iota + 1
	// DESEDE3CBC is three-key triple DES (1.2.840.113549.3.7).
	DESEDE3CBC
	// AES128CBC is AES with a 128-bit key (2.16.840.1.101.3.4.1.2).
	AES128CBC
	// AES192CBC is AES with a 192-bit key (2.16.840.1.101.3.4.1.22).
	AES192CBC
	// AES256CBC is AES with a 256-bit key (2.16.840.1.101.3.4.1.42).
	AES256CBC
)

type cipherInfo struct {
	name      string
	oid       asn1.ObjectIdentifier
	keySize   int
	blockSize int
}

var ciphers = [...]cipherInfo{
	DESCBC:     {"DES-CBC", oidDESCBC, 8, 8},
	DESEDE3CBC: {"DES-EDE3-CBC", oidDESEDE3CBC, 24, 8},
	AES128CBC:  {"AES-128-CBC", oidAES128CBC, 16, 16},
	AES192CBC:  {"AES-192-CBC", oidAES192CBC, 24, 16},
	AES256CBC:  {"AES-256-CBC", oidAES256CBC, 32, 16},
}

func (c ContentCipher) info() (cipherInfo, bool) {
	if c < DESCBC || c > AES256CBC {
		return cipherInfo{}, false
	}
	return ciphers[c], true
}

// String returns the OpenSSL-style name of c ("AES-256-CBC"), or "unknown(N)"
// for a value outside the defined constants.
func (c ContentCipher) String() string {
	if ci, ok := c.info(); ok {
		return ci.name
	}
	return fmt.Sprintf("unknown(%d)", int(c))
}

// OID returns the algorithm identifier of c, or nil if c is not defined.
func (c ContentCipher) OID() asn1.ObjectIdentifier {
	if ci, ok := c.info(); ok {
		return append(asn1.ObjectIdentifier(nil), ci.oid...)
	}
	return nil
}

// KeySize returns the key length of c in bytes, or 0 if c is not defined.
func (c ContentCipher) KeySize() int {
	ci, _ := c.info()
	return ci.keySize
}

// BlockSize returns the block (and IV) length of c in bytes, or 0 if c is not
// defined.
func (c ContentCipher) BlockSize() int {
	ci, _ := c.info()
	return ci.blockSize
}

// cipherByOID returns the cipher for oid, or 0.
func cipherByOID(oid asn1.ObjectIdentifier) ContentCipher {
	for c := DESCBC; c <= AES256CBC; c++ {
		if ciphers[c].oid.Equal(oid) {
			return c
		}
	}
	return 0
}

// KeyTransport identifies the key-transport algorithm of a
// KeyTransRecipientInfo. The zero value means "not recognised".
type KeyTransport int

// Key-transport algorithms (RSA only).
const (
	// RSAPKCS1v15 is rsaEncryption, RSAES-PKCS1-v1_5 (RFC 3370 §4.2.1).
	RSAPKCS1v15 KeyTransport = iota + 1
	// RSAOAEPSHA1 is id-RSAES-OAEP with SHA-1 and MGF1-SHA-1, the default
	// RSAES-OAEP-params (RFC 3560 §3).
	RSAOAEPSHA1
	// RSAOAEPSHA256 is id-RSAES-OAEP with SHA-256 and MGF1-SHA-256.
	RSAOAEPSHA256
)

// String returns a short name for k ("RSA-PKCS1v15", "RSA-OAEP-SHA1",
// "RSA-OAEP-SHA256"), or "unknown(N)".
func (k KeyTransport) String() string {
	switch k {
	case RSAPKCS1v15:
		return "RSA-PKCS1v15"
	case RSAOAEPSHA1:
		return "RSA-OAEP-SHA1"
	case RSAOAEPSHA256:
		return "RSA-OAEP-SHA256"
	}
	return fmt.Sprintf("unknown(%d)", int(k))
}

func (k KeyTransport) oaepHash() crypto.Hash {
	switch k {
	case RSAOAEPSHA1:
		return crypto.SHA1
	case RSAOAEPSHA256:
		return crypto.SHA256
	}
	return 0
}

// Recipient is one of our certificates with its private key. The key is used
// only through crypto.Decrypter, so HSM and KMS keys work; it must be an RSA
// key that accepts *rsa.PKCS1v15DecryptOptions and *rsa.OAEPOptions. A
// Decrypter that ignores SessionKeyLen and fails on bad PKCS#1 v1.5 padding
// is handled (the error becomes ErrDecrypt after the same remaining work),
// but its own timing is outside this package's control.
type Recipient struct {
	Certificate *x509.Certificate
	Key         crypto.Decrypter
}

// Sentinel errors. Every error returned by Parse and Decrypt satisfies
// errors.Is for exactly one of them. Encrypt reports unknown algorithms and non-RSA
// keys as ErrUnsupportedAlgorithm and other problems with plain errors.
var (
	// ErrMalformed reports input that is not a well-formed EnvelopedData. Its
	// structure is public, so package scep answers it with badRequest, as any
	// malformed message; only failures after the recipient was found are secret.
	ErrMalformed = errors.New("cms: malformed EnvelopedData")
	// ErrUnsupportedAlgorithm reports a content cipher or key transport that
	// this package does not implement or that the options refuse: RC2, DES
	// without AllowDES, unknown OIDs, OAEP with a hash other than SHA-1 or
	// SHA-256, non-RSA recipient keys (SCEP failInfo badAlg). The concrete
	// error is usually an *AlgorithmError.
	ErrUnsupportedAlgorithm = errors.New("cms: unsupported algorithm")
	// ErrNoRecipient reports that no KeyTransRecipientInfo is addressed to
	// any of the given certificates (SCEP failInfo badMessageCheck).
	ErrNoRecipient = errors.New("cms: no recipient matches our certificates")
	// ErrDecrypt is returned, always as this exact value and never wrapped,
	// for every failure after a recipient of ours was found: key unwrap,
	// content-key length, IV, ciphertext length and CBC padding.
	ErrDecrypt = errors.New("cms: decryption failed")
)

// AlgorithmError describes an algorithm that is not supported or not
// allowed. It matches ErrUnsupportedAlgorithm with errors.Is.
type AlgorithmError struct {
	// Role is what the algorithm was for: "content encryption",
	// "key transport", "OAEP hash", "OAEP mask generation",
	// "OAEP label source" or "authenticated encryption" (an AuthEnvelopedData,
	// RFC 5083, whose ciphers such as AES-GCM SCEP does not use).
	Role string
	// OID is the algorithm identifier found (nil when there is none, e.g.
	// for a non-RSA public key given to Encrypt).
	OID asn1.ObjectIdentifier
	// Reason is an optional human-readable explanation.
	Reason string
}

// Error implements error.
func (e *AlgorithmError) Error() string {
	var b strings.Builder
	b.WriteString("cms: unsupported ")
	b.WriteString(e.Role)
	b.WriteString(" algorithm")
	if len(e.OID) > 0 {
		b.WriteString(" ")
		b.WriteString(e.OID.String())
	}
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
	}
	return b.String()
}

// Is reports whether target is ErrUnsupportedAlgorithm.
func (e *AlgorithmError) Is(target error) bool { return target == ErrUnsupportedAlgorithm }

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}
