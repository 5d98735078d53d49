package catemplate

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"time"

	"github.com/scepkit/scepkit/profile"
)

// Sentinel errors. Resolvers and [Apply] wrap them in a [*TemplateError] naming the
// template; test with errors.Is.
var (
	// ErrUnknownTemplate: no template by that name in the store.
	ErrUnknownTemplate = errors.New("catemplate: unknown template")
	// ErrNoTemplate: the resolver has no template configured for this purpose or profile.
	ErrNoTemplate = errors.New("catemplate: no template configured for this request")
	// ErrNotPublished: the template exists but is not published on the CA.
	ErrNotPublished = errors.New("catemplate: template not published on the CA")
	// ErrKeyTooSmall: the request's key is below the template's minimum size.
	ErrKeyTooSmall = errors.New("catemplate: key too small for template")
	// ErrKeyTooLarge: the request's RSA key is larger than 8192 bits (scep.MaxRSABits), or its
	// modulus or exponent is one crypto/rsa refuses (even, say); refused before its
	// signature is checked.
	ErrKeyTooLarge = errors.New("catemplate: key too large")
	// ErrKeyType: the request's key type is not allowed by the template.
	ErrKeyType = errors.New("catemplate: key type not allowed by template")
	// ErrBadSignature: the CSR's signature does not verify (no proof of possession).
	ErrBadSignature = errors.New("catemplate: CSR signature does not verify")
	// ErrBadRequest: the CSR carries something malformed that Apply would copy.
	ErrBadRequest = errors.New("catemplate: malformed request")
	// ErrNoSubject: the certificate would have neither a subject nor a SAN.
	ErrNoSubject = errors.New("catemplate: no subject and no subject alternative name")
	// ErrCAExpired: the CA is expired, or not yet valid, at issuance time.
	ErrCAExpired = errors.New("catemplate: CA certificate not valid at issuance time")
	// ErrInvalidTemplate: the template itself is malformed (see [Template.Validate]).
	ErrInvalidTemplate = errors.New("catemplate: invalid template")
)

// TemplateError names the template an error is about. It unwraps to a sentinel.
type TemplateError struct {
	// Template is the template name ("" if none was resolved).
	Template string
	// Purpose is what the request asked for, when a resolver failed: "signature",
	// "encryption", "general purpose", or "profile <id>".
	Purpose string
	// Err is the sentinel of this package the error is (ErrKeyType, ErrCAExpired,
	// ...); Unwrap returns it, so test it with errors.Is.
	Err error
	// Detail says what exactly was refused, for logs and operators: the key at
	// fault (such as "2048 < 3072 bits" or "ecdsa P-224"), the CA's validity
	// window, the template setting that is invalid, why the CSR's signature or
	// subjectAltName did not verify or parse. Free text, "" when Err says it all;
	// Error appends it after Err. It is not meant to be parsed, and package crp
	// never sends it to a device.
	Detail string
}

// Error implements error.
func (e *TemplateError) Error() string {
	s := "catemplate: "
	if e.Template != "" {
		s += "template " + fmt.Sprintf("%q", e.Template) + ": "
	}
	if e.Purpose != "" {
		s += "for " + e.Purpose + ": "
	}
	switch {
	case e.Err != nil && e.Detail != "":
		s += trimPrefix(e.Err.Error()) + ": " + e.Detail
	case e.Err != nil:
		s += trimPrefix(e.Err.Error())
	case e.Detail != "":
		s += e.Detail // a resolver's verdict without a sentinel
	default:
		s += "refused"
	}
	return s
}

func trimPrefix(s string) string {
	const p = "catemplate: "
	if len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}

// Unwrap returns Err.
func (e *TemplateError) Unwrap() error { return e.Err }

