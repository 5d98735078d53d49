package scep

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/scepkit/scepkit/internal/cms"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Cipher is a content-encryption algorithm for the pkcsPKIEnvelope.
type Cipher int

// The content ciphers scepkit reads and writes. DES is read only when legacy algorithms
// are allowed; RC2 and anything else are refused with badAlg.
const (
	AES256CBC Cipher = iota + 1
	AES192CBC
	AES128CBC
	DES3CBC
	DESCBC
)

// String returns the cipher's name ("AES-256-CBC", ...) or "unknown(N)".
func (c Cipher) String() string {
	if cc, ok := c.cms(); ok {
		return cc.String()
	}
	return fmt.Sprintf("unknown(%d)", int(c))
}

func (c Cipher) cms() (cms.ContentCipher, bool) {
	switch c {
	case AES256CBC:
		return cms.AES256CBC, true
	case AES192CBC:
		return cms.AES192CBC, true
	case AES128CBC:
		return cms.AES128CBC, true
	case DES3CBC:
		return cms.DESEDE3CBC, true
	case DESCBC:
		return cms.DESCBC, true
	}
	return 0, false
}

func cipherFromCMS(c cms.ContentCipher) Cipher {
	switch c {
	case cms.AES256CBC:
		return AES256CBC
	case cms.AES192CBC:
		return AES192CBC
	case cms.AES128CBC:
		return AES128CBC
	case cms.DESEDE3CBC:
		return DES3CBC
	case cms.DESCBC:
		return DESCBC
	}
	return 0
}

// keyTransport remembers how the requester wrapped its content key, so the reply does
// the same. Zero means PKCS#1 v1.5.
type keyTransport = cms.KeyTransport

// Recipient is a certificate of ours with its private key, to decrypt envelopes
// addressed to that certificate. The key is used only through crypto.Decrypter.
type Recipient struct {
	Certificate *x509.Certificate
	Key         crypto.Decrypter
}

// Decrypt decrypts the pkcsPKIEnvelope with whichever of recipients it is addressed to
// and parses the payload the message type calls for, filling Cipher and CSR,
// ChallengePassword, IssuerAndSerial, IssuerAndSubject, or Issued and CRL. All
// decryption failures return [ErrDecrypt]; an envelope for none of recipients returns
// [ErrNotForUs]; a refused cipher wraps [ErrUnsupportedAlgorithm].
func (m *PKIMessage) Decrypt(recipients ...Recipient) error {
	if m.Envelope == nil {
		return fmt.Errorf("%w: message has no envelope", ErrBadContent)
	}
	env, err := m.envelope()
	if err != nil {
		return mapCMSError(err)
	}
	m.Cipher = cipherFromCMS(env.Cipher)
	if m.noDES3 && m.Cipher == DES3CBC {
		// Refused before any key is used, as cms refuses single DES.
		return fmt.Errorf("%w: 3DES is disabled", ErrUnsupportedAlgorithm)
	}
	rs := make([]cms.Recipient, 0, len(recipients))
	for _, r := range recipients {
		if r.Certificate != nil && r.Key != nil {
			rs = append(rs, cms.Recipient{Certificate: r.Certificate, Key: r.Key})
		}
	}
	content, err := env.Decrypt(rs, cms.DecryptOptions{AllowDES: m.legacy})
	if err != nil {
		return mapCMSError(err)
	}
	// Reply with the key transport of the RecipientInfo that was used: the first one
	// addressed to one of ours with a supported transport, as cms selects it.
used:
	for _, r := range env.Recipients {
		for _, ours := range rs {
			if r.KeyTransport != 0 && r.Matches(ours.Certificate) {
				m.keyTransport = r.KeyTransport
				break used
			}
		}
	}
	// A payload that is not what the type calls for is answered like any other
	// decryption failure: a wrong key can yield random bytes that pass the CBC padding
	// check, and the answer must not tell the sender which happened.
	if err := m.parsePayload(content); err != nil {
		return ErrDecrypt
	}
	return nil
}

