package scep

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sort"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/scepkit/scepkit/internal/rsabound"
)

// This file holds the CMS SignedData (RFC 5652 §5) that SCEP wraps around every
// message. scepkit parses and builds it itself rather than through a PKCS#7 module
// because a SCEP server must verify the signature over the signed attributes exactly as
// received (RFC 5652 §5.4: the client signed its own encoding; re-encoding breaks
// legacy clients whose SET is not in DER order) and must choose the verification time
// itself instead of trusting the sender's signingTime attribute.

var (
	oidSHA1   = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
	// MD5 and SHA-224 are never used; they are named in errors and logs.
	oidMD5    = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 5}
	oidSHA224 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 4}

	oidRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidSHA1WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}
	oidSHA256WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSHA384WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidSHA512WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
	oidECPublicKey   = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidECDSAWithSHA1 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}
	oidECDSAWithS256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithS384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSAWithS512 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
)

// hashForDigestOID maps a digestAlgorithm OID to a hash. MD5 and anything unknown are
// refused; SHA-1 only when legacy is allowed.
func hashForDigestOID(oid asn1.ObjectIdentifier, legacy bool) (crypto.Hash, error) {
	switch {
	case oid.Equal(oidSHA256):
		return crypto.SHA256, nil
	case oid.Equal(oidSHA384):
		return crypto.SHA384, nil
	case oid.Equal(oidSHA512):
		return crypto.SHA512, nil
	case oid.Equal(oidSHA1):
		if legacy {
			return crypto.SHA1, nil
		}
		return 0, fmt.Errorf("%w: SHA-1 digest (legacy algorithms not allowed)", ErrUnsupportedAlgorithm)
	}
	return 0, fmt.Errorf("%w: digest %s", ErrUnsupportedAlgorithm, digestName(oid))
}

// digestName names, for errors and logs, a digestAlgorithm OID hashForDigestOID does
// not take: MD5 and SHA-224 (sent by old clients) by name, anything else by its OID.
func digestName(oid asn1.ObjectIdentifier) string {
	switch {
	case oid.Equal(oidMD5):
		return "MD5"
	case oid.Equal(oidSHA224):
		return "SHA-224"
	}
	return oidText(oid)
}

func digestOID(h crypto.Hash) (asn1.ObjectIdentifier, error) {
	switch h {
	case crypto.SHA1:
		return oidSHA1, nil
	case crypto.SHA256:
		return oidSHA256, nil
	case crypto.SHA384:
		return oidSHA384, nil
	case crypto.SHA512:
		return oidSHA512, nil
	}
	return nil, fmt.Errorf("%w: digest %v", ErrUnsupportedAlgorithm, h)
}

// sigScheme is the public-key half of a SignerInfo's signatureAlgorithm.
type sigScheme int

const (
	schemeRSA sigScheme = iota + 1
	schemeECDSA
)

// schemeForSignatureOID maps a SignerInfo signatureAlgorithm to a scheme and, where the
// OID names one, a hash that must agree with the digestAlgorithm.
func schemeForSignatureOID(oid asn1.ObjectIdentifier) (sigScheme, crypto.Hash, error) {
	switch {
	case oid.Equal(oidRSAEncryption):
		return schemeRSA, 0, nil
	case oid.Equal(oidSHA1WithRSA):
		return schemeRSA, crypto.SHA1, nil
	case oid.Equal(oidSHA256WithRSA):
		return schemeRSA, crypto.SHA256, nil
	case oid.Equal(oidSHA384WithRSA):
		return schemeRSA, crypto.SHA384, nil
	case oid.Equal(oidSHA512WithRSA):
		return schemeRSA, crypto.SHA512, nil
	case oid.Equal(oidECPublicKey):
		return schemeECDSA, 0, nil
	case oid.Equal(oidECDSAWithSHA1):
		return schemeECDSA, crypto.SHA1, nil
	case oid.Equal(oidECDSAWithS256):
		return schemeECDSA, crypto.SHA256, nil
	case oid.Equal(oidECDSAWithS384):
		return schemeECDSA, crypto.SHA384, nil
	case oid.Equal(oidECDSAWithS512):
		return schemeECDSA, crypto.SHA512, nil
	}
	return 0, 0, fmt.Errorf("%w: signature algorithm %s", ErrUnsupportedAlgorithm, oidText(oid))
}