// Template is a certificate template as an AD CS enterprise CA holds it: what an issued
// certificate looks like, what a request must bring, and what it may choose.
//
// Zero values: Validity must be positive; KeyUsage zero means the certificate carries no
// keyUsage extension; no EKUs means no extendedKeyUsage extension; MinKeySize zero
// means no minimum; KeyTypes empty means RSA only; SubjectFromRequest and
// SANsFromRequest false mean the rendered profile decides; Published false means the
// CA refuses it; Backdate zero means NotBefore is the issuance time.
type Template struct {
	// Name is the template name (not the display name), as NDES's registry names it.
	Name string
	// Validity is the longest lifetime the template issues.
	Validity time.Duration
	// Backdate moves NotBefore into the past to absorb device clock skew (at most
	// one hour; never before the CA's own NotBefore).
	Backdate time.Duration
	// KeyUsage is set on every certificate issued from the template.
	KeyUsage x509.KeyUsage
	// ExtKeyUsages and UnknownExtKeyUsages are set on every certificate issued.
	ExtKeyUsages        []x509.ExtKeyUsage
	UnknownExtKeyUsages []asn1.ObjectIdentifier
	// MinKeySize is the smallest RSA modulus in bits (0: no minimum). It does not
	// apply to ECDSA keys; see MinECDSASize.
	MinKeySize int
	// MinECDSASize is the smallest curve size for ECDSA keys (0: no minimum).
	MinECDSASize int
	// KeyTypes lists the key types allowed; empty means RSA only.
	KeyTypes []profile.KeyType
	// SubjectFromRequest takes the subject from the CSR instead of the rendered
	// profile (AD CS "supply in the request"). Dangerous: the requester names itself.
	// Only set it if something else (crp's profile check) has verified the CSR.
	SubjectFromRequest bool
	// SANsFromRequest takes the subjectAltName extension from the CSR instead of the
	// rendered profile, under the same warning as SubjectFromRequest.
	SANsFromRequest bool
	// Published says the template is published on the CA; an unpublished template
	// resolves to [ErrNotPublished].
	Published bool
	// RequiresApproval says issuance needs a CA manager's approval: the caller answers
	// PENDING. [Apply] does not look at it.
	RequiresApproval bool
}

// Validate reports a malformed template as [ErrInvalidTemplate].
func (t *Template) Validate() error {
	bad := func(d string) error {
		name := ""
		if t != nil {
			name = t.Name
		}
		return &TemplateError{Template: name, Err: ErrInvalidTemplate, Detail: d}
	}
	switch {
	case t == nil:
		return bad("nil template")
	case t.Name == "":
		return bad("empty name")
	case t.Validity <= 0:
		return bad("validity must be positive")
	case t.Backdate < 0 || t.Backdate > time.Hour:
		return bad("backdate must be 0 to 1h")
	case t.MinKeySize < 0 || t.MinECDSASize < 0:
		return bad("negative minimum key size")
	}
	for _, k := range t.KeyTypes {
		if k != profile.RSA && k != profile.ECDSAP256 && k != profile.ECDSAP384 {
			return bad("unknown key type " + k.String())
		}
	}
	return nil
}

func (t *Template) allowsKeyType(k profile.KeyType) bool {
	if len(t.KeyTypes) == 0 {
		return k == profile.RSA
	}
	for _, a := range t.KeyTypes {
		if a == k {
			return true
		}
	}
	return false
}

// Store looks templates up by name.
type Store interface {
	// Template returns the named template, or an error wrapping [ErrUnknownTemplate].
	// It must be safe for concurrent use and must not return a template the caller
	// may not read (callers do not modify the result).
	Template(ctx context.Context, name string) (*Template, error)
}

// MapStore is a [Store] backed by a map keyed by template name. It is safe for
// concurrent reads; do not modify it while it is in use.
type MapStore map[string]*Template

// Template implements [Store].
func (m MapStore) Template(_ context.Context, name string) (*Template, error) {
	if t, ok := m[name]; ok && t != nil {
		return t, nil
	}
	return nil, &TemplateError{Template: name, Err: ErrUnknownTemplate}
}

var _ Store = MapStore(nil)
