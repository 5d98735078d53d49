package catemplate

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math"
	"reflect"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/scepkit/scepkit/profile"
)

// This file encodes the end-entity certificates that [Apply] describes without going
// through x509.CreateCertificate, which builds the to-be-signed part by reflection and
// then verifies its own signature: on one enrollment those cost about as much as every
// other step of the gateway together. The encoding follows CreateCertificate's choices
// exactly (field order, extension order, time types, algorithm parameters), so that
// for the same template and a deterministic signature both produce the same bytes;
// TestSignDirectMatchesCreateCertificate holds it to that. Any template field outside
// the set Apply fills makes [CA.Sign] use CreateCertificate instead.

// Extension OIDs the encoder writes itself.
var (
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidSubjectKeyID     = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidAuthorityKeyID   = asn1.ObjectIdentifier{2, 5, 29, 35}
)

// Signature algorithm identifiers, as CreateCertificate writes them.
var (
	oidSHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSAWithSHA512 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidEd25519         = asn1.ObjectIdentifier{1, 3, 101, 112}
)

// directAlgorithm is the signature algorithm CreateCertificate picks by default for a
// signer's public key: its identifier, whether the identifier carries NULL parameters,
// the hash, and the crypto/x509 name used to verify.
type directAlgorithm struct {
	oid      asn1.ObjectIdentifier
	null     bool
	hash     crypto.Hash
	x509Algo x509.SignatureAlgorithm
}

func directAlgorithmFor(pub crypto.PublicKey) (directAlgorithm, bool) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return directAlgorithm{oidSHA256WithRSA, true, crypto.SHA256, x509.SHA256WithRSA}, true
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return directAlgorithm{oidECDSAWithSHA256, false, crypto.SHA256, x509.ECDSAWithSHA256}, true
		case elliptic.P384():
			return directAlgorithm{oidECDSAWithSHA384, false, crypto.SHA384, x509.ECDSAWithSHA384}, true
		case elliptic.P521():
			return directAlgorithm{oidECDSAWithSHA512, false, crypto.SHA512, x509.ECDSAWithSHA512}, true
		}
	case ed25519.PublicKey:
		return directAlgorithm{oidEd25519, false, 0, x509.PureEd25519}, true
	}
	return directAlgorithm{}, false
}

func (a directAlgorithm) add(b *cryptobyte.Builder) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(a.oid)
		if a.null {
			b.AddASN1NULL()
		}
	})
}

// directEligible reports whether tmpl uses only the fields the direct encoder handles:
// those [Apply] sets. Every other field of x509.Certificate, including any a later Go
// release adds, must be at its zero value.
//
// It also leaves to CreateCertificate what the two would treat differently: a missing
// serial number (CreateCertificate draws one), a negative one (CreateCertificate
// refuses it), and object identifiers that encoding/asn1 and cryptobyte disagree on.
func directEligible(tmpl *x509.Certificate) bool {
	if len(tmpl.RawSubject) == 0 || tmpl.IsCA || tmpl.KeyUsage < 0 || tmpl.KeyUsage >= 1<<9 ||
		!inDirectYears(tmpl.NotBefore) || !inDirectYears(tmpl.NotAfter) ||
		tmpl.SerialNumber == nil || tmpl.SerialNumber.Sign() < 0 {
		return false
	}
	if !validOIDs(tmpl) {
		return false
	}
	for _, e := range tmpl.ExtraExtensions {
		for _, own := range []asn1.ObjectIdentifier{oidKeyUsage, oidExtKeyUsage, oidBasicConstraints, oidSubjectKeyID, oidAuthorityKeyID} {
			if e.Id.Equal(own) {
				return false
			}
		}
	}
	rest := *tmpl
	rest.SerialNumber = nil
	rest.RawSubject = nil
	rest.NotBefore, rest.NotAfter = time.Time{}, time.Time{}
	rest.KeyUsage = 0
	rest.ExtKeyUsage, rest.UnknownExtKeyUsage = nil, nil
	rest.BasicConstraintsValid = false
	rest.SubjectKeyId = nil
	rest.ExtraExtensions = nil
	rest.PublicKey = nil // CreateCertificate ignores it too
	return reflect.ValueOf(&rest).Elem().IsZero()
}

