package cms

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// maxInput is the largest input Parse accepts (1 GiB); anything larger is
// reported as ErrMalformed.
const maxInput = 1 << 30

var (
	tagCtx0Prim = cbasn1.Tag(0).ContextSpecific()
	tagCtx0Cons = cbasn1.Tag(0).ContextSpecific().Constructed()
	tagCtx1Cons = cbasn1.Tag(1).ContextSpecific().Constructed()
	tagCtx2Cons = cbasn1.Tag(2).ContextSpecific().Constructed()
)

// Envelope is a parsed EnvelopedData (RFC 5652 §6.1) before decryption, so
// that callers can look at the algorithms and recipients first. Its byte
// slices refer to a private copy of the input.
type Envelope struct {
	// Version is the EnvelopedData CMSVersion (0, 2, 3 or 4).
	Version int
	// ContentType is the type of the encrypted content (id-data for SCEP).
	ContentType asn1.ObjectIdentifier
	// Cipher is the content-encryption algorithm, or 0 if CipherOID is not
	// one this package implements (RC2, for example).
	Cipher ContentCipher
	// CipherOID is the contentEncryptionAlgorithm as found.
	CipherOID asn1.ObjectIdentifier
	// IV is the CBC initialisation vector (nil when Cipher is 0).
	IV []byte
	// Recipients are the KeyTransRecipientInfos, in input order.
	Recipients []RecipientInfo
	// OtherRecipients counts RecipientInfos of the other choices (kari,
	// kekri, pwri, ori), which are skipped.
	OtherRecipients int

	encryptedContent []byte
	hasContent       bool
}

// RecipientInfo is one KeyTransRecipientInfo (RFC 5652 §6.2.1). Exactly one of
// IssuerAndSerial and SubjectKeyID is set.
type RecipientInfo struct {
	// Version is 0 for issuerAndSerialNumber and 2 for subjectKeyIdentifier
	// (not enforced when parsing).
	Version int
	// IssuerAndSerial identifies the recipient certificate by issuer and
	// serial number.
	IssuerAndSerial *IssuerAndSerial
	// SubjectKeyID identifies the recipient certificate by its subject key
	// identifier extension.
	SubjectKeyID []byte
	// KeyTransport is the key-encryption algorithm, or 0 if not supported;
	// then KeyTransportOID and unsupported say why.
	KeyTransport KeyTransport
	// KeyTransportOID is the keyEncryptionAlgorithm as found.
	KeyTransportOID asn1.ObjectIdentifier
	// EncryptedKey is the encrypted content-encryption key.
	EncryptedKey []byte

	oaepLabel   []byte
	unsupported *AlgorithmError
}

// IssuerAndSerial is the issuerAndSerialNumber RecipientIdentifier.
type IssuerAndSerial struct {
	// RawIssuer is the DER of the issuer Name, as received.
	RawIssuer []byte
	// SerialNumber is the certificate serial number.
	SerialNumber *big.Int
}

// Matches reports whether the RecipientInfo identifies cert: the issuer
// Name bytes and serial number are equal, or the subject key identifiers are.
func (r *RecipientInfo) Matches(cert *x509.Certificate) bool {
	if cert == nil {
		return false
	}
	if r.IssuerAndSerial != nil {
		return cert.SerialNumber != nil &&
			bytes.Equal(cert.RawIssuer, r.IssuerAndSerial.RawIssuer) &&
			cert.SerialNumber.Cmp(r.IssuerAndSerial.SerialNumber) == 0
	}
	return len(r.SubjectKeyID) > 0 && bytes.Equal(cert.SubjectKeyId, r.SubjectKeyID)
}

// Parse parses der, either a ContentInfo (RFC 5652 §3) whose contentType is
// id-envelopedData or a bare EnvelopedData. DER and BER (indefinite lengths,
// constructed encryptedContent) are accepted. Unknown content ciphers and key
// transports are not an error here: they leave Cipher or KeyTransport 0, and
// Decrypt reports them. Errors wrap ErrMalformed.
func Parse(der []byte) (*Envelope, error) {
	if len(der) > maxInput {
		return nil, malformed("input larger than %d bytes", maxInput)
	}
	buf := bytes.Clone(der)
	env, err := parse(buf)
	if err == nil {
		return env, nil
	}
	norm, nerr := normalizeBER(buf)
	if nerr != nil || bytes.Equal(norm, buf) {
		return nil, err
	}
	return parse(norm)
}