// attribute is one CMS Attribute as received: its type and the raw DER of each value.
type attribute struct {
	oid    asn1.ObjectIdentifier
	values []cryptobyte.String
}

type signerInfo struct {
	issuer      []byte   // raw issuer Name of the signer's issuerAndSerialNumber
	serial      *big.Int // serial of the signer's issuerAndSerialNumber
	ski         []byte   // subjectKeyIdentifier, when the sid is one
	digestAlg   asn1.ObjectIdentifier
	signedAttrs []byte // the [0] IMPLICIT element exactly as received, tag included
	attrs       []attribute
	sigAlg      asn1.ObjectIdentifier
	signature   []byte
}

// signedData is a parsed CMS SignedData.
type signedData struct {
	contentType asn1.ObjectIdentifier
	content     []byte // eContent, nil when absent
	rawCerts    [][]byte
	signers     []signerInfo
}

// maxDepthBER bounds the nesting the BER normalizer accepts.
const maxDepthBER = 32

// parseSignedData parses a ContentInfo holding a SignedData. Indefinite-length BER is
// normalized to DER first.
func parseSignedData(der []byte) (*signedData, error) {
	sd, err := parseSignedDataDER(der)
	if err != nil && errors.Is(err, ErrMalformed) {
		if n, berErr := berToDER(der); berErr == nil && !bytes.Equal(n, der) {
			return parseSignedDataDER(n)
		}
	}
	return sd, err
}

func parseSignedDataDER(der []byte) (*signedData, error) {
	input := cryptobyte.String(der)
	var ci, body cryptobyte.String
	var ct asn1.ObjectIdentifier
	if !input.ReadASN1(&ci, cbasn1.SEQUENCE) || !input.Empty() ||
		!ci.ReadASN1ObjectIdentifier(&ct) ||
		!ci.ReadASN1(&body, cbasn1.Tag(0).Constructed().ContextSpecific()) || !ci.Empty() {
		return nil, fmt.Errorf("%w: not a CMS ContentInfo", ErrMalformed)
	}
	if !ct.Equal(oidSignedData) {
		return nil, fmt.Errorf("%w: content type %s is not signedData", ErrMalformed, oidText(ct))
	}
	var sd cryptobyte.String
	var version int64
	var digestAlgs, encap cryptobyte.String
	if !body.ReadASN1(&sd, cbasn1.SEQUENCE) || !body.Empty() ||
		!sd.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) ||
		!sd.ReadASN1(&digestAlgs, cbasn1.SET) ||
		!sd.ReadASN1(&encap, cbasn1.SEQUENCE) {
		return nil, fmt.Errorf("%w: bad SignedData", ErrMalformed)
	}
	out := &signedData{}
	if !encap.ReadASN1ObjectIdentifier(&out.contentType) {
		return nil, fmt.Errorf("%w: bad encapContentInfo", ErrMalformed)
	}
	if encap.PeekASN1Tag(cbasn1.Tag(0).Constructed().ContextSpecific()) {
		var explicit cryptobyte.String
		if !encap.ReadASN1(&explicit, cbasn1.Tag(0).Constructed().ContextSpecific()) ||
			!explicit.ReadASN1Bytes(&out.content, cbasn1.OCTET_STRING) || !explicit.Empty() {
			return nil, fmt.Errorf("%w: bad eContent", ErrMalformed)
		}
		if out.content == nil {
			out.content = []byte{}
		}
	}
	if !encap.Empty() {
		return nil, fmt.Errorf("%w: trailing data in encapContentInfo", ErrMalformed)
	}
	if sd.PeekASN1Tag(cbasn1.Tag(0).Constructed().ContextSpecific()) {
		var certs cryptobyte.String
		if !sd.ReadASN1(&certs, cbasn1.Tag(0).Constructed().ContextSpecific()) {
			return nil, fmt.Errorf("%w: bad certificates", ErrMalformed)
		}
		for !certs.Empty() {
			var c cryptobyte.String
			var tag cbasn1.Tag
			if !certs.ReadAnyASN1Element(&c, &tag) {
				return nil, fmt.Errorf("%w: bad certificates", ErrMalformed)
			}
			if tag == cbasn1.SEQUENCE { // other certificate choices are skipped
				out.rawCerts = append(out.rawCerts, c)
			}
		}
	}
	if sd.PeekASN1Tag(cbasn1.Tag(1).Constructed().ContextSpecific()) {
		if !sd.SkipASN1(cbasn1.Tag(1).Constructed().ContextSpecific()) {
			return nil, fmt.Errorf("%w: bad crls", ErrMalformed)
		}
	}
	var sis cryptobyte.String
	if !sd.ReadASN1(&sis, cbasn1.SET) || !sd.Empty() {
		return nil, fmt.Errorf("%w: bad signerInfos", ErrMalformed)
	}
	for !sis.Empty() {
		si, err := parseSignerInfo(&sis)
		if err != nil {
			return nil, err
		}
		out.signers = append(out.signers, si)
	}
	return out, nil
}