// envelope parses m.Envelope, once: a server asks to whom it is addressed before it
// decrypts it. A caller that sets another Envelope gets it parsed afresh.
func (m *PKIMessage) envelope() (*cms.Envelope, error) {
	if m.env != nil && len(m.envOf) == len(m.Envelope) && len(m.Envelope) > 0 && &m.envOf[0] == &m.Envelope[0] {
		return m.env, nil
	}
	env, err := cms.Parse(m.Envelope)
	if err != nil {
		return nil, err
	}
	m.env, m.envOf = env, m.Envelope
	return env, nil
}

// addressedTo reports whether the pkcsPKIEnvelope has a RecipientInfo for cert.
func (m *PKIMessage) addressedTo(cert *x509.Certificate) bool {
	return m.addressedToAny([]Recipient{{Certificate: cert}})
}

func mapCMSError(err error) error {
	switch {
	case errors.Is(err, cms.ErrUnsupportedAlgorithm):
		return fmt.Errorf("%w: %s", ErrUnsupportedAlgorithm, errText(err))
	case errors.Is(err, cms.ErrNoRecipient):
		return ErrNotForUs
	case errors.Is(err, cms.ErrDecrypt):
		return ErrDecrypt
	}
	return fmt.Errorf("%w: envelope: %s", ErrMalformed, errText(err))
}

func (m *PKIMessage) parsePayload(content []byte) error {
	switch m.MessageType {
	case PKCSReq, RenewalReq:
		csr, err := ParseCertificateRequest(content)
		if err != nil {
			return fmt.Errorf("%w: CSR: %s", ErrBadContent, errText(err))
		}
		pw, err := challengePassword(csr.RawTBSCertificateRequest)
		if err != nil {
			return err
		}
		m.CSR, m.ChallengePassword = csr, pw
	case GetCert, GetCRL:
		s := cryptobyte.String(content)
		var seq, issuer cryptobyte.String
		serial := new(big.Int)
		if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() ||
			!seq.ReadASN1Element(&issuer, cbasn1.SEQUENCE) || !seq.ReadASN1Integer(serial) || !seq.Empty() {
			return fmt.Errorf("%w: IssuerAndSerialNumber", ErrBadContent)
		}
		m.IssuerAndSerial = &IssuerAndSerial{Issuer: issuer, Serial: serial}
	case CertPoll:
		s := cryptobyte.String(content)
		var seq, issuer, subject cryptobyte.String
		if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() ||
			!seq.ReadASN1Element(&issuer, cbasn1.SEQUENCE) || !seq.ReadASN1Element(&subject, cbasn1.SEQUENCE) || !seq.Empty() {
			return fmt.Errorf("%w: IssuerAndSubject", ErrBadContent)
		}
		m.IssuerAndSubject = &IssuerAndSubject{Issuer: issuer, Subject: subject}
	case CertRep:
		certs, crls, err := parseDegenerate(content)
		if err != nil {
			return err
		}
		m.Issued = certs
		if len(crls) > 0 {
			m.CRL = crls[0]
		}
	default:
		return fmt.Errorf("%w: %v carries no envelope", ErrUnknownMessageType, m.MessageType)
	}
	return nil
}

// ChallengePassword returns the PKCS#9 challengePassword attribute of csr (RFC 2985
// §5.4.1), or "" when it has none, for callers that receive CSRs outside SCEP (an EST
// or REST front end). Any DirectoryString form is read; two such attributes are an
// error.
func ChallengePassword(csr *x509.CertificateRequest) (string, error) {
	return challengePassword(csr.RawTBSCertificateRequest)
}