func parse(der []byte) (*Envelope, error) {
	input := cryptobyte.String(der)
	var outer cryptobyte.String
	if !input.ReadASN1(&outer, cbasn1.SEQUENCE) || !input.Empty() {
		return nil, malformed("not a single SEQUENCE")
	}
	ed := outer
	if outer.PeekASN1Tag(cbasn1.OBJECT_IDENTIFIER) {
		// ContentInfo ::= SEQUENCE { contentType, content [0] EXPLICIT ANY }
		var ct asn1.ObjectIdentifier
		var explicit cryptobyte.String
		if !outer.ReadASN1ObjectIdentifier(&ct) {
			return nil, malformed("bad ContentInfo contentType")
		}
		if ct.Equal(oidAuthEnvelopedData) {
			// Well formed, but not what SCEP encrypts with (RFC 8894 §3.2.2): an
			// algorithm the client may fall back from (badAlg), not garbage.
			return nil, &AlgorithmError{Role: "authenticated encryption", OID: ct,
				Reason: "AuthEnvelopedData is not supported: use EnvelopedData"}
		}
		if !ct.Equal(oidEnvelopedData) {
			return nil, malformed("ContentInfo contentType %v is not id-envelopedData", ct)
		}
		if !outer.ReadASN1(&explicit, tagCtx0Cons) || !outer.Empty() {
			return nil, malformed("bad ContentInfo content")
		}
		if !explicit.ReadASN1(&ed, cbasn1.SEQUENCE) || !explicit.Empty() {
			return nil, malformed("ContentInfo content is not a SEQUENCE")
		}
	}
	return parseEnvelopedData(ed)
}