// directOID reports whether encoding/asn1 (in CreateCertificate) and cryptobyte (here)
// encode oid alike. Both refuse fewer than two arcs, a first arc above 2 and a second
// arc of 40 or more under 0 or 1; but encoding/asn1 writes negative arcs (as nothing,
// leaving a malformed identifier) where cryptobyte refuses them, and it computes the
// first subidentifier, 40*first+second, in an int, which overflows on 32-bit
// platforms where cryptobyte's int64 does not.
func directOID(oid asn1.ObjectIdentifier) bool {
	if len(oid) < 2 || oid[0] > 2 || (oid[0] < 2 && oid[1] >= 40) || oid[1] > math.MaxInt-80 {
		return false
	}
	for _, v := range oid {
		if v < 0 {
			return false
		}
	}
	return true
}

// inDirectYears reports whether t's year has four digits, as both ASN.1 time types
// need.
func inDirectYears(t time.Time) bool {
	y := t.UTC().Year()
	return y >= 0 && y <= 9999
}

// errNotDirect says that a template or key is outside what signDirect encodes; the
// caller uses x509.CreateCertificate.
var errNotDirect = errors.New("catemplate: not for the direct encoder")

// signDirect issues tmpl for pub with ca's key, as x509.CreateCertificate would, and
// returns the certificate's DER. It returns errNotDirect, having done nothing, for a
// template or key it does not handle. Its other errors are unprefixed: [CA.Sign]
// wraps them.
//
// Sign has checked that the signer holds the CA certificate's key (CA.Validate), as
// CreateCertificate would. signDirect verifies the signature before returning it,
// except from a *rsa.PrivateKey: crypto/rsa already checks each of its private-key
// results with the public key (against fault attacks on RSA-CRT), so a second check
// would only repeat it.
func (ca *CA) signDirect(tmpl *x509.Certificate, pub crypto.PublicKey) ([]byte, error) {
	parent := ca.Certificate
	if !directEligible(tmpl) || len(parent.RawSubject) == 0 || parent.PublicKey == nil {
		return nil, errNotDirect
	}
	switch pub.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		return nil, errNotDirect
	}
	signerPub := ca.Signer.Public()
	alg, ok := directAlgorithmFor(signerPub)
	if !ok {
		return nil, errNotDirect
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var ekuOIDs []asn1.ObjectIdentifier
	for _, u := range tmpl.ExtKeyUsage {
		oid, ok := profile.ExtKeyUsageOID(u)
		if !ok {
			return nil, errNotDirect
		}
		ekuOIDs = append(ekuOIDs, oid)
	}
	ekuOIDs = append(ekuOIDs, tmpl.UnknownExtKeyUsage...)

	var aki []byte
	if !bytes.Equal(parent.RawSubject, tmpl.RawSubject) {
		aki = parent.SubjectKeyId
	}

	b := cryptobyte.NewBuilder(make([]byte, 0, 1024))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1Int64(2) // v3
		})
		b.AddASN1BigInt(tmpl.SerialNumber)
		alg.add(b)
		b.AddBytes(parent.RawSubject)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			addTime(b, tmpl.NotBefore)
			addTime(b, tmpl.NotAfter)
		})
		b.AddBytes(tmpl.RawSubject)
		b.AddBytes(spki)
		if tmpl.KeyUsage == 0 && len(ekuOIDs) == 0 && !tmpl.BasicConstraintsValid &&
			len(tmpl.SubjectKeyId) == 0 && len(aki) == 0 && len(tmpl.ExtraExtensions) == 0 {
			return
		}
		b.AddASN1(cbasn1.Tag(3).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				if tmpl.KeyUsage != 0 {
					addExtension(b, oidKeyUsage, true, func(b *cryptobyte.Builder) { addKeyUsage(b, tmpl.KeyUsage) })
				}
				if len(ekuOIDs) > 0 {
					addExtension(b, oidExtKeyUsage, false, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							for _, oid := range ekuOIDs {
								b.AddASN1ObjectIdentifier(oid)
							}
						})
					})
				}
				if tmpl.BasicConstraintsValid {
					// Not a CA and no path length: an empty SEQUENCE.
					addExtension(b, oidBasicConstraints, true, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(*cryptobyte.Builder) {})
					})
				}
				if len(tmpl.SubjectKeyId) > 0 {
					addExtension(b, oidSubjectKeyID, false, func(b *cryptobyte.Builder) {
						b.AddASN1OctetString(tmpl.SubjectKeyId)
					})
				}
				if len(aki) > 0 {
					addExtension(b, oidAuthorityKeyID, false, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(aki) })
						})
					})
				}
				for _, e := range tmpl.ExtraExtensions {
					addExtension(b, e.Id, e.Critical, func(b *cryptobyte.Builder) { b.AddBytes(e.Value) })
				}
			})
		})
	})
	tbs, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encoding certificate: %w", err)
	}

	sig, err := crypto.SignMessage(ca.Signer, ca.rand(), tbs, alg.hash)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSigner, err)
	}
	if _, checked := ca.Signer.(*rsa.PrivateKey); !checked {
		verifier := &x509.Certificate{PublicKey: signerPub}
		if err := verifier.CheckSignature(alg.x509Algo, tbs, sig); err != nil {
			return nil, fmt.Errorf("%w: it returned an invalid signature: %w", ErrSigner, err)
		}
	}

	c := cryptobyte.NewBuilder(make([]byte, 0, len(tbs)+len(sig)+32))
	c.AddASN1(cbasn1.SEQUENCE, func(c *cryptobyte.Builder) {
		c.AddBytes(tbs)
		alg.add(c)
		c.AddASN1BitString(sig)
	})
	return c.Bytes()
}

