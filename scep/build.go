package scep

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"
	"strconv"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// RequestOptions describes a request PKIMessage to build with [NewRequest].
type RequestOptions struct {
	// Type is PKCSReq, RenewalReq, CertPoll, GetCert or GetCRL.
	Type MessageType
	// TransactionID is required, printable and at most 256 bytes; RFC 8894 suggests a
	// hash of the requester's public key.
	TransactionID string
	// SenderNonce is the nonce to send, 8 to 32 bytes; nil means 16 fresh random bytes.
	SenderNonce []byte
	// Payload is the DER to encrypt: a CSR (PKCSReq, RenewalReq), an
	// IssuerAndSubject (CertPoll) or an IssuerAndSerialNumber (GetCert, GetCRL). See
	// [MarshalIssuerAndSerial] and [MarshalIssuerAndSubject].
	Payload []byte
	// Recipient is the CA or RA encryption certificate (RSA) to encrypt to.
	Recipient *x509.Certificate
	// Cipher is the content cipher; zero means AES-256-CBC.
	Cipher Cipher
	// Digest is the signature digest; zero means SHA-256.
	Digest crypto.Hash
	// SignerCert and Signer sign the message: a self-signed certificate for the
	// requester's key, or the certificate being renewed.
	SignerCert *x509.Certificate
	Signer     crypto.Signer
	// Rand is the source of randomness; nil means crypto/rand.
	Rand io.Reader
}

// NewRequest builds a request PKIMessage: the payload encrypted to o.Recipient, signed
// with o.Signer, carrying messageType, transactionID and senderNonce. It returns the DER
// and the senderNonce used.
func NewRequest(o RequestOptions) (der, nonce []byte, err error) {
	switch o.Type {
	case PKCSReq, RenewalReq, CertPoll, GetCert, GetCRL:
	default:
		return nil, nil, fmt.Errorf("%w: cannot build a %v request", ErrUnknownMessageType, o.Type)
	}
	if o.TransactionID == "" || o.Recipient == nil || o.SignerCert == nil || o.Signer == nil {
		return nil, nil, fmt.Errorf("scep: NewRequest needs TransactionID, Recipient, SignerCert and Signer")
	}
	for i := 0; i < len(o.TransactionID); i++ {
		if !isPrintable(o.TransactionID[i]) {
			return nil, nil, fmt.Errorf("%w: transactionID is not a PrintableString", ErrMalformed)
		}
	}
	// What a server's parser refuses is not built.
	if len(o.TransactionID) > maxTransactionID {
		return nil, nil, fmt.Errorf("%w: transactionID of %d bytes (at most %d)", ErrMalformed, len(o.TransactionID), maxTransactionID)
	}
	if o.SenderNonce != nil && (len(o.SenderNonce) < minNonce || len(o.SenderNonce) > maxNonce) {
		return nil, nil, fmt.Errorf("%w: senderNonce of %d bytes (%d to %d)", ErrBadNonce, len(o.SenderNonce), minNonce, maxNonce)
	}
	r := o.Rand
	if r == nil {
		r = rand.Reader
	}
	nonce = o.SenderNonce
	if nonce == nil {
		nonce = make([]byte, 16)
		if _, err := io.ReadFull(r, nonce); err != nil {
			return nil, nil, err
		}
	}
	c := o.Cipher
	if c == 0 {
		c = AES256CBC
	}
	h := o.Digest
	if h == 0 {
		h = crypto.SHA256
	}
	env, err := encryptTo(r, o.Payload, o.Recipient, c, 0)
	if err != nil {
		return nil, nil, err
	}
	der, err = buildSignedData(signOptions{
		content: env,
		attrs: []signedAttr{
			{oidMessageType, printableValue(strconv.Itoa(int(o.Type)))},
			{oidTransactionID, printableValue(o.TransactionID)},
			{oidSenderNonce, octetValue(nonce)},
		},
		cert: o.SignerCert, key: o.Signer, hash: h, rand: r,
	})
	return der, nonce, err
}

