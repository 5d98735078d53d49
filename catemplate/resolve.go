package catemplate

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"strconv"

	"github.com/scepkit/scepkit/profile"
)

// ResolveRequest is what a [Resolver] decides from.
type ResolveRequest struct {
	// ProfileID is the id of the profile the request was rendered from.
	ProfileID string
	// KeyUsage is the key usage the request asks for. If zero, [NDESResolver] reads
	// the CSR's requested keyUsage extension.
	KeyUsage x509.KeyUsage
	// CSR is the request, for resolvers that look at more than key usage. May be nil.
	CSR *x509.CertificateRequest
	// Rendered is the rendered profile, if the caller has one. May be nil.
	Rendered *profile.Rendered
}

// Resolver picks the template for a request. Implementations return a published
// template, or an error wrapping [ErrNoTemplate], [ErrUnknownTemplate] or
// [ErrNotPublished] (as a [*TemplateError]); they must be safe for concurrent use.
// A *TemplateError is a verdict on the request (crp refuses it, its challenge spent);
// a context error, an error matching crp.ErrUnavailable, or any error that is not a
// *TemplateError (a template store that cannot be reached) is no verdict: crp treats
// it as transient and releases the request's challenge.
type Resolver interface {
	Resolve(ctx context.Context, req *ResolveRequest) (*Template, error)
}

// ResolverFunc adapts a function to [Resolver].
type ResolverFunc func(ctx context.Context, req *ResolveRequest) (*Template, error)

// Resolve calls f.
func (f ResolverFunc) Resolve(ctx context.Context, req *ResolveRequest) (*Template, error) {
	return f(ctx, req)
}

// Purpose is what a request's key usage is for, in NDES's terms.
type Purpose int

const (
	// GeneralPurpose: both signature and encipherment, or no key usage at all.
	GeneralPurpose Purpose = iota
	// Signature: digitalSignature (and possibly nonRepudiation) only.
	Signature
	// Encryption: keyEncipherment (or dataEncipherment, keyAgreement) only.
	Encryption
)

// String returns "general purpose", "signature" or "encryption", and "unknown(N)"
// for any other value.
func (p Purpose) String() string {
	switch p {
	case GeneralPurpose:
		return "general purpose"
	case Signature:
		return "signature"
	case Encryption:
		return "encryption"
	}
	return "unknown(" + strconv.Itoa(int(p)) + ")"
}

// PurposeOf maps a key usage to an NDES purpose: signature bits only (digitalSignature,
// nonRepudiation) give [Signature], encipherment bits only (keyEncipherment,
// dataEncipherment, keyAgreement) give [Encryption], both or neither give
// [GeneralPurpose]. NDES's own rule for a request without key usage is not documented;
// scepkit chooses the general-purpose template.
func PurposeOf(ku x509.KeyUsage) Purpose {
	const sig = x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment
	const enc = x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageKeyAgreement
	s, e := ku&sig != 0, ku&enc != 0
	switch {
	case s && !e:
		return Signature
	case e && !s:
		return Encryption
	}
	return GeneralPurpose
}

// NDESResolver picks a template the way NDES does, from the three names under its
// HKLM\SOFTWARE\Microsoft\Cryptography\MSCEP registry key, by the key usage the request
// asks for (see [PurposeOf]).
type NDESResolver struct {
	// SignatureTemplate is used for digitalSignature-only requests.
	SignatureTemplate string
	// EncryptionTemplate is used for keyEncipherment-only requests.
	EncryptionTemplate string
	// GeneralPurposeTemplate is used for requests asking for both, or neither.
	GeneralPurposeTemplate string
	// Templates holds the templates by name. Required.
	Templates Store
}

var _ Resolver = (*NDESResolver)(nil)

// Resolve implements [Resolver]. An empty name for the purpose is [ErrNoTemplate]; a name
// missing from Templates is [ErrUnknownTemplate]; an unpublished template is
// [ErrNotPublished].
func (n *NDESResolver) Resolve(ctx context.Context, req *ResolveRequest) (*Template, error) {
	ku := req.KeyUsage
	if ku == 0 && req.CSR != nil {
		ku = requestedKeyUsage(req.CSR)
	}
	purpose := PurposeOf(ku)
	var name string
	switch purpose {
	case Signature:
		name = n.SignatureTemplate
	case Encryption:
		name = n.EncryptionTemplate
	default:
		name = n.GeneralPurposeTemplate
	}
	return lookup(ctx, n.Templates, name, purpose.String())
}

// ProfileResolver picks a template by profile id, for deployments that map each
// Intune profile to its own template.
type ProfileResolver struct {
	// ByProfile maps a profile id to a template name.
	ByProfile map[string]string
	// Fallback, if set, resolves requests whose profile id is not in ByProfile.
	Fallback Resolver
	// Templates holds the templates by name. Required.
	Templates Store
}

var _ Resolver = (*ProfileResolver)(nil)

// Resolve implements [Resolver]: an unmapped profile without Fallback is
// [ErrNoTemplate].
func (p *ProfileResolver) Resolve(ctx context.Context, req *ResolveRequest) (*Template, error) {
	name, ok := p.ByProfile[req.ProfileID]
	if !ok && p.Fallback != nil {
		return p.Fallback.Resolve(ctx, req)
	}
	return lookup(ctx, p.Templates, name, "profile "+req.ProfileID)
}

func lookup(ctx context.Context, s Store, name, purpose string) (*Template, error) {
	if name == "" {
		return nil, &TemplateError{Purpose: purpose, Err: ErrNoTemplate}
	}
	if s == nil {
		return nil, &TemplateError{Template: name, Purpose: purpose, Err: ErrUnknownTemplate, Detail: "no template store"}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t, err := s.Template(ctx, name)
	if err != nil {
		return nil, err
	}
	if t == nil {
		return nil, &TemplateError{Template: name, Purpose: purpose, Err: ErrUnknownTemplate}
	}
	if !t.Published {
		return nil, &TemplateError{Template: name, Purpose: purpose, Err: ErrNotPublished}
	}
	return t, nil
}

// requestedKeyUsage reads the keyUsage extension a CSR requests (0 if none or malformed).
func requestedKeyUsage(csr *x509.CertificateRequest) x509.KeyUsage {
	for _, e := range csr.Extensions {
		if !e.Id.Equal(oidKeyUsage) {
			continue
		}
		var bits asn1.BitString
		if rest, err := asn1.Unmarshal(e.Value, &bits); err != nil || len(rest) != 0 {
			return 0
		}
		var ku x509.KeyUsage
		for i := 0; i < 9; i++ {
			if bits.At(i) != 0 {
				ku |= 1 << uint(i)
			}
		}
		return ku
	}
	return 0
}