// addExtension writes one Extension; critical is written only when true (DER omits a
// DEFAULT FALSE).
func addExtension(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, critical bool, value cryptobyte.BuilderContinuation) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		if critical {
			b.AddASN1Boolean(true)
		}
		b.AddASN1(cbasn1.OCTET_STRING, value)
	})
}

// addKeyUsage writes the KeyUsage BIT STRING: bit 0 (digitalSignature) is the most
// significant bit of the first byte, trailing zero bits are dropped (DER, X.690
// 11.2.2).
func addKeyUsage(b *cryptobyte.Builder, ku x509.KeyUsage) {
	var bits [2]byte
	n := 0 // number of bits up to the last one set
	for i := 0; i < 16; i++ {
		if ku&(1<<i) != 0 {
			bits[i/8] |= 0x80 >> (i % 8)
			n = i + 1
		}
	}
	content := bits[:(n+7)/8]
	b.AddASN1(cbasn1.BIT_STRING, func(b *cryptobyte.Builder) {
		b.AddUint8(uint8((8 - n%8) % 8))
		b.AddBytes(content)
	})
}

// addTime writes t in UTC as UTCTime for the years 1950 to 2049 and as GeneralizedTime
// otherwise (RFC 5280, 4.1.2.5), to the second.
func addTime(b *cryptobyte.Builder, t time.Time) {
	t = t.UTC()
	if y := t.Year(); y >= 1950 && y < 2050 {
		b.AddASN1(cbasn1.UTCTime, func(b *cryptobyte.Builder) { b.AddBytes(t.AppendFormat(nil, "060102150405Z")) })
		return
	}
	b.AddASN1(cbasn1.GeneralizedTime, func(b *cryptobyte.Builder) { b.AddBytes(t.AppendFormat(nil, "20060102150405Z")) })
}
