package catemplate

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	cryptorand "crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strconv"
	"time"

	"github.com/scepkit/scepkit/internal/rsabound"
	"github.com/scepkit/scepkit/profile"
)

// emptyRDNSequence is the DER of an empty subject.
var emptyRDNSequence = []byte{0x30, 0x00}

// Apply turns a template, a CSR and the rendered profile into the certificate template
// to sign (pass it and csr.PublicKey to [CA.Sign] or any x509.CreateCertificate).
//
// It refuses (as a [*TemplateError]): an invalid or unpublished template
// ([ErrInvalidTemplate], [ErrNotPublished]); a CSR whose signature does not verify
// ([ErrBadSignature]); a key type the template does not list ([ErrKeyType]) or below its
// minimum size ([ErrKeyTooSmall]) or an RSA key over 8192 bits, scep.MaxRSABits
// ([ErrKeyTooLarge], refused before its signature is checked); a CA not valid at now
// ([ErrCAExpired]); a result with neither subject nor SAN ([ErrNoSubject]).
//
// The fields it sets, and from where:
//
//   - SerialNumber: 128 random bits from rand (nil means crypto/rand), positive, non-zero.
//   - NotBefore: now minus t.Backdate, not before ca.NotBefore.
//   - NotAfter: the earliest of now+t.Validity, the profile's validity from now and
//     ca.NotAfter: a certificate never outlives its CA. The profile's validity
//     (r.Validity) counts only when r is not nil, its Value is positive and its
//     platform is neither iOS nor macOS: as in Intune, certificates for Apple
//     devices get the template's validity whatever the profile asks (see
//     profile.Profile's Validity field).
//   - RawSubject: r.RawSubject, or the CSR's subject if t.SubjectFromRequest.
//   - ExtraExtensions: the subjectAltName extension, built here (it carries UPN
//     otherNames), from r or, if t.SANsFromRequest, from the CSR; critical when the
//     subject is empty (RFC 5280, 4.2.1.6).
//   - KeyUsage, ExtKeyUsage, UnknownExtKeyUsage: from t only.
//   - BasicConstraintsValid true, IsCA false; SubjectKeyId: SHA-1 of the public key.
//   - PublicKey: csr.PublicKey (x509.CreateCertificate ignores it; it is for callers).
//
// Nothing else from the CSR is copied: requested extensions other than the SAN are
// ignored. Apply does not look at t.RequiresApproval; the caller answers PENDING.
func Apply(t *Template, csr *x509.CertificateRequest, r *profile.Rendered, ca *x509.Certificate, now time.Time, rand io.Reader) (*x509.Certificate, error) {
	return apply(t, csr, r, ca, now, rand, true)
}

// ApplyVerified is [Apply] for a CSR whose signature the caller has already verified
// (package crp does, in its gateway step, as proof of possession). It skips that one
// check, which costs an RSA verification, and nothing else. Never call it with a CSR
// you have not verified.
func ApplyVerified(t *Template, csr *x509.CertificateRequest, r *profile.Rendered, ca *x509.Certificate, now time.Time, rand io.Reader) (*x509.Certificate, error) {
	return apply(t, csr, r, ca, now, rand, false)
}

