package main

import (
	"encoding/asn1"
	"errors"
	"strconv"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/scepkit/scepkit/scep"
)

// SCEP signed attributes the generator reads from a reply it does not verify.
var (
	oidPKIStatus      = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 3}
	oidFailInfo       = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 4}
	oidRecipientNonce = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 6}
)

// peeked is what -verify=false reads of a CertRep: its status, failInfo and
// recipientNonce, from the signed attributes, without checking the signature over
// them. It is for measuring a server the generator trusts, never for a device.
type peeked struct {
	status   scep.PKIStatus
	failInfo scep.FailInfo
	nonce    []byte
}

var errPeek = errors.New("not a DER CertRep")

// peekCertRep walks a DER ContentInfo → SignedData → first SignerInfo's signed
// attributes. Anything else (BER, missing attributes) is errPeek, and the caller
// falls back to the verifying parser.
func peekCertRep(der []byte) (*peeked, error) {
	in := cryptobyte.String(der)
	var ci, content, sd, skip, infos, info, attrs cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !in.ReadASN1(&ci, cbasn1.SEQUENCE) || !ci.ReadASN1ObjectIdentifier(&oid) ||
		!ci.ReadASN1(&content, cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!content.ReadASN1(&sd, cbasn1.SEQUENCE) {
		return nil, errPeek
	}
	// version, digestAlgorithms, encapContentInfo, then optional certificates [0] and
	// crls [1], then signerInfos.
	if !sd.SkipASN1(cbasn1.INTEGER) || !sd.SkipASN1(cbasn1.SET) || !sd.SkipASN1(cbasn1.SEQUENCE) ||
		!sd.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!sd.SkipOptionalASN1(cbasn1.Tag(1).Constructed().ContextSpecific()) ||
		!sd.ReadASN1(&infos, cbasn1.SET) || !infos.ReadASN1(&info, cbasn1.SEQUENCE) {
		return nil, errPeek
	}
	// version, sid (issuerAndSerialNumber or [0] subjectKeyIdentifier), digestAlgorithm,
	// then the signed attributes [0].
	if !info.SkipASN1(cbasn1.INTEGER) || !info.ReadAnyASN1(&skip, nil) || !info.SkipASN1(cbasn1.SEQUENCE) ||
		!info.ReadASN1(&attrs, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return nil, errPeek
	}
	p := &peeked{}
	var status, fail string
	for !attrs.Empty() {
		var attr, values, value cryptobyte.String
		var typ asn1.ObjectIdentifier
		if !attrs.ReadASN1(&attr, cbasn1.SEQUENCE) || !attr.ReadASN1ObjectIdentifier(&typ) ||
			!attr.ReadASN1(&values, cbasn1.SET) {
			return nil, errPeek
		}
		var tag cbasn1.Tag
		if !values.ReadAnyASN1(&value, &tag) {
			return nil, errPeek
		}
		switch {
		case typ.Equal(oidPKIStatus):
			status = string(value)
		case typ.Equal(oidFailInfo):
			fail = string(value)
		case typ.Equal(oidRecipientNonce):
			p.nonce = []byte(value)
		}
	}
	n, err := strconv.Atoi(status)
	if err != nil {
		return nil, errPeek
	}
	p.status = scep.PKIStatus(n)
	if p.status == scep.Failure {
		if p.failInfo, err = scep.ParseFailInfo(fail); err != nil {
			return nil, errPeek
		}
	}
	return p, nil
}
