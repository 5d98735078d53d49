package crp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"sync/atomic"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/internal/rollover"
	"github.com/scepkit/scepkit/scep"
)

// Rollover is the CA and RA a [RegistrationPoint], and the scep.Server [NewServer]
// builds for it, move to at a set time (RFC 8894 §3.5.2). Before At, the server
// announces the next CA and RA through GetNextCACert, signed by the current RA; from
// At on, certificates are issued by CA, GetCACert answers with RA and CA, CertReps are
// signed by RA, and renewals of certificates the previous CA issued are still
// accepted while those certificates are valid. Requests still encrypted to the
// previous RA are decrypted and answered as [scep.Rollover] describes, with a
// certificate of the previous CA (RegistrationPoint.Issuer), the only CA such a
// device trusts, ending no later than that CA; once the previous CA has expired they
// are refused before their challenge is claimed.
//
// The CA is chosen once per transaction, when the request is received (for SCEP,
// scep.Request.CACert), and kept for its template, issuance, records and reply: a
// switch while a request is decided changes nothing for it.
type Rollover struct {
	// At is the switch time, on the registration point's clock (Now). Required.
	At time.Time
	// CA issues from At on. Nil keeps the current CA and Issuer: only the RA rolls
	// over, which is what an RA certificate's end of life needs.
	CA *catemplate.CA
	// Issuer replaces the registration point's Issuer from At on; nil means a
	// [CAIssuer] of CA. Set it to keep a wrapper the Issuer has (a queue, a
	// counter) around the new CA. Only used with CA.
	Issuer Issuer
	// RA signs CertReps and decrypts requests from At on; its certificates should be
	// issued by CA (or by the current CA when CA is nil), since clients accept only
	// an RA their CA issued. Required.
	RA *catemplate.RA
	// CRL returns CA's current CRL, for a GetCRL that names CA as the issuer (RFC
	// 8894 §3.3.4) from At on; RegistrationPoint.CRL answers for the previous CA,
	// and nil refuses GetCRL for CA. Only used with CA.
	CRL func(ctx context.Context) ([]byte, error)
}

// validate checks r; its certificates must be valid at its switch, or now when that
// is later (a switch already past).
func (r *Rollover) validate(now time.Time) error {
	switch {
	case r.At.IsZero() || r.RA == nil || r.RA.SigningCertificate == nil || r.RA.Signer == nil ||
		r.RA.EncryptionCertificate == nil || r.RA.Decrypter == nil:
		return errors.New("crp: Rollover needs At and an RA with its signing and encryption pairs")
	case r.CA != nil && (r.CA.Certificate == nil || r.CA.Signer == nil || !r.CA.Certificate.IsCA):
		return errors.New("crp: Rollover.CA needs a CA certificate and its signer")
	case r.CA == nil && r.Issuer != nil:
		return errors.New("crp: Rollover.Issuer needs Rollover.CA, the certificate it issues under")
	}
	return rollover.CheckValidity("crp", r.At, now, r.RA.SigningCertificate, r.RA.EncryptionCertificate, r.caCertificate())
}

// caCertificate is the certificate of CA; nil for an RA-only rollover.
func (r *Rollover) caCertificate() *x509.Certificate {
	if r.CA == nil {
		return nil
	}
	return r.CA.Certificate
}

// rolledOver reports whether the registration point issues with its Rollover's CA at
// now.
func (rp *RegistrationPoint) rolledOver(now time.Time) bool {
	r := rp.Rollover
	return r != nil && r.CA != nil && !now.Before(r.At)
}

// issuingCA is the CA a transaction issues under: its certificate (the template's
// CA, what the issued certificate must chain to) and the Issuer that signs with it.
// It is chosen once, when the transaction begins, and carried through every step,
// so that a Rollover's switch in the middle of a transaction cannot resolve its
// template against one CA and issue it with the other, nor have it issued by a CA
// the requester does not trust.
type issuingCA struct {
	cert   *x509.Certificate
	issuer Issuer
}

// issuingAt is the CA in force at now: the Rollover's CA after its switch.
func (rp *RegistrationPoint) issuingAt(now time.Time) issuingCA {
	if rp.rolledOver(now) {
		if rp.Rollover.Issuer != nil {
			return issuingCA{rp.Rollover.CA.Certificate, rp.Rollover.Issuer}
		}
		return issuingCA{rp.Rollover.CA.Certificate, CAIssuer{CA: rp.Rollover.CA}}
	}
	return issuingCA{rp.firstCACert(), rp.Issuer}
}