// parseEnvelopedData parses the contents of
//
//	EnvelopedData ::= SEQUENCE {
//	  version CMSVersion,
//	  originatorInfo [0] IMPLICIT OriginatorInfo OPTIONAL,
//	  recipientInfos RecipientInfos,
//	  encryptedContentInfo EncryptedContentInfo,
//	  unprotectedAttrs [1] IMPLICIT UnprotectedAttributes OPTIONAL }
//
// (RFC 5652 §6.1).
func parseEnvelopedData(s cryptobyte.String) (*Envelope, error) {
	env := &Envelope{}
	var version int64
	if !s.ReadASN1Integer(&version) || version < 0 || version > 4 {
		return nil, malformed("bad EnvelopedData version")
	}
	env.Version = int(version)
	if !s.SkipOptionalASN1(tagCtx0Cons) {
		return nil, malformed("bad originatorInfo")
	}

	// RecipientInfos ::= SET SIZE (1..MAX) OF RecipientInfo (§6.1)
	var set cryptobyte.String
	if !s.ReadASN1(&set, cbasn1.SET) || set.Empty() {
		return nil, malformed("bad recipientInfos")
	}
	for !set.Empty() {
		var tag cbasn1.Tag
		var elem cryptobyte.String
		if !set.ReadAnyASN1(&elem, &tag) {
			return nil, malformed("bad RecipientInfo")
		}
		switch tag {
		case cbasn1.SEQUENCE: // ktri, §6.2.1
			ri, err := parseKTRI(elem)
			if err != nil {
				return nil, err
			}
			env.Recipients = append(env.Recipients, ri)
		case cbasn1.Tag(1).ContextSpecific().Constructed(), // kari §6.2.2
			cbasn1.Tag(2).ContextSpecific().Constructed(), // kekri §6.2.3
			cbasn1.Tag(3).ContextSpecific().Constructed(), // pwri §6.2.4
			cbasn1.Tag(4).ContextSpecific().Constructed(): // ori §6.2.5
			env.OtherRecipients++
		default:
			return nil, malformed("unknown RecipientInfo choice (tag %#x)", uint8(tag))
		}
	}

	// EncryptedContentInfo ::= SEQUENCE {
	//   contentType ContentType,
	//   contentEncryptionAlgorithm ContentEncryptionAlgorithmIdentifier,
	//   encryptedContent [0] IMPLICIT EncryptedContent OPTIONAL } (§6.1)
	var eci cryptobyte.String
	if !s.ReadASN1(&eci, cbasn1.SEQUENCE) {
		return nil, malformed("bad encryptedContentInfo")
	}
	if !eci.ReadASN1ObjectIdentifier(&env.ContentType) {
		return nil, malformed("bad encrypted content type")
	}
	oid, params, hasParams, ok := readAlgorithmIdentifier(&eci)
	if !ok {
		return nil, malformed("bad contentEncryptionAlgorithm")
	}
	env.CipherOID = oid
	if c := cipherByOID(oid); c != 0 {
		// The parameters of every CBC cipher here are the IV as an OCTET
		// STRING of one block (RFC 3370 §5.1, RFC 3565 §4.1, RFC 8018 B.2.1).
		// A wrong IV is visible without any key, so it is ErrMalformed, not
		// ErrDecrypt.
		var iv cryptobyte.String
		if !hasParams || !params.ReadASN1(&iv, cbasn1.OCTET_STRING) || !params.Empty() ||
			len(iv) != c.BlockSize() {
			return nil, malformed("%v parameters are not a %d-byte IV", c, c.BlockSize())
		}
		env.Cipher = c
		env.IV = iv
	}
	switch {
	case eci.PeekASN1Tag(tagCtx0Prim):
		var ct cryptobyte.String
		if !eci.ReadASN1(&ct, tagCtx0Prim) {
			return nil, malformed("bad encryptedContent")
		}
		env.encryptedContent, env.hasContent = ct, true
	case eci.PeekASN1Tag(tagCtx0Cons):
		// BER constructed form: the contents are OCTET STRING segments
		// (X.690 §8.7.3), which may themselves be constructed.
		var ct cryptobyte.String
		if !eci.ReadASN1(&ct, tagCtx0Cons) {
			return nil, malformed("bad encryptedContent")
		}
		out := make([]byte, 0, len(ct))
		out, ok := appendSegments(out, ct, 0)
		if !ok {
			return nil, malformed("bad constructed encryptedContent")
		}
		env.encryptedContent, env.hasContent = out, true
	}
	if !eci.Empty() {
		return nil, malformed("trailing data in encryptedContentInfo")
	}
	if !s.SkipOptionalASN1(tagCtx1Cons) || !s.Empty() {
		return nil, malformed("trailing data after encryptedContentInfo")
	}
	return env, nil
}

// appendSegments appends the concatenated contents of the OCTET STRING
// segments in s.
func appendSegments(dst []byte, s cryptobyte.String, depth int) ([]byte, bool) {
	if depth > maxBERDepth {
		return nil, false
	}
	for !s.Empty() {
		var seg cryptobyte.String
		var tag cbasn1.Tag
		if !s.ReadAnyASN1(&seg, &tag) {
			return nil, false
		}
		switch tag {
		case cbasn1.OCTET_STRING:
			dst = append(dst, seg...)
		case cbasn1.OCTET_STRING.Constructed():
			var ok bool
			if dst, ok = appendSegments(dst, seg, depth+1); !ok {
				return nil, false
			}
		default:
			return nil, false
		}
	}
	return dst, true
}