func apply(t *Template, csr *x509.CertificateRequest, r *profile.Rendered, ca *x509.Certificate, now time.Time, rand io.Reader, checkSignature bool) (*x509.Certificate, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	fail := func(err error, detail string) error {
		return &TemplateError{Template: t.Name, Err: err, Detail: detail}
	}
	if !t.Published {
		return nil, fail(ErrNotPublished, "")
	}
	if csr == nil {
		return nil, fail(ErrBadSignature, "no CSR")
	}
	if ca == nil {
		return nil, fail(ErrCAExpired, "no CA certificate")
	}
	// The key first: its size bounds what checking the signature costs.
	if err := checkKey(t, csr.PublicKey); err != nil {
		return nil, err
	}
	if checkSignature {
		if err := csr.CheckSignature(); err != nil {
			return nil, fail(ErrBadSignature, err.Error())
		}
	}

	// Validity.
	if now.Before(ca.NotBefore) || !now.Before(ca.NotAfter) {
		return nil, fail(ErrCAExpired, "CA valid "+ca.NotBefore.UTC().Format(time.RFC3339)+" to "+ca.NotAfter.UTC().Format(time.RFC3339))
	}
	notBefore := now.Add(-t.Backdate)
	if notBefore.Before(ca.NotBefore) {
		notBefore = ca.NotBefore
	}
	notAfter := now.Add(t.Validity)
	// The profile's validity shortens the template's, except on iOS and macOS, whose
	// certificates Intune issues for the template's (the Apple SCEP payload carries no
	// validity).
	if r != nil && (r.Profile == nil || (r.Profile.Platform != profile.IOS && r.Profile.Platform != profile.MacOS)) {
		if end := r.Validity.End(now.UTC()); r.Validity.Value > 0 && end.Before(notAfter) {
			notAfter = end
		}
	}
	if ca.NotAfter.Before(notAfter) {
		notAfter = ca.NotAfter
	}
	if !notAfter.After(notBefore) {
		return nil, fail(ErrCAExpired, "no validity left before the CA expires")
	}

	serial, err := RandomSerial(rand)
	if err != nil {
		return nil, err
	}

	// Subject and SANs.
	var rawSubject []byte
	switch {
	case t.SubjectFromRequest:
		rawSubject = csr.RawSubject
	case r != nil:
		rawSubject = r.RawSubject
	}
	if len(rawSubject) == 0 {
		rawSubject = emptyRDNSequence
	}
	var alt *profile.AltNames
	switch {
	case t.SANsFromRequest:
		if alt, err = profile.RequestAltNames(csr); err != nil {
			return nil, fail(ErrBadRequest, "CSR subjectAltName: "+err.Error())
		}
	case r != nil:
		alt = r.AltNames()
	}
	emptySubject := bytes.Equal(rawSubject, emptyRDNSequence)
	var exts []pkix.Extension
	if alt != nil && alt.Len() > 0 {
		ext, err := alt.Extension(emptySubject)
		if err != nil {
			return nil, fail(ErrNoSubject, "subjectAltName: "+err.Error())
		}
		exts = append(exts, ext)
	} else if emptySubject {
		return nil, fail(ErrNoSubject, "")
	}

	ski, err := subjectKeyID(csr.RawSubjectPublicKeyInfo)
	if err != nil {
		return nil, fail(ErrKeyType, err.Error())
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		RawSubject:            rawSubject,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              t.KeyUsage,
		ExtKeyUsage:           append([]x509.ExtKeyUsage(nil), t.ExtKeyUsages...),
		UnknownExtKeyUsage:    append([]asn1.ObjectIdentifier(nil), t.UnknownExtKeyUsages...),
		BasicConstraintsValid: true,
		IsCA:                  false,
		SubjectKeyId:          ski,
		ExtraExtensions:       exts,
		PublicKey:             csr.PublicKey,
	}, nil
}

// checkKey applies the template's key type and size rules, and refuses an RSA key
// over scep.MaxRSABits (8192 bits), or with an exponent or an even modulus crypto/rsa
// refuses.
func checkKey(t *Template, pub any) error {
	fail := func(err error, detail string) error {
		return &TemplateError{Template: t.Name, Err: err, Detail: detail}
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if !t.allowsKeyType(profile.RSA) {
			return fail(ErrKeyType, "rsa")
		}
		if k.N == nil {
			return fail(ErrKeyType, "rsa without modulus")
		}
		if !rsabound.OK(k) {
			return fail(ErrKeyTooLarge, "rsa "+strconv.Itoa(k.N.BitLen())+" bits, exponent "+strconv.Itoa(k.E))
		}
		if n := k.N.BitLen(); n < t.MinKeySize {
			return fail(ErrKeyTooSmall, strconv.Itoa(n)+" < "+strconv.Itoa(t.MinKeySize)+" bits")
		}
	case *ecdsa.PublicKey:
		var kt profile.KeyType
		switch k.Curve {
		case elliptic.P256():
			kt = profile.ECDSAP256
		case elliptic.P384():
			kt = profile.ECDSAP384
		default:
			return fail(ErrKeyType, "ecdsa "+k.Curve.Params().Name)
		}
		if !t.allowsKeyType(kt) {
			return fail(ErrKeyType, kt.String())
		}
		if n := k.Curve.Params().BitSize; n < t.MinECDSASize {
			return fail(ErrKeyTooSmall, strconv.Itoa(n)+" < "+strconv.Itoa(t.MinECDSASize)+" bits")
		}
	default:
		return fail(ErrKeyType, fmt.Sprintf("%T", pub))
	}
	return nil
}

// RandomSerial returns a positive serial number with 128 bits from rand (nil means
// crypto/rand): 16 random bytes read as an unsigned integer, redrawn if zero. Its DER
// encoding is at most 17 bytes, within RFC 5280's 20.
func RandomSerial(rand io.Reader) (*big.Int, error) {
	if rand == nil {
		rand = cryptorand.Reader
	}
	var b [16]byte
	for range 8 {
		if _, err := io.ReadFull(rand, b[:]); err != nil {
			return nil, fmt.Errorf("catemplate: reading serial number: %w", err)
		}
		if s := new(big.Int).SetBytes(b[:]); s.Sign() > 0 {
			return s, nil
		}
	}
	return nil, errors.New("catemplate: random source returns only zeros")
}

// subjectKeyID is the SHA-1 of the subjectPublicKey BIT STRING (RFC 5280 4.2.1.2 (1)).
func subjectKeyID(spki []byte) ([]byte, error) {
	var info struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if rest, err := asn1.Unmarshal(spki, &info); err != nil || len(rest) != 0 {
		return nil, errors.New("malformed public key info")
	}
	s := sha1.Sum(info.PublicKey.Bytes)
	return s[:], nil
}
