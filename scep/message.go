package scep

import (
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/scepkit/scepkit/internal/cms"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// PKIMessage is a parsed SCEP message (RFC 8894 §3.2): the signed outer layer, its SCEP
// attributes and, once [PKIMessage.Decrypt] has run, the decrypted payload.
type PKIMessage struct {
	// Raw is the DER (or BER) the message was parsed from.
	Raw []byte

	MessageType   MessageType
	TransactionID string // opaque printable text chosen by the requester
	SenderNonce   []byte
	// RecipientNonce is set in a CertRep: the senderNonce of the request it answers.
	RecipientNonce []byte
	// Status and FailInfo are set in a CertRep; FailInfo only when Status is Failure.
	Status       PKIStatus
	FailInfo     FailInfo
	FailInfoText string // the optional RFC 8894 failInfoText, when sent

	// Signer is the certificate whose key signed the message; Certificates holds every
	// certificate the SignedData carried, the signer's included (in a request a Server
	// parsed, only the signer's).
	Signer       *x509.Certificate
	Certificates []*x509.Certificate
	// Digest is the digest algorithm the sender used. Replies use the same one.
	Digest crypto.Hash
	// Envelope is the DER of the pkcsPKIEnvelope (a CMS EnvelopedData), or nil.
	Envelope []byte

	// Fields filled by Decrypt, according to MessageType.

	// Cipher is the content cipher of the envelope. Replies use the same one.
	Cipher Cipher
	// CSR and ChallengePassword are set for PKCSReq and RenewalReq.
	CSR               *x509.CertificateRequest
	ChallengePassword string
	// IssuerAndSerial is set for GetCert and GetCRL.
	IssuerAndSerial *IssuerAndSerial
	// IssuerAndSubject is set for CertPoll.
	IssuerAndSubject *IssuerAndSubject
	// Issued and CRL are set for a CertRep SUCCESS: the certificates of the degenerate
	// PKCS#7 (the issued certificate first) and, for a GetCRL answer, the CRL DER.
	Issued []*x509.Certificate
	CRL    []byte

	legacy       bool
	noDES3       bool // ParseOptions.DisableDES3: Decrypt refuses 3DES first
	keyTransport keyTransport
	env          *cms.Envelope // envOf parsed (see envelope)
	envOf        []byte
	// refusedDigest names the digest algorithm of a message refused for it (its
	// Digest is then the one the FAILURE is signed with), for the log.
	refusedDigest string
	// unchecked is the content of a message refused before its envelope was
	// accepted (its signature or digest failed): only to choose which of the
	// server's own certificates signs the FAILURE (addressedToAny).
	unchecked []byte
}

// IssuerAndSerial identifies a certificate by its issuer's raw DER Name and its serial
// number (the payload of GetCert and GetCRL).
type IssuerAndSerial struct {
	Issuer []byte
	Serial *big.Int
}

// IssuerAndSubject identifies a pending request by the CA's and the requester's raw DER
// Names (the payload of CertPoll).
type IssuerAndSubject struct {
	Issuer  []byte
	Subject []byte
}

// ParseOptions controls [ParsePKIMessage]. The zero value is strict: SHA-1 and single
// DES are refused and the signer certificate's validity is not checked.
type ParseOptions struct {
	// AllowLegacy accepts SHA-1 digests and, at decryption, single-DES envelopes, as
	// old clients (micromdm's scepclient among them) send. One switch for both.
	AllowLegacy bool
	// DisableDES3 makes Decrypt refuse a 3DES envelope (ErrUnsupportedAlgorithm,
	// answered badAlg) before any key is used, as a Server with DisableDES3 does.
	DisableDES3 bool
	// Time, when not zero, is the time at which the signer certificate must be valid.
	// The sender's signingTime attribute is never used. A self-signed signer of a
	// PKCSReq proves nothing by its validity, so servers leave this zero and check
	// renewal signers against their CA instead.
	Time time.Time
	// Certificates are further certificates the signer may be among, for replies whose
	// SignedData carries none (NDES sends its CertRep so): pass the GetCACert
	// certificates.
	Certificates []*x509.Certificate

	// signerOnly parses only the certificate the SignerInfo names (PKIMessage.
	// Certificates then holds just that one): a Server's requester chooses how many
	// certificates it sends, each costly to parse, and only the signer's is used.
	signerOnly bool
}

// digestName is what the log calls a message's digest: the name of the digest it
// was refused for, or the digest it was read and answered with.
func (m *PKIMessage) digestName() string {
	if m.refusedDigest != "" {
		return m.refusedDigest
	}
	return m.Digest.String()
}

// maxTransactionID bounds the transactionID the parser accepts.
const maxTransactionID = 256

// minNonce and maxNonce bound the length of a senderNonce or recipientNonce the parser
// accepts: RFC 8894 §3.2.1.5 makes it 16 bytes; some implementations send other lengths.
const minNonce, maxNonce = 8, 32

// ParsePKIMessage parses a PKIMessage and verifies its signature against the signer
// certificate it carries. It does not decrypt the envelope: call Decrypt for that.
// Every error wraps one of the package's sentinel errors; the result is nil on error.
func ParsePKIMessage(der []byte, opts ParseOptions) (*PKIMessage, error) {
	m, err := parsePKIMessage(der, opts)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// parsePKIMessage is ParsePKIMessage but returns what it could read (transactionID,
// nonce, type, digest) along with the error, so a server can still answer with a CertRep.
func parsePKIMessage(der []byte, opts ParseOptions) (*PKIMessage, error) {
	sd, err := parseSignedData(der)
	if err != nil {
		return nil, err
	}
	if len(sd.signers) != 1 {
		return nil, fmt.Errorf("%w: %d signers (SCEP needs exactly one)", ErrMalformed, len(sd.signers))
	}
	si := &sd.signers[0]
	m := &PKIMessage{Raw: der, legacy: opts.AllowLegacy, noDES3: opts.DisableDES3}

	// The attributes that address a reply come first, so that a reply can be built
	// even when a later check fails.
	tid, err := si.attr(oidTransactionID)
	if err != nil {
		return nil, err
	}
	if tid == nil {
		return nil, fmt.Errorf("%w: transactionID", ErrMissingAttribute)
	}
	if m.TransactionID, err = readPrintable(tid, "transactionID"); err != nil {
		return nil, err
	}
	if m.TransactionID == "" || len(m.TransactionID) > maxTransactionID {
		return nil, fmt.Errorf("%w: transactionID length %d", ErrMalformed, len(m.TransactionID))
	}
	if m.SenderNonce, err = readNonce(si, oidSenderNonce, "senderNonce"); err != nil {
		return m, err // answerable: the reply carries the transactionID, without recipientNonce
	}
	m.Digest, _ = hashForDigestOID(si.digestAlg, true)
	if m.Digest == 0 {
		m.Digest = crypto.SHA256
		m.refusedDigest = digestName(si.digestAlg)
	}
	if sd.contentType.Equal(oidData) {
		m.unchecked = sd.content
	}

	parsed := false
	for _, raw := range sd.rawCerts {
		if opts.signerOnly {
			match, ok := si.names(raw)
			if !ok {
				return m, fmt.Errorf("%w: certificate: not a certificate's structure", ErrMalformed)
			}
			// One certificate parsed at most: should the walk and x509 ever
			// disagree, a second candidate is not parsed, and the signer is
			// not found.
			if !match || parsed {
				continue
			}
			parsed = true
		}
		c, err := parseCertificate(raw)
		if err != nil {
			return m, fmt.Errorf("%w: certificate: %s", ErrMalformed, errText(err))
		}
		m.Certificates = append(m.Certificates, c)
	}
	m.Signer = si.findSigner(m.Certificates)
	if m.Signer == nil {
		m.Signer = si.findSigner(opts.Certificates)
	}
	if m.Signer == nil {
		return m, fmt.Errorf("%w: signer certificate not in message", ErrBadSignature)
	}
	if sd.content == nil {
		sd.content = []byte{}
	}
	// On failure m.Digest keeps the digest the message names, for the log; a
	// reply is never signed with SHA-1 unless AllowLegacy (certRep).
	h, err := si.verify(m.Signer, sd.content, opts.AllowLegacy)
	if err != nil {
		return m, err
	}
	m.Digest = h
	if !opts.Time.IsZero() && (opts.Time.Before(m.Signer.NotBefore) || opts.Time.After(m.Signer.NotAfter)) {
		return m, Fail(BadTime, fmt.Errorf("%w: signer certificate not valid at %v", ErrBadSignature, opts.Time.UTC()))
	}
	// RFC 5652 §5.3: with signed attributes, contentType is required and must name
	// the encapsulated content's type.
	ct, err := si.attr(oidContentType)
	if err != nil {
		return m, err
	}
	var ctOID asn1.ObjectIdentifier
	if ct == nil {
		return m, fmt.Errorf("%w: contentType", ErrMissingAttribute)
	}
	if !ct.ReadASN1ObjectIdentifier(&ctOID) || !ctOID.Equal(sd.contentType) {
		return m, fmt.Errorf("%w: contentType attribute does not match content", ErrBadSignature)
	}

	mt, err := si.attr(oidMessageType)
	if err != nil {
		return m, err
	}
	if mt == nil {
		return m, fmt.Errorf("%w: messageType", ErrMissingAttribute)
	}
	s, err := readPrintable(mt, "messageType")
	if err != nil {
		return m, err
	}
	// A decimal number's text: digits only (strconv.Atoi would also take a sign).
	n, err := strconv.Atoi(s)
	if err != nil || len(s) > 4 || strings.TrimLeft(s, "0123456789") != "" {
		return m, fmt.Errorf("%w: messageType %s", ErrUnknownMessageType, quoted(s))
	}
	m.MessageType = MessageType(n)
	if !m.MessageType.known() {
		return m, fmt.Errorf("%w: %v", ErrUnknownMessageType, m.MessageType)
	}

	if m.SenderNonce == nil && m.MessageType != CertRep {
		// A reply cannot echo a nonce that was not sent. (Some old servers omitted the
		// senderNonce of their CertRep; clients match those by recipientNonce.)
		return m, fmt.Errorf("%w: senderNonce", ErrMissingAttribute)
	}
	if m.MessageType == CertRep {
		if err := readCertRepAttrs(m, si); err != nil {
			return m, err
		}
	}
	needEnvelope := m.MessageType != CertRep || m.Status == Success
	if needEnvelope {
		if !sd.contentType.Equal(oidData) || len(sd.content) == 0 {
			return m, fmt.Errorf("%w: no pkcsPKIEnvelope", ErrMalformed)
		}
		m.Envelope = sd.content
	}
	m.unchecked = nil
	return m, nil
}

func readCertRepAttrs(m *PKIMessage, si *signerInfo) error {
	var err error
	if m.RecipientNonce, err = readNonce(si, oidRecipientNonce, "recipientNonce"); err != nil {
		return err
	}
	st, err := si.attr(oidPKIStatus)
	if err != nil {
		return err
	}
	if st == nil {
		return fmt.Errorf("%w: pkiStatus", ErrMissingAttribute)
	}
	s, err := readPrintable(st, "pkiStatus")
	if err != nil {
		return err
	}
	switch s {
	case "0":
		m.Status = Success
	case "2":
		m.Status = Failure
	case "3":
		m.Status = Pending
	default:
		return fmt.Errorf("%w: pkiStatus %s", ErrMalformed, quoted(s))
	}
	if m.Status != Failure {
		return nil
	}
	fi, err := si.attr(oidFailInfo)
	if err != nil {
		return err
	}
	if fi == nil {
		return fmt.Errorf("%w: failInfo", ErrMissingAttribute)
	}
	if s, err = readPrintable(fi, "failInfo"); err != nil {
		return err
	}
	if m.FailInfo, err = ParseFailInfo(s); err != nil {
		return err
	}
	if txt, err := si.attr(oidFailInfoText); err == nil && txt != nil {
		var v cryptobyte.String
		if txt.ReadASN1(&v, cbasn1.UTF8String) {
			m.FailInfoText = string(v)
		}
	}
	return nil
}

func readNonce(si *signerInfo, oid asn1.ObjectIdentifier, name string) ([]byte, error) {
	v, err := si.attr(oid)
	if err != nil || v == nil {
		return nil, err
	}
	var n []byte
	if !v.ReadASN1Bytes(&n, cbasn1.OCTET_STRING) || !v.Empty() {
		return nil, fmt.Errorf("%w: %s is not an OCTET STRING", ErrMalformed, name)
	}
	if len(n) < minNonce || len(n) > maxNonce {
		return nil, fmt.Errorf("%w: %s of %d bytes", ErrBadNonce, name, len(n))
	}
	return n, nil
}

// readPrintable reads a PrintableString value and checks its character set.
func readPrintable(v cryptobyte.String, name string) (string, error) {
	var s cryptobyte.String
	if !v.ReadASN1(&s, cbasn1.PrintableString) || !v.Empty() {
		return "", fmt.Errorf("%w: %s is not a PrintableString", ErrMalformed, name)
	}
	for _, c := range s {
		if !isPrintable(c) {
			return "", fmt.Errorf("%w: %s is not a valid PrintableString", ErrMalformed, name)
		}
	}
	return string(s), nil
}

func isPrintable(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case ' ', '\'', '(', ')', '+', ',', '-', '.', '/', ':', '=', '?':
		return true
	}
	return false
}

// printableValue returns the DER of s as a PrintableString.
func printableValue(s string) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.PrintableString, func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
	return b.BytesOrPanic()
}

func octetValue(v []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1OctetString(v)
	return b.BytesOrPanic()
}