// parseKTRI parses the contents of
//
//	KeyTransRecipientInfo ::= SEQUENCE {
//	  version CMSVersion,  -- always set to 0 or 2
//	  rid RecipientIdentifier,
//	  keyEncryptionAlgorithm KeyEncryptionAlgorithmIdentifier,
//	  encryptedKey EncryptedKey }
//
//	RecipientIdentifier ::= CHOICE {
//	  issuerAndSerialNumber IssuerAndSerialNumber,
//	  subjectKeyIdentifier [0] SubjectKeyIdentifier }
//
// (RFC 5652 §6.2.1). The version is not checked against the rid choice, as
// some implementations get it wrong.
func parseKTRI(s cryptobyte.String) (RecipientInfo, error) {
	var ri RecipientInfo
	var version int64
	if !s.ReadASN1Integer(&version) || version < 0 || version > 4 {
		return ri, malformed("bad KeyTransRecipientInfo version")
	}
	ri.Version = int(version)
	switch {
	case s.PeekASN1Tag(cbasn1.SEQUENCE):
		// IssuerAndSerialNumber ::= SEQUENCE { issuer Name,
		//   serialNumber CertificateSerialNumber } (§10.2.4)
		var ias, issuer, serial cryptobyte.String
		if !s.ReadASN1(&ias, cbasn1.SEQUENCE) ||
			!ias.ReadASN1Element(&issuer, cbasn1.SEQUENCE) ||
			!ias.ReadASN1(&serial, cbasn1.INTEGER) || !ias.Empty() || len(serial) == 0 {
			return ri, malformed("bad issuerAndSerialNumber")
		}
		ri.IssuerAndSerial = &IssuerAndSerial{RawIssuer: issuer, SerialNumber: parseInteger(serial)}
	case s.PeekASN1Tag(tagCtx0Prim):
		var ski cryptobyte.String
		if !s.ReadASN1(&ski, tagCtx0Prim) || len(ski) == 0 {
			return ri, malformed("bad subjectKeyIdentifier")
		}
		ri.SubjectKeyID = ski
	default:
		return ri, malformed("bad RecipientIdentifier")
	}

	oid, params, hasParams, ok := readAlgorithmIdentifier(&s)
	if !ok {
		return ri, malformed("bad keyEncryptionAlgorithm")
	}
	ri.KeyTransportOID = oid
	switch {
	case oid.Equal(oidRSAEncryption):
		// RFC 3370 §4.2.1: parameters MUST be NULL; absent is tolerated.
		if hasParams && !readNULL(&params) {
			return ri, malformed("rsaEncryption parameters are not NULL")
		}
		ri.KeyTransport = RSAPKCS1v15
	case oid.Equal(oidRSAESOAEP):
		kt, label, aerr, err := parseOAEPParams(params, hasParams)
		if err != nil {
			return ri, err
		}
		ri.KeyTransport, ri.oaepLabel, ri.unsupported = kt, label, aerr
	default:
		ri.unsupported = &AlgorithmError{Role: "key transport", OID: oid}
	}

	var ek cryptobyte.String
	if !s.ReadASN1(&ek, cbasn1.OCTET_STRING) || !s.Empty() {
		return ri, malformed("bad encryptedKey")
	}
	ri.EncryptedKey = ek
	return ri, nil
}

