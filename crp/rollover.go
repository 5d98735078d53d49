package crp

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/scep"
)

// Rollover is the CA and RA a [RegistrationPoint], and the scep.Server [NewServer]
// builds for it, move to at a set time (RFC 8894 §3.5.2). Before At, the server
// announces the next CA and RA through GetNextCACert, signed by the current RA; from
// At on, certificates are issued by CA, GetCACert answers with RA and CA, CertReps are
// signed by RA, and renewals of certificates the previous CA issued are still
// accepted while those certificates are valid. Requests still encrypted to the
// previous RA are decrypted and answered as [scep.Rollover] describes.
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
	when := r.At
	if now.After(when) {
		when = now
	}
	for _, c := range []*x509.Certificate{r.RA.SigningCertificate, r.RA.EncryptionCertificate, r.caCertificate()} {
		if c != nil && (when.Before(c.NotBefore) || when.After(c.NotAfter)) {
			return fmt.Errorf("crp: Rollover certificate %q is not valid at the rollover (%s): valid %s to %s",
				c.Subject.String(), when.UTC().Format(time.RFC3339), c.NotBefore.UTC().Format(time.RFC3339),
				c.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	return nil
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

// issuer is the Issuer at now: a CAIssuer of the Rollover's CA after its switch.
func (rp *RegistrationPoint) issuer() Issuer {
	if rp.rolledOver(rp.now()) {
		if rp.Rollover.Issuer != nil {
			return rp.Rollover.Issuer
		}
		return CAIssuer{CA: rp.Rollover.CA}
	}
	return rp.Issuer
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
// costs a public-key operation.
func (rp *RegistrationPoint) signedByOurCA(cert *x509.Certificate) error {
	err := errors.New("issuer name differs from the CA's")
	for _, ca := range rp.caCerts() {
		if ca == nil || !bytes.Equal(cert.RawIssuer, ca.RawSubject) {
			continue
		}
		if err = cert.CheckSignatureFrom(ca); err == nil {
			return nil
		}
	}
	return err
}

// scepRollover is the scep.Rollover of r on top of the server's current chain.
func (r *Rollover) scep(current []*x509.Certificate) *scep.Rollover {
	out := &scep.Rollover{At: r.At, CACerts: current, SignerCert: r.RA.SigningCertificate, Signer: r.RA.Signer,
		Recipients: []scep.Recipient{{Certificate: r.RA.EncryptionCertificate, Key: r.RA.Decrypter}}}
	if r.CA != nil {
		out.CACerts = append([]*x509.Certificate{r.CA.Certificate}, r.CA.Chain...)
	}
	return out
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
		if cert != nil && bytes.Equal(cert.RawIssuer, ca.RawSubject) && cert.CheckSignatureFrom(ca) == nil {
			return next.IsRevoked(ctx, cert)
		}
		return prev.IsRevoked(ctx, cert)
	})
}