func parseSignerInfo(sis *cryptobyte.String) (signerInfo, error) {
	var si signerInfo
	var s, sid, alg cryptobyte.String
	var version int64
	bad := func(what string) (signerInfo, error) {
		return signerInfo{}, fmt.Errorf("%w: bad SignerInfo %s", ErrMalformed, what)
	}
	if !sis.ReadASN1(&s, cbasn1.SEQUENCE) || !s.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) {
		return bad("header")
	}
	switch {
	case s.PeekASN1Tag(cbasn1.SEQUENCE):
		var issuer cryptobyte.String
		si.serial = new(big.Int)
		if !s.ReadASN1(&sid, cbasn1.SEQUENCE) ||
			!sid.ReadASN1Element(&issuer, cbasn1.SEQUENCE) ||
			!sid.ReadASN1Integer(si.serial) || !sid.Empty() {
			return bad("issuerAndSerialNumber")
		}
		si.issuer = issuer
	case s.PeekASN1Tag(cbasn1.Tag(0).ContextSpecific()):
		if !s.ReadASN1Bytes(&si.ski, cbasn1.Tag(0).ContextSpecific()) {
			return bad("subjectKeyIdentifier")
		}
	default:
		return bad("sid")
	}
	if !s.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&si.digestAlg) {
		return bad("digestAlgorithm")
	}
	if s.PeekASN1Tag(cbasn1.Tag(0).Constructed().ContextSpecific()) {
		var raw cryptobyte.String
		if !s.ReadASN1Element(&raw, cbasn1.Tag(0).Constructed().ContextSpecific()) {
			return bad("signedAttrs")
		}
		si.signedAttrs = raw
		attrs := raw
		var set cryptobyte.String
		if !attrs.ReadASN1(&set, cbasn1.Tag(0).Constructed().ContextSpecific()) {
			return bad("signedAttrs")
		}
		for !set.Empty() {
			var a, vals cryptobyte.String
			var at attribute
			if !set.ReadASN1(&a, cbasn1.SEQUENCE) || !a.ReadASN1ObjectIdentifier(&at.oid) ||
				!a.ReadASN1(&vals, cbasn1.SET) || !a.Empty() {
				return bad("attribute")
			}
			for !vals.Empty() {
				var v cryptobyte.String
				var tag cbasn1.Tag
				if !vals.ReadAnyASN1Element(&v, &tag) {
					return bad("attribute value")
				}
				at.values = append(at.values, v)
			}
			si.attrs = append(si.attrs, at)
		}
	}
	var sigAlg cryptobyte.String
	if !s.ReadASN1(&sigAlg, cbasn1.SEQUENCE) || !sigAlg.ReadASN1ObjectIdentifier(&si.sigAlg) ||
		!s.ReadASN1Bytes(&si.signature, cbasn1.OCTET_STRING) {
		return bad("signature")
	}
	if s.PeekASN1Tag(cbasn1.Tag(1).Constructed().ContextSpecific()) {
		s.SkipASN1(cbasn1.Tag(1).Constructed().ContextSpecific())
	}
	if !s.Empty() {
		return bad("trailing data")
	}
	return si, nil
}