// parseOAEPParams parses
//
//	RSAES-OAEP-params ::= SEQUENCE {
//	  hashFunc          [0] AlgorithmIdentifier DEFAULT sha1Identifier,
//	  maskGenFunc       [1] AlgorithmIdentifier DEFAULT mgf1SHA1Identifier,
//	  pSourceFunc       [2] AlgorithmIdentifier DEFAULT pSpecifiedEmptyIdentifier }
//
// (RFC 3560 §3, RFC 8017 A.2.1; explicit tags). Absent parameters are taken
// as all defaults. A well-formed but unsupported choice returns a non-nil
// *AlgorithmError and KeyTransport 0.
func parseOAEPParams(params cryptobyte.String, present bool) (KeyTransport, []byte, *AlgorithmError, error) {
	hash, mgfHash := oidSHA1, oidSHA1
	var label []byte
	var seq cryptobyte.String
	if present {
		if !params.ReadASN1(&seq, cbasn1.SEQUENCE) || !params.Empty() {
			return 0, nil, nil, malformed("bad RSAES-OAEP-params")
		}
	}
	var aerr *AlgorithmError
	if seq.PeekASN1Tag(tagCtx0Cons) {
		var f cryptobyte.String
		var ok bool
		if !seq.ReadASN1(&f, tagCtx0Cons) {
			return 0, nil, nil, malformed("bad OAEP hashFunc")
		}
		if hash, ok = readHashAlgorithm(&f); !ok || !f.Empty() {
			return 0, nil, nil, malformed("bad OAEP hashFunc")
		}
	}
	if seq.PeekASN1Tag(tagCtx1Cons) {
		var f cryptobyte.String
		if !seq.ReadASN1(&f, tagCtx1Cons) {
			return 0, nil, nil, malformed("bad OAEP maskGenFunc")
		}
		oid, p, hasP, ok := readAlgorithmIdentifier(&f)
		if !ok || !f.Empty() {
			return 0, nil, nil, malformed("bad OAEP maskGenFunc")
		}
		if !oid.Equal(oidMGF1) {
			aerr = &AlgorithmError{Role: "OAEP mask generation", OID: oid}
		} else {
			// MGF1 parameters: the hash AlgorithmIdentifier.
			if !hasP {
				return 0, nil, nil, malformed("MGF1 without hash")
			}
			if mgfHash, ok = readHashAlgorithm(&p); !ok || !p.Empty() {
				return 0, nil, nil, malformed("bad MGF1 hash")
			}
		}
	}
	if seq.PeekASN1Tag(tagCtx2Cons) {
		var f cryptobyte.String
		if !seq.ReadASN1(&f, tagCtx2Cons) {
			return 0, nil, nil, malformed("bad OAEP pSourceFunc")
		}
		oid, p, hasP, ok := readAlgorithmIdentifier(&f)
		if !ok || !f.Empty() {
			return 0, nil, nil, malformed("bad OAEP pSourceFunc")
		}
		if !oid.Equal(oidPSpecified) {
			if aerr == nil {
				aerr = &AlgorithmError{Role: "OAEP label source", OID: oid}
			}
		} else {
			var l cryptobyte.String
			if hasP && (!p.ReadASN1(&l, cbasn1.OCTET_STRING) || !p.Empty()) {
				return 0, nil, nil, malformed("bad OAEP label")
			}
			label = l
		}
	}
	if !seq.Empty() {
		return 0, nil, nil, malformed("trailing data in RSAES-OAEP-params")
	}
	if aerr != nil {
		return 0, nil, aerr, nil
	}
	switch {
	case hash.Equal(oidSHA1) && mgfHash.Equal(oidSHA1):
		return RSAOAEPSHA1, label, nil, nil
	case hash.Equal(oidSHA256) && mgfHash.Equal(oidSHA256):
		return RSAOAEPSHA256, label, nil, nil
	case !hash.Equal(oidSHA1) && !hash.Equal(oidSHA256):
		return 0, nil, &AlgorithmError{Role: "OAEP hash", OID: hash}, nil
	default:
		return 0, nil, &AlgorithmError{Role: "OAEP mask generation", OID: mgfHash,
			Reason: "MGF1 hash differs from the OAEP hash " + hash.String()}, nil
	}
}

// readHashAlgorithm reads a hash AlgorithmIdentifier whose parameters are
// NULL or absent (RFC 4055 §2.1 requires accepting both).
func readHashAlgorithm(s *cryptobyte.String) (asn1.ObjectIdentifier, bool) {
	oid, p, hasP, ok := readAlgorithmIdentifier(s)
	if !ok {
		return nil, false
	}
	if hasP && !readNULL(&p) {
		return nil, false
	}
	return oid, true
}

// readAlgorithmIdentifier reads
//
//	AlgorithmIdentifier ::= SEQUENCE { algorithm OBJECT IDENTIFIER,
//	  parameters ANY DEFINED BY algorithm OPTIONAL }
//
// and returns the parameters as one complete element.
func readAlgorithmIdentifier(s *cryptobyte.String) (oid asn1.ObjectIdentifier, params cryptobyte.String, hasParams, ok bool) {
	var seq cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadASN1ObjectIdentifier(&oid) {
		return nil, nil, false, false
	}
	if seq.Empty() {
		return oid, nil, false, true
	}
	if !seq.ReadAnyASN1Element(&params, nil) || !seq.Empty() {
		return nil, nil, false, false
	}
	return oid, params, true, true
}

// parseInteger converts the contents of a two's-complement INTEGER, not
// necessarily minimally encoded, to a big.Int.
func parseInteger(b []byte) *big.Int {
	n := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(len(b))*8))
	}
	return n
}

// readNULL reports whether s is exactly one NULL (with empty contents).
func readNULL(s *cryptobyte.String) bool {
	var v cryptobyte.String
	return s.ReadASN1(&v, cbasn1.NULL) && len(v) == 0 && s.Empty()
}