// Replier builds CertRep messages (RFC 8894 §3.3.2) answering a parsed request. Each
// CertRep echoes the request's transactionID, carries the request's senderNonce as
// recipientNonce and a fresh senderNonce, is signed with the request's digest and, on
// SUCCESS, encrypts its payload to the requester's signer certificate with the
// request's cipher and key transport. A Replier is safe for concurrent use.
type Replier struct {
	// Cert and Key sign the CertRep: the RA signing certificate, or the CA's.
	Cert *x509.Certificate
	Key  crypto.Signer
	// Certificates are added to the CertRep's SignedData after Cert (for example the CA
	// certificate, for clients that build the chain from the reply).
	Certificates []*x509.Certificate
	// Rand is the source of randomness; nil means crypto/rand.
	Rand io.Reader
	// DefaultCipher is used for a request whose cipher is unknown (it could not be
	// decrypted); zero means AES-256-CBC.
	DefaultCipher Cipher
}

// Success answers req with SUCCESS and a degenerate PKCS#7 of certs (the issued
// certificate first, as clients take the first one).
func (rp *Replier) Success(req *PKIMessage, certs ...*x509.Certificate) ([]byte, error) {
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: SUCCESS without a certificate", ErrBadContent)
	}
	p, err := degenerate(certs[0], certs[1:], nil)
	if err != nil {
		return nil, err
	}
	return rp.certRep(req, Success, 0, p)
}

// SuccessCRL answers a GetCRL request with SUCCESS and the CRL (DER).
func (rp *Replier) SuccessCRL(req *PKIMessage, crl []byte) ([]byte, error) {
	p, err := degenerate(nil, nil, crl)
	if err != nil {
		return nil, err
	}
	return rp.certRep(req, Success, 0, p)
}

// Pending answers req with PENDING (the requester polls with CertPoll or resends).
func (rp *Replier) Pending(req *PKIMessage) ([]byte, error) {
	return rp.certRep(req, Pending, 0, nil)
}

// Failure answers req with FAILURE and info, which must be one of the failInfo values
// of RFC 8894 §3.2.1.4: no client can read any other.
func (rp *Replier) Failure(req *PKIMessage, info FailInfo) ([]byte, error) {
	if !info.known() {
		return nil, fmt.Errorf("scep: failInfo %v is not one of RFC 8894 §3.2.1.4", info)
	}
	return rp.certRep(req, Failure, info, nil)
}

func (rp *Replier) certRep(req *PKIMessage, status PKIStatus, info FailInfo, payload []byte) ([]byte, error) {
	if rp.Cert == nil || rp.Key == nil {
		return nil, fmt.Errorf("scep: Replier needs Cert and Key")
	}
	if req == nil || req.TransactionID == "" {
		return nil, fmt.Errorf("%w: cannot answer a request without transactionID", ErrMalformed)
	}
	r := rp.Rand
	if r == nil {
		r = rand.Reader
	}
	nonce := make([]byte, 16)
	if _, err := io.ReadFull(r, nonce); err != nil {
		return nil, err
	}
	attrs := []signedAttr{
		{oidMessageType, printableValue(strconv.Itoa(int(CertRep)))},
		{oidTransactionID, printableValue(req.TransactionID)},
		{oidPKIStatus, printableValue(strconv.Itoa(int(status)))},
		{oidSenderNonce, octetValue(nonce)},
	}
	if req.SenderNonce != nil {
		attrs = append(attrs, signedAttr{oidRecipientNonce, octetValue(req.SenderNonce)})
	}
	if status == Failure {
		attrs = append(attrs, signedAttr{oidFailInfo, printableValue(strconv.Itoa(int(info)))})
	}
	// A FAILURE or PENDING carries no pkcsPKIEnvelope (RFC 8894 §3.3.2) but an empty
	// id-data eContent: without any eContent OpenSSL takes the SignedData for a detached
	// signature and refuses to verify it ("no content"), so certmonger and other
	// OpenSSL-based clients could not read the status.
	content := []byte{}
	if payload != nil {
		if req.Signer == nil {
			return nil, fmt.Errorf("%w: no requester certificate to encrypt to", ErrBadContent)
		}
		c := req.Cipher
		if c == 0 {
			c = rp.DefaultCipher
		}
		var err error
		if content, err = encryptTo(r, payload, req.Signer, c, req.keyTransport); err != nil {
			return nil, err
		}
	}
	h := req.Digest
	if h == 0 || (h == crypto.SHA1 && !req.legacy) {
		h = crypto.SHA256
	}
	return buildSignedData(signOptions{
		content: content, attrs: attrs,
		cert: rp.Cert, key: rp.Key, hash: h, certs: rp.Certificates, rand: r,
	})
}

// MarshalIssuerAndSerial returns the DER of an IssuerAndSerialNumber, the payload of
// GetCert and GetCRL.
func MarshalIssuerAndSerial(issuer []byte, serial *big.Int) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(issuer)
		b.AddASN1BigInt(serial)
	})
	return b.Bytes()
}