// attr returns the single value of the signed attribute oid, or nil when absent. An
// attribute present twice, or with a number of values other than one, is an error.
func (si *signerInfo) attr(oid asn1.ObjectIdentifier) (cryptobyte.String, error) {
	var found cryptobyte.String
	seen := false
	for i := range si.attrs {
		if !si.attrs[i].oid.Equal(oid) {
			continue
		}
		if seen || len(si.attrs[i].values) != 1 {
			return nil, fmt.Errorf("%w: %s", ErrDuplicateAttribute, oidText(oid))
		}
		seen = true
		found = si.attrs[i].values[0]
	}
	return found, nil
}

// findSigner returns the certificate among certs that the SignerInfo names.
func (si *signerInfo) findSigner(certs []*x509.Certificate) *x509.Certificate {
	for _, c := range certs {
		if si.ski != nil {
			if len(c.SubjectKeyId) > 0 && bytes.Equal(c.SubjectKeyId, si.ski) {
				return c
			}
			continue
		}
		if bytes.Equal(c.RawIssuer, si.issuer) && c.SerialNumber.Cmp(si.serial) == 0 {
			return c
		}
	}
	return nil
}

// oidSubjectKeyID is the subjectKeyIdentifier extension (RFC 5280 §4.2.1.2).
var oidSubjectKeyID = asn1.ObjectIdentifier{2, 5, 29, 14}

// names reports whether the certificate raw is the one si names, reading only its
// serial, issuer and subjectKeyIdentifier, without parsing it: a request may carry
// many certificates, each costly to parse, of which only the signer's is needed. ok
// is false when raw does not have a certificate's structure that far.
func (si *signerInfo) names(raw []byte) (match, ok bool) {
	in := cryptobyte.String(raw)
	var cert, tbs cryptobyte.String
	serial := new(big.Int)
	var issuer cryptobyte.String
	version := int64(0) // v1 when absent (RFC 5280 §4.1.2.1)
	if !in.ReadASN1(&cert, cbasn1.SEQUENCE) || !cert.ReadASN1(&tbs, cbasn1.SEQUENCE) ||
		!tbs.ReadOptionalASN1Integer(&version, cbasn1.Tag(0).Constructed().ContextSpecific(), int64(0)) ||
		!tbs.ReadASN1Integer(serial) || !tbs.SkipASN1(cbasn1.SEQUENCE) ||
		!tbs.ReadASN1Element(&issuer, cbasn1.SEQUENCE) {
		return false, false
	}
	if si.ski == nil {
		return si.serial != nil && serial.Cmp(si.serial) == 0 && bytes.Equal(issuer, si.issuer), true
	}
	if len(si.ski) == 0 || version != 2 {
		// findSigner matches no empty identifier, and x509 reads the extensions of
		// a v3 certificate only: what it would not match is not parsed either.
		return false, true
	}
	var exts cryptobyte.String
	var present bool
	if !tbs.SkipASN1(cbasn1.SEQUENCE) || !tbs.SkipASN1(cbasn1.SEQUENCE) || !tbs.SkipASN1(cbasn1.SEQUENCE) ||
		!tbs.SkipOptionalASN1(cbasn1.Tag(1).ContextSpecific()) ||
		!tbs.SkipOptionalASN1(cbasn1.Tag(2).ContextSpecific()) ||
		!tbs.ReadOptionalASN1(&exts, &present, cbasn1.Tag(3).Constructed().ContextSpecific()) {
		return false, false
	}
	if !present {
		return false, true // no subjectKeyIdentifier: x509 would find none either
	}
	var list cryptobyte.String
	if !exts.ReadASN1(&list, cbasn1.SEQUENCE) {
		return false, false
	}
	for !list.Empty() {
		var ext, value, keyID cryptobyte.String
		var id asn1.ObjectIdentifier
		if !list.ReadASN1(&ext, cbasn1.SEQUENCE) || !ext.ReadASN1ObjectIdentifier(&id) ||
			!ext.SkipOptionalASN1(cbasn1.BOOLEAN) || !ext.ReadASN1(&value, cbasn1.OCTET_STRING) {
			return false, false
		}
		if id.Equal(oidSubjectKeyID) {
			if !value.ReadASN1(&keyID, cbasn1.OCTET_STRING) {
				return false, false
			}
			return bytes.Equal(keyID, si.ski), true
		}
	}
	return false, true
}