// caHash identifies a CA certificate in a Record (Record.CAHash).
func caHash(ca *x509.Certificate) []byte {
	if ca == nil {
		return nil
	}
	sum := sha256.Sum256(ca.Raw)
	return sum[:]
}

// issuingByHash is the CA of ours that Record.CAHash names, or the CA in force at now
// when it names none of them (a record stored before it was kept).
func (rp *RegistrationPoint) issuingByHash(h []byte, now time.Time) issuingCA {
	if len(h) > 0 && rp.Rollover != nil && rp.Rollover.CA != nil {
		for _, ca := range []*x509.Certificate{rp.firstCACert(), rp.Rollover.CA.Certificate} {
			if bytes.Equal(h, caHash(ca)) {
				return rp.issuingFor(ca, now)
			}
		}
	}
	return rp.issuingAt(now)
}

// issuingFor is the CA of ours whose certificate is ca, the CA a scep.Server chose
// for a request (scep.Request.CACert: the one the requester trusts, which after a
// switch is still the previous CA for a request encrypted to the previous RA), or
// the CA in force at now when ca is nil or is not one of ours.
func (rp *RegistrationPoint) issuingFor(ca *x509.Certificate, now time.Time) issuingCA {
	if ca != nil && rp.Rollover != nil && rp.Rollover.CA != nil {
		if first := rp.firstCACert(); first != nil && ca.Equal(first) {
			return issuingCA{first, rp.Issuer}
		}
		if ca.Equal(rp.Rollover.CA.Certificate) {
			return rp.issuingAt(rp.Rollover.At)
		}
	}
	return rp.issuingAt(now)
}

// caCerts are the CA certificates whose certificates the registration point
// recognises as its own at now: the issuing one first, then the previous one after a
// rollover.
func (rp *RegistrationPoint) caCerts() []*x509.Certificate {
	cur := rp.caCert()
	if rp.rolledOver(rp.now()) {
		if prev := rp.firstCACert(); prev != nil && !prev.Equal(cur) {
			return []*x509.Certificate{cur, prev}
		}
	}
	return []*x509.Certificate{cur}
}

// signedByOurCA reports the error of checking cert's signature against the CA
// certificates of caCerts whose subject is cert's issuer: nil when one of them signed
// it. The names are compared first: most certificates asked about (a device's
// self-signed one, on every enrollment) are nobody's of ours, and a signature check
// costs a public-key operation. Of the CAs' errors, it returns the one that says
// most: a key identifier or a signature that differs rather than another CA's name.
func (rp *RegistrationPoint) signedByOurCA(cert *x509.Certificate) error {
	out := errIssuerName
	for _, ca := range rp.caCerts() {
		err := signedBy(cert, ca)
		if err == nil {
			return nil
		}
		if out == errIssuerName || out == errNoCertificate {
			out = err
		}
	}
	return out
}

// Why a certificate is not one the CA issued, found before any signature check
// (issuerMismatch).
var (
	errNoCertificate  = errors.New("no certificate, or no CA certificate, to compare")
	errIssuerName     = errors.New("issuer name differs from the CA's subject name")
	errAuthorityKeyID = errors.New("issuer name is the CA's, but the authority key identifier differs from " +
		"the CA's subject key identifier (another key under the same CA name)")
)

// signedBy reports the error of checking cert's signature against ca, after
// comparing the names and key identifiers (see issuerMismatch): a certificate of
// another CA costs no public-key operation.
func signedBy(cert, ca *x509.Certificate) error {
	return issuedUnder(cert, ca, signatureCheckHook.Load())
}

// issuedUnder is signedBy, calling hook (when not nil) before the signature check.
func issuedUnder(cert, ca *x509.Certificate, hook *func()) error {
	if err := issuerMismatch(ca, cert); err != nil {
		return err
	}
	if hook != nil {
		(*hook)()
	}
	return cert.CheckSignatureFrom(ca)
}

// mayHaveIssued reports whether ca may have issued cert, without a signature check
// (issuerMismatch finds nothing against it).
func mayHaveIssued(ca, cert *x509.Certificate) bool {
	return issuerMismatch(ca, cert) == nil
}