// MarshalIssuerAndSubject returns the DER of an IssuerAndSubject, the payload of
// CertPoll: the CA's Name and the requester's subject Name, both raw DER.
func MarshalIssuerAndSubject(issuer, subject []byte) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(issuer)
		b.AddBytes(subject)
	})
	return b.Bytes()
}

// AddChallengePassword returns a copy of the CSR (DER) with a PKCS#9 challengePassword
// attribute (PrintableString when the password allows it, UTF8String otherwise), re-signed
// with key. crypto/x509 cannot write this attribute itself. A password that is not
// valid UTF-8 is refused (ErrBadContent): a UTF8String holds UTF-8 only (X.680).
func AddChallengePassword(csrDER []byte, password string, key crypto.Signer, r io.Reader) ([]byte, error) {
	if !utf8.ValidString(password) {
		return nil, fmt.Errorf("%w: challengePassword is not valid UTF-8", ErrBadContent)
	}
	csr, err := ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, err
	}
	s := cryptobyte.String(csr.RawTBSCertificateRequest)
	var body, version, subject, spki cryptobyte.String
	if !s.ReadASN1(&body, cbasn1.SEQUENCE) || !body.ReadASN1Element(&version, cbasn1.INTEGER) ||
		!body.ReadASN1Element(&subject, cbasn1.SEQUENCE) || !body.ReadASN1Element(&spki, cbasn1.SEQUENCE) {
		return nil, fmt.Errorf("%w: CSR structure", ErrBadContent)
	}
	var attrs cryptobyte.String
	if body.PeekASN1Tag(cbasn1.Tag(0).Constructed().ContextSpecific()) {
		body.ReadASN1(&attrs, cbasn1.Tag(0).Constructed().ContextSpecific())
	}
	tag := cbasn1.PrintableString
	for i := 0; i < len(password); i++ {
		if !isPrintable(password[i]) {
			tag = cbasn1.UTF8String
		}
	}
	var tb cryptobyte.Builder
	tb.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(version)
		b.AddBytes(subject)
		b.AddBytes(spki)
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(oidChallengePassword)
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
					b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes([]byte(password)) })
				})
			})
			b.AddBytes(attrs)
		})
	})
	tbs, err := tb.Bytes()
	if err != nil {
		return nil, err
	}
	sigAlg, h, err := csrSignatureAlgorithm(csr.SignatureAlgorithm)
	if err != nil {
		return nil, err
	}
	hh := h.New()
	hh.Write(tbs)
	if r == nil {
		r = rand.Reader
	}
	sig, err := key.Sign(r, hh.Sum(nil), h)
	if err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddBytes(sigAlg)
		b.AddASN1BitString(sig)
	})
	out, err := b.Bytes()
	if err != nil {
		return nil, err
	}
	if c, err := ParseCertificateRequest(out); err != nil {
		return nil, err
	} else if err := c.CheckSignature(); err != nil {
		return nil, err
	}
	return out, nil
}

// csrSignatureAlgorithm returns the DER AlgorithmIdentifier and hash for the signature
// algorithms AddChallengePassword re-signs with.
func csrSignatureAlgorithm(alg x509.SignatureAlgorithm) ([]byte, crypto.Hash, error) {
	var oid asn1.ObjectIdentifier
	var h crypto.Hash
	null := false
	switch alg {
	case x509.SHA256WithRSA:
		oid, h, null = oidSHA256WithRSA, crypto.SHA256, true
	case x509.SHA384WithRSA:
		oid, h, null = oidSHA384WithRSA, crypto.SHA384, true
	case x509.SHA512WithRSA:
		oid, h, null = oidSHA512WithRSA, crypto.SHA512, true
	case x509.ECDSAWithSHA256:
		oid, h = oidECDSAWithS256, crypto.SHA256
	case x509.ECDSAWithSHA384:
		oid, h = oidECDSAWithS384, crypto.SHA384
	case x509.ECDSAWithSHA512:
		oid, h = oidECDSAWithS512, crypto.SHA512
	default:
		return nil, 0, fmt.Errorf("%w: CSR signature algorithm %v", ErrUnsupportedAlgorithm, alg)
	}
	var b cryptobyte.Builder
	addAlgorithm(&b, oid, null)
	der, err := b.Bytes()
	return der, h, err
}