// verify checks the signature of si over content with the public key of signer, and
// returns the digest algorithm used. The signed attributes are hashed exactly as
// received, with their [0] tag replaced by SET OF as RFC 5652 §5.4 says.
func (si *signerInfo) verify(signer *x509.Certificate, content []byte, legacy bool) (crypto.Hash, error) {
	h, err := hashForDigestOID(si.digestAlg, legacy)
	if err != nil {
		return 0, err
	}
	scheme, sigHash, err := schemeForSignatureOID(si.sigAlg)
	if err != nil {
		return 0, err
	}
	if sigHash != 0 && sigHash != h {
		return 0, fmt.Errorf("%w: signature hash %v differs from digest %v", ErrUnsupportedAlgorithm, sigHash, h)
	}
	if si.signedAttrs == nil {
		return 0, fmt.Errorf("%w: no signed attributes", ErrMissingAttribute)
	}
	md, err := si.attr(oidMessageDigest)
	if err != nil {
		return 0, err
	}
	var digest []byte
	if md == nil || !md.ReadASN1Bytes(&digest, cbasn1.OCTET_STRING) {
		return 0, fmt.Errorf("%w: messageDigest", ErrMissingAttribute)
	}
	hc := h.New()
	hc.Write(content)
	if !bytes.Equal(hc.Sum(nil), digest) {
		return 0, fmt.Errorf("%w: message digest mismatch", ErrBadSignature)
	}
	hc.Reset()
	hc.Write([]byte{0x31})
	hc.Write(si.signedAttrs[1:])
	sum := hc.Sum(nil)
	if err := CheckKeySize(signer.PublicKey); err != nil {
		return 0, err
	}
	switch pub := signer.PublicKey.(type) {
	case *rsa.PublicKey:
		if scheme != schemeRSA {
			return 0, fmt.Errorf("%w: signature algorithm does not match the RSA signer key", ErrBadSignature)
		}
		if err := rsa.VerifyPKCS1v15(pub, h, sum, si.signature); err != nil {
			return 0, fmt.Errorf("%w: %v", ErrBadSignature, err)
		}
	case *ecdsa.PublicKey:
		if scheme != schemeECDSA {
			return 0, fmt.Errorf("%w: signature algorithm does not match the ECDSA signer key", ErrBadSignature)
		}
		if !ecdsa.VerifyASN1(pub, sum, si.signature) {
			return 0, fmt.Errorf("%w: ECDSA signature", ErrBadSignature)
		}
	default:
		return 0, fmt.Errorf("%w: signer key type %T", ErrUnsupportedAlgorithm, signer.PublicKey)
	}
	return h, nil
}

// MaxRSABits is the largest RSA modulus scepkit verifies or encrypts to, as crypto/tls
// bounds it: an RSA operation's cost grows with the square of the modulus, and an
// unauthenticated sender chooses its own key. catemplate applies the same bound.
const MaxRSABits = rsabound.MaxBits

// CheckKeySize refuses, with an error wrapping ErrUnsupportedAlgorithm (badAlg), an RSA
// public key larger than MaxRSABits or that crypto/rsa refuses (an even modulus, an
// exponent below 3, over 2^31-1 or even): call it before any operation with a key a
// requester supplied.
func CheckKeySize(pub any) error {
	if k, ok := pub.(*rsa.PublicKey); ok {
		switch {
		case k.N == nil:
			return fmt.Errorf("%w: RSA key without modulus", ErrUnsupportedAlgorithm)
		case !rsabound.OK(k):
			return fmt.Errorf("%w: RSA key of %d bits, exponent %d", ErrUnsupportedAlgorithm, k.N.BitLen(), k.E)
		}
	}
	return nil
}

// signedAttr is one attribute to sign: its type and the DER of its single value.
type signedAttr struct {
	oid   asn1.ObjectIdentifier
	value []byte
}

// signOptions describes one SignedData to build.
type signOptions struct {
	content []byte // eContent; nil for none
	attrs   []signedAttr
	cert    *x509.Certificate
	key     crypto.Signer
	hash    crypto.Hash
	certs   []*x509.Certificate // certificates field; the signer's is always first
	rand    io.Reader
}

