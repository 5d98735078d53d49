// Package catemplate holds certificate templates, resolves the template for a request
// the way NDES does, applies a template to a CSR and a rendered profile, and provides a
// small built-in CA and RA that sign through a crypto.Signer.
//
// In scepkit's flow it is what runs after the registration point's three phases (package
// crp): the template is resolved, then the CA issues. It imports package profile for
// the rendered profile and key types, and nothing else from scepkit.
//
// # Templates and resolution
//
// A [Template] says what an issued certificate looks like (validity, key usage, EKUs),
// what a request must bring (key types, minimum size) and what it may choose (subject
// or SANs from the request; both off by default). A [Resolver] picks one:
// [NDESResolver] from the key usage asked for, through the SignatureTemplate,
// EncryptionTemplate and GeneralPurposeTemplate names NDES keeps in its registry;
// [ProfileResolver] from the profile id. A missing, unknown or unpublished template is a
// [*TemplateError] wrapping [ErrNoTemplate], [ErrUnknownTemplate] or [ErrNotPublished].
//
// # Applying a template
//
// [Apply] checks the CSR's signature (proof of possession) and key, and returns the
// x509.Certificate to sign. Its validity is the shortest of the template's, the
// profile's and what remains of the CA's; the serial has 128 random bits; key usage and
// EKUs come from the template only; the subject and SANs from the rendered profile
// unless the template allows the request's. The subjectAltName extension is built here,
// because crypto/x509 cannot write UPN otherNames. [Apply]'s documentation lists every
// field it sets.
//
// # Templates for Wi-Fi and VPN certificates
//
// A certificate that a device presents to a RADIUS server (EAP-TLS) or an IKEv2
// gateway needs the Client Authentication EKU, digitalSignature key usage and a name
// the server maps to an account (the UPN SAN for NPS): ExampleTemplate_networks shows
// a Wi-Fi template and a VPN template (which adds the IKE EKU of RFC 4945) and what
// each server checks. Package profile's Bundle refuses a network bundle whose SCEP
// profile lacks the EKU or the key usage.
//
// # The built-in CA
//
// [CA] signs with any crypto.Signer (RSA or ECDSA; software, HSM or KMS), as a root or
// under a parent. [CA.Sign] takes no lock; revocation and CRLs ([CA.Revoke],
// [CA.CRL]) use their own mutex. [NewCA] creates a CA, [NewRA] an RA with NDES's
// separate signing and encryption certificates (or one combined), and [SaveCA],
// [LoadCA], [SaveRA], [LoadRA] keep them as PEM files (keys 0600, written atomically).
// The CA keeps revocations in memory only and does not queue requests: a template with
// RequiresApproval is the caller's cue to answer PENDING.
//
// # Compatibility
//
// Exported names follow semantic versioning once scepkit reaches v1. The sentinel
// errors are stable for errors.Is; the text of error messages is not. New Template
// fields keep the zero value meaning "as before".
package catemplate
