package crp

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"math/big"
	"strings"
)

// namesKey reports whether transactionID id is derived from the public key whose
// SubjectPublicKeyInfo is spki, in one of the ways SCEP clients derive it (RFC 8894
// §3.2.1.1 suggests a hash of the key): the MD5, SHA-1, SHA-256 or SHA-512 of the
// SubjectPublicKeyInfo or of its subjectPublicKey bits, written in hexadecimal (either
// case), base64 (standard or URL alphabet, padded or not) or decimal. scep.Client and
// micromdm's scepclient write the SHA-1 of the SubjectPublicKeyInfo in base64;
// certmonger writes its SHA-256 in decimal.
//
// Only the holder of the key can sign with it, so a transactionID derived from the
// signer's key belongs to that signer, whoever recorded it first.
func namesKey(id string, spki []byte) bool {
	if len(id) < 16 || len(id) > 160 || len(spki) == 0 {
		return false
	}
	inputs := [][]byte{spki}
	var parsed struct {
		Algorithm asn1.RawValue
		Key       asn1.BitString
	}
	if rest, err := asn1.Unmarshal(spki, &parsed); err == nil && len(rest) == 0 {
		inputs = append(inputs, parsed.Key.Bytes)
	}
	for _, in := range inputs {
		m5, s1, s256, s512 := md5.Sum(in), sha1.Sum(in), sha256.Sum256(in), sha512.Sum512(in)
		for _, sum := range [][]byte{m5[:], s1[:], s256[:], s512[:]} {
			if encodes(id, sum) {
				return true
			}
		}
	}
	return false
}

// encodes reports whether id is sum in hexadecimal, base64 or decimal.
func encodes(id string, sum []byte) bool {
	switch {
	case strings.EqualFold(id, hex.EncodeToString(sum)):
		return true
	case id == base64.StdEncoding.EncodeToString(sum), id == base64.RawStdEncoding.EncodeToString(sum),
		id == base64.URLEncoding.EncodeToString(sum), id == base64.RawURLEncoding.EncodeToString(sum):
		return true
	}
	return id == new(big.Int).SetBytes(sum).String()
}

// ownsTransactionID reports whether the requester, which proved it holds the key of
// signer (by the message's signature) and of csr (by its signature, checked here),
// derived id from one of those keys.
func ownsTransactionID(id string, signer *x509.Certificate, csr *x509.CertificateRequest) bool {
	if signer != nil && namesKey(id, signer.RawSubjectPublicKeyInfo) {
		return true
	}
	return csr != nil && namesKey(id, csr.RawSubjectPublicKeyInfo) && csrVerifies(csr)
}