// buildSignedData returns the DER of a ContentInfo holding a SignedData over
// o.content, signed by o.key with the contentType and messageDigest attributes added to
// o.attrs, the attributes sorted in DER order.
func buildSignedData(o signOptions) ([]byte, error) {
	dOID, err := digestOID(o.hash)
	if err != nil {
		return nil, err
	}
	var sigOID asn1.ObjectIdentifier
	switch o.key.Public().(type) {
	case *rsa.PublicKey:
		sigOID = oidRSAEncryption
	case *ecdsa.PublicKey:
		switch o.hash {
		case crypto.SHA1:
			sigOID = oidECDSAWithSHA1
		case crypto.SHA256:
			sigOID = oidECDSAWithS256
		case crypto.SHA384:
			sigOID = oidECDSAWithS384
		default:
			sigOID = oidECDSAWithS512
		}
	default:
		return nil, fmt.Errorf("%w: signer key type %T", ErrUnsupportedAlgorithm, o.key.Public())
	}
	h := o.hash.New()
	h.Write(o.content)
	attrs := make([][]byte, 0, len(o.attrs)+2)
	addAttr := func(oid asn1.ObjectIdentifier, value []byte) {
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
			b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(value) })
		})
		attrs = append(attrs, b.BytesOrPanic())
	}
	ctVal, _ := asn1.Marshal(oidData)
	mdVal, _ := asn1.Marshal(h.Sum(nil))
	addAttr(oidContentType, ctVal)
	addAttr(oidMessageDigest, mdVal)
	for _, a := range o.attrs {
		addAttr(a.oid, a.value)
	}
	sort.Slice(attrs, func(i, j int) bool { return bytes.Compare(attrs[i], attrs[j]) < 0 })
	var sb cryptobyte.Builder
	sb.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
		for _, a := range attrs {
			b.AddBytes(a)
		}
	})
	set, err := sb.Bytes()
	if err != nil {
		return nil, err
	}
	h.Reset()
	h.Write(set)
	sig, err := o.key.Sign(o.rand, h.Sum(nil), o.hash)
	if err != nil {
		return nil, fmt.Errorf("scep: signing: %w", err)
	}
	size := len(o.content) + len(set) + len(sig) + 256 // sized once: no regrowth while building
	if o.cert != nil {
		size += len(o.cert.Raw) + len(o.cert.RawIssuer)
	}
	for _, c := range o.certs {
		size += len(c.Raw)
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, size))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oidSignedData)
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(1)
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
					addAlgorithm(b, dOID, false)
				})
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidData)
					if o.content != nil {
						b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
							b.AddASN1OctetString(o.content)
						})
					}
				})
				addCertificates(b, o.cert, o.certs)
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1Int64(1)
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddBytes(o.cert.RawIssuer)
							b.AddASN1BigInt(o.cert.SerialNumber)
						})
						addAlgorithm(b, dOID, false)
						b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
							for _, a := range attrs {
								b.AddBytes(a)
							}
						})
						addAlgorithm(b, sigOID, sigOID.Equal(oidRSAEncryption))
						b.AddASN1OctetString(sig)
					})
				})
			})
		})
	})
	return b.Bytes()
}

func addAlgorithm(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, null bool) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		if null {
			b.AddASN1NULL()
		}
	})
}

// addCertificates writes the [0] IMPLICIT certificates field: first, then the rest
// (skipping duplicates of first). Nothing is written when there is no certificate.
func addCertificates(b *cryptobyte.Builder, first *x509.Certificate, rest []*x509.Certificate) {
	if first == nil && len(rest) == 0 {
		return
	}
	b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
		if first != nil {
			b.AddBytes(first.Raw)
		}
		for _, c := range rest {
			if first != nil && bytes.Equal(c.Raw, first.Raw) {
				continue
			}
			b.AddBytes(c.Raw)
		}
	})
}

// DegenerateCertificates returns the DER of a certs-only ("degenerate") CMS SignedData
// holding certs in the order given (RFC 8894 §3.4, RFC 5652 §5.2), but for later
// copies of the first, which are left out (an issued certificate may come back in its
// chain; a client takes the first as its own). This is the payload of a CertRep
// SUCCESS and of GetCACert when an RA is in use.
func DegenerateCertificates(certs []*x509.Certificate) ([]byte, error) {
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no certificates", ErrBadContent)
	}
	return degenerate(certs[0], certs[1:], nil)
}