// issuerMismatch says why ca cannot have issued cert, without a signature check:
// cert's issuer name is not ca's subject (errIssuerName) or, when both carry key
// identifiers (RFC 5280 §4.2.1.1, §4.2.1.2), cert's authorityKeyIdentifier is not
// ca's subjectKeyIdentifier (errAuthorityKeyID). After a rollover to a CA with the
// same name (a CA renewed with a new key), the key identifier alone tells the two
// apart. It returns nil when ca may have issued cert.
func issuerMismatch(ca, cert *x509.Certificate) error {
	switch {
	case ca == nil || cert == nil:
		return errNoCertificate
	case !bytes.Equal(cert.RawIssuer, ca.RawSubject):
		return errIssuerName
	case keyIdentified(ca, cert) && !bytes.Equal(cert.AuthorityKeyId, ca.SubjectKeyId):
		return errAuthorityKeyID
	}
	return nil
}

// keyIdentified reports whether cert names its issuer's key and ca its own, so that
// mayHaveIssued compared them.
func keyIdentified(ca, cert *x509.Certificate) bool {
	return len(cert.AuthorityKeyId) > 0 && len(ca.SubjectKeyId) > 0
}

// signatureCheckHook, when set, is called before each certificate signature check
// signedBy makes (tests count them).
var signatureCheckHook atomic.Pointer[func()]

// scepRollover is the scep.Rollover of r on top of the server's current chain.
func (r *Rollover) scep(current []*x509.Certificate) *scep.Rollover {
	out := &scep.Rollover{At: r.At, CACerts: current, SignerCert: r.RA.SigningCertificate, Signer: r.RA.Signer,
		Recipients: []scep.Recipient{{Certificate: r.RA.EncryptionCertificate, Key: r.RA.Decrypter}}}
	if r.CA != nil {
		out.CACerts = append([]*x509.Certificate{r.CA.Certificate}, r.CA.Chain...)
	}
	return out
}

// crlOf returns the CRL source of the CA a GetCRL names (RFC 8894 §3.3.4: the
// issuer of the certificate asked about): RegistrationPoint.CRL for the first CA,
// Rollover.CRL for the next one after the switch; nil, false for an issuer that is
// not ours. When both CAs have the same name, the certificate on record with the
// serial tells them apart (the CA in force when there is none).
func (rp *RegistrationPoint) crlOf(ctx context.Context, ias *scep.IssuerAndSerial) (func(context.Context) ([]byte, error), bool) {
	firstCA := rp.firstCACert()
	var first, next bool
	for _, ca := range rp.caCerts() {
		switch {
		case ca == nil || !bytes.Equal(ias.Issuer, ca.RawSubject):
		case ca.Equal(firstCA):
			first = true
		default:
			next = true
		}
	}
	if first && next {
		c, err := rp.certificates().Lookup(ctx, ias.Serial)
		next = err != nil || signedBy(c.Certificate, firstCA) != nil
	}
	switch {
	case next:
		return rp.Rollover.CRL, true
	case first:
		return rp.CRL, true
	}
	return nil, false
}

// isOurCAName reports whether name is the subject of one of caCerts.
func (rp *RegistrationPoint) isOurCAName(name []byte) bool {
	for _, ca := range rp.caCerts() {
		if ca != nil && bytes.Equal(name, ca.RawSubject) {
			return true
		}
	}
	return false
}

// revocation is the RevocationChecker of renewal signers when RegistrationPoint.
// Revocation is nil and prev (the Issuer) is one: a certificate the Rollover's CA
// issued is checked against that CA's revocations (Issuer's, if it is a
// RevocationChecker, else CA's), any other against prev's. Asking prev alone would
// let a certificate revoked on the next CA renew itself after the switch.
func (r *Rollover) revocation(prev RevocationChecker) RevocationChecker {
	next, ok := r.Issuer.(RevocationChecker)
	if !ok {
		next = CAIssuer{CA: r.CA}
	}
	ca := r.CA.Certificate
	return RevocationCheckerFunc(func(ctx context.Context, cert *x509.Certificate) (bool, error) {
		// Which CA's list to ask: the key identifiers tell, else the signature (the
		// renewal's signer was verified as ours before it is asked about).
		if mayHaveIssued(ca, cert) && (keyIdentified(ca, cert) || signedBy(cert, ca) == nil) {
			return next.IsRevoked(ctx, cert)
		}
		return prev.IsRevoked(ctx, cert)
	})
}