// challengePassword returns the PKCS#9 challengePassword attribute of a CSR's TBS, or ""
// when it has none. The value may be any DirectoryString form clients use.
func challengePassword(tbs []byte) (string, error) {
	s := cryptobyte.String(tbs)
	var body, attrs cryptobyte.String
	var version int64
	if !s.ReadASN1(&body, cbasn1.SEQUENCE) || !body.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) ||
		!body.SkipASN1(cbasn1.SEQUENCE) || !body.SkipASN1(cbasn1.SEQUENCE) {
		return "", fmt.Errorf("%w: CSR structure", ErrBadContent)
	}
	if !body.PeekASN1Tag(cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return "", nil
	}
	if !body.ReadASN1(&attrs, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return "", fmt.Errorf("%w: CSR attributes", ErrBadContent)
	}
	found := false
	var pw string
	for !attrs.Empty() {
		var a, vals cryptobyte.String
		var oid asn1.ObjectIdentifier
		if !attrs.ReadASN1(&a, cbasn1.SEQUENCE) || !a.ReadASN1ObjectIdentifier(&oid) ||
			!a.ReadASN1(&vals, cbasn1.SET) {
			return "", fmt.Errorf("%w: CSR attribute", ErrBadContent)
		}
		if !oid.Equal(oidChallengePassword) {
			continue
		}
		if found {
			return "", fmt.Errorf("%w: two challengePassword attributes", ErrBadContent)
		}
		found = true
		var v cryptobyte.String
		var tag cbasn1.Tag
		if !vals.ReadAnyASN1(&v, &tag) || !vals.Empty() {
			return "", fmt.Errorf("%w: challengePassword value", ErrBadContent)
		}
		switch tag {
		case cbasn1.PrintableString, cbasn1.UTF8String, cbasn1.IA5String, cbasn1.T61String:
			pw = string(v)
		case cbasn1.Tag(30): // BMPString
			if len(v)%2 != 0 {
				return "", fmt.Errorf("%w: challengePassword BMPString", ErrBadContent)
			}
			// UCS-2 (X.680 §41), read as UTF-16 so that a surrogate pair some
			// writers send is its character; a lone surrogate is no character, and
			// read as U+FFFD it would make distinct passwords one.
			r := make([]rune, 0, len(v)/2)
			for i := 0; i < len(v); i += 2 {
				c := rune(v[i])<<8 | rune(v[i+1])
				if utf16.IsSurrogate(c) {
					if i+4 > len(v) {
						return "", fmt.Errorf("%w: challengePassword BMPString holds a lone surrogate", ErrBadContent)
					}
					if c = utf16.DecodeRune(c, rune(v[i+2])<<8|rune(v[i+3])); c == unicode.ReplacementChar {
						return "", fmt.Errorf("%w: challengePassword BMPString holds a lone surrogate", ErrBadContent)
					}
					i += 2
				}
				r = append(r, c)
			}
			pw = string(r)
		case cbasn1.Tag(28): // UniversalString: UCS-4 (X.680 §41), big-endian
			if len(v)%4 != 0 {
				return "", fmt.Errorf("%w: challengePassword UniversalString", ErrBadContent)
			}
			r := make([]rune, 0, len(v)/4)
			for i := 0; i < len(v); i += 4 {
				c := uint32(v[i])<<24 | uint32(v[i+1])<<16 | uint32(v[i+2])<<8 | uint32(v[i+3])
				// No surrogate, nothing past U+10FFFF: read as U+FFFD, distinct passwords
				// would read as one.
				if c > unicode.MaxRune || !utf8.ValidRune(rune(c)) {
					return "", fmt.Errorf("%w: challengePassword UniversalString holds no character %#x", ErrBadContent, c)
				}
				r = append(r, rune(c))
			}
			pw = string(r)
		default:
			return "", fmt.Errorf("%w: challengePassword string type %d", ErrBadContent, tag)
		}
	}
	return pw, nil
}

// encryptTo builds a pkcsPKIEnvelope of content for cert.
func encryptTo(rand io.Reader, content []byte, cert *x509.Certificate, c Cipher, kt keyTransport) ([]byte, error) {
	if _, ok := cert.PublicKey.(*rsa.PublicKey); !ok {
		return nil, fmt.Errorf("%w: cannot encrypt to a %T key", ErrUnsupportedAlgorithm, cert.PublicKey)
	}
	cc, ok := c.cms()
	if !ok {
		cc = cms.AES256CBC
	}
	if kt == 0 {
		kt = cms.RSAPKCS1v15
	}
	return cms.Encrypt(rand, content, []*x509.Certificate{cert}, cc, kt)
}