// degenerate builds a certs-only SignedData; crl, when not nil, goes in the crls field.
func degenerate(first *x509.Certificate, rest []*x509.Certificate, crl []byte) ([]byte, error) {
	size := len(crl) + 128
	if first != nil {
		size += len(first.Raw)
	}
	for _, c := range rest {
		size += len(c.Raw)
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, size))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oidSignedData)
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(1)
				b.AddASN1(cbasn1.SET, func(*cryptobyte.Builder) {})
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidData)
				})
				addCertificates(b, first, rest)
				if crl != nil {
					b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
						b.AddBytes(crl)
					})
				}
				b.AddASN1(cbasn1.SET, func(*cryptobyte.Builder) {})
			})
		})
	})
	return b.Bytes()
}

// parseDegenerate returns the certificates and CRLs (raw DER) of a certs-only SignedData.
// As [parseSignedData] does, it refuses anything after the ContentInfo, after the
// SignedData in it, or after the SignedData's signerInfos.
func parseDegenerate(der []byte) ([]*x509.Certificate, [][]byte, error) {
	certs, crls, err := parseDegenerateDER(der)
	if err != nil {
		if n, berErr := berToDER(der); berErr == nil && !bytes.Equal(n, der) {
			return parseDegenerateDER(n)
		}
	}
	return certs, crls, err
}

func parseDegenerateDER(der []byte) ([]*x509.Certificate, [][]byte, error) {
	input := cryptobyte.String(der)
	var ci, body, sd, skip cryptobyte.String
	var ct asn1.ObjectIdentifier
	var version int64
	if !input.ReadASN1(&ci, cbasn1.SEQUENCE) || !ci.ReadASN1ObjectIdentifier(&ct) || !ct.Equal(oidSignedData) ||
		!ci.ReadASN1(&body, cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!body.ReadASN1(&sd, cbasn1.SEQUENCE) ||
		!sd.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) ||
		!sd.ReadASN1(&skip, cbasn1.SET) || !sd.ReadASN1(&skip, cbasn1.SEQUENCE) {
		return nil, nil, fmt.Errorf("%w: not a certs-only SignedData", ErrBadContent)
	}
	if !input.Empty() || !ci.Empty() || !body.Empty() {
		return nil, nil, fmt.Errorf("%w: trailing data after the certs-only SignedData", ErrBadContent)
	}
	var certs []*x509.Certificate
	var crls [][]byte
	if sd.PeekASN1Tag(cbasn1.Tag(0).Constructed().ContextSpecific()) {
		var raw cryptobyte.String
		if !sd.ReadASN1(&raw, cbasn1.Tag(0).Constructed().ContextSpecific()) {
			return nil, nil, fmt.Errorf("%w: bad certificates", ErrBadContent)
		}
		for !raw.Empty() {
			var c cryptobyte.String
			if !raw.ReadASN1Element(&c, cbasn1.SEQUENCE) {
				return nil, nil, fmt.Errorf("%w: bad certificates", ErrBadContent)
			}
			cert, err := x509.ParseCertificate(c)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: %s", ErrBadContent, errText(err))
			}
			certs = append(certs, cert)
		}
	}
	if sd.PeekASN1Tag(cbasn1.Tag(1).Constructed().ContextSpecific()) {
		var raw cryptobyte.String
		if !sd.ReadASN1(&raw, cbasn1.Tag(1).Constructed().ContextSpecific()) {
			return nil, nil, fmt.Errorf("%w: bad crls", ErrBadContent)
		}
		for !raw.Empty() {
			var c cryptobyte.String
			if !raw.ReadASN1Element(&c, cbasn1.SEQUENCE) {
				return nil, nil, fmt.Errorf("%w: bad crls", ErrBadContent)
			}
			crls = append(crls, c)
		}
	}
	// signerInfos (empty in a certs-only SignedData) ends the SignedData.
	if !sd.ReadASN1(&skip, cbasn1.SET) || !sd.Empty() {
		return nil, nil, fmt.Errorf("%w: bad signerInfos or trailing data in the certs-only SignedData", ErrBadContent)
	}
	return certs, crls, nil
}
