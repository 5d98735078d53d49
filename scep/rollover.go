package scep

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/scepkit/scepkit/internal/cms"
	"github.com/scepkit/scepkit/internal/rollover"
)

// Rollover is the CA and RA a [Server] moves to at a set time (RFC 8894 §3.5.2).
//
// Before At, GetCACert and every reply use the server's own CACerts, SignerCert and
// Recipients, and GetNextCACert announces the next set: a certificates-only SignedData
// holding the next RA certificates and CA chain, signed by the current CA when the
// server holds its key (Server.CAKey), else by the current SignerCert (RFC 8894 §4.7).
//
// From At on, GetCACert answers with the next set, CertReps are signed by SignerCert
// and requests are decrypted with Recipients. A request still encrypted only to one
// of the previous Recipients (a device that fetched GetCACert before the switch) is
// decrypted with that one, chosen by the RecipientInfo's issuerAndSerialNumber, while
// its certificate, the previous signing certificate and the previous CA (CACerts[0]
// of the Server) are valid; its CertRep is signed by the previous signing
// certificate, the only one such a device holds, and its Request.CACert is the
// previous CA, the only CA whose certificate such a device accepts (package crp
// issues with it; its certificates end no later than it does). After any of the
// three expires such a request is refused (badMessageCheck) before the Responder
// sees it, so that no challenge is spent on a certificate the device would refuse.
// The set is chosen once per request, when it is received: a switch while the
// Responder decides changes nothing for it.
type Rollover struct {
	// At is the switch time. Required.
	At time.Time
	// CACerts is the CA chain devices trust from At on, issuing CA first: the next
	// CA, or the current chain again when only the RA certificates roll over.
	// Required.
	CACerts []*x509.Certificate
	// SignerCert and Signer sign the CertReps from At on. Required.
	SignerCert *x509.Certificate
	Signer     crypto.Signer
	// Recipients are the certificates requests are encrypted to from At on, with
	// their keys. Required.
	Recipients []Recipient
	// CAKey is the key of CACerts[0], serving from At on what [Server.CAKey] serves
	// before (clients that pin the CA: requests encrypted to it, replies signed by it);
	// nil when the server does not hold it. Like Server.CAKey it must be an RSA key
	// and a crypto.Decrypter. Without it, a client that pins the next CA cannot enroll from
	// At on; a Rollover of the RA alone needs none (Server.CAKey still serves).
	CAKey crypto.Signer
}

// pkiSet is one set of certificates and keys a server answers with.
type pkiSet struct {
	caCerts    []*x509.Certificate
	signerCert *x509.Certificate
	signer     crypto.Signer
	recipients []Recipient
	caKey      crypto.Signer // of caCerts[0], when the server holds it
}

func (p pkiSet) certs() []*x509.Certificate {
	cs := []*x509.Certificate{p.signerCert}
	for _, r := range p.recipients {
		cs = append(cs, r.Certificate)
	}
	return dedupe(append(cs, p.caCerts...))
}

// ca is the issuing CA of the set (nil when it has none: a Server not validated).
func (p pkiSet) ca() *x509.Certificate {
	if len(p.caCerts) == 0 {
		return nil
	}
	return p.caCerts[0]
}

func (s *Server) ownSet() pkiSet {
	return pkiSet{caCerts: s.CACerts, signerCert: s.SignerCert, signer: s.Signer, recipients: s.Recipients, caKey: s.CAKey}
}

func (r *Rollover) set() pkiSet {
	return pkiSet{caCerts: r.CACerts, signerCert: r.SignerCert, signer: r.Signer, recipients: r.Recipients, caKey: r.CAKey}
}

// RolledOver reports whether the server has switched to its Rollover at now.
func (s *Server) RolledOver(now time.Time) bool {
	return s.Rollover != nil && !now.Before(s.Rollover.At)
}

// sets returns the set the server answers with at now, and the previous set after a
// rollover (zero before).
func (s *Server) sets(now time.Time) (cur, prev pkiSet) {
	if s.RolledOver(now) {
		return s.Rollover.set(), s.ownSet()
	}
	return s.ownSet(), pkiSet{}
}

// nextCerts is what GetNextCACert announces at now: the Rollover's certificates
// before its switch, else NextCACerts.
func (s *Server) nextCerts(now time.Time) []*x509.Certificate {
	if s.Rollover != nil {
		if s.RolledOver(now) {
			return nil
		}
		return s.Rollover.set().certs()
	}
	return s.NextCACerts
}

// validate checks r; its certificates must be valid at its switch, or now when that
// is later (a switch already past).
func (r *Rollover) validate(now time.Time) error {
	if r.At.IsZero() || len(r.CACerts) == 0 || r.SignerCert == nil || r.Signer == nil || len(r.Recipients) == 0 {
		return errors.New("scep: Rollover needs At, CACerts, SignerCert, Signer and Recipients")
	}
	if err := keysMatch("Rollover", r.SignerCert, r.Signer, r.Recipients); err != nil {
		return err
	}
	if r.CAKey != nil {
		if !caDecrypter(r.CAKey, r.CACerts[0]) {
			return errors.New("scep: Rollover.CAKey must be a crypto.Decrypter holding the RSA key of Rollover.CACerts[0]")
		}
	}
	return rollover.CheckValidity("scep", r.At, now, r.set().certs()...)
}

// keysMatch checks that signer holds signerCert's key and each recipient its
// certificate's: a key that is not its certificate's would fail every request after
// the Responder's work (a CertRep the client cannot verify, an envelope that cannot be
// opened). who names the struct in the error.
func keysMatch(who string, signerCert *x509.Certificate, signer crypto.Signer, recipients []Recipient) error {
	if !samePublicKey(signer.Public(), signerCert.PublicKey) {
		return fmt.Errorf("scep: %s.Signer does not hold the key of %s.SignerCert", who, who)
	}
	for _, rc := range recipients {
		if rc.Certificate == nil || rc.Key == nil || !samePublicKey(rc.Key.Public(), rc.Certificate.PublicKey) {
			return fmt.Errorf("scep: each %s recipient needs a certificate and its key", who)
		}
	}
	return nil
}

// samePublicKey reports whether a and b are the same public key (a must have the
// Equal method every standard key type has).
func samePublicKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// addressedToAny reports whether the envelope has a RecipientInfo for one of rs.
func (m *PKIMessage) addressedToAny(rs []Recipient) bool {
	if len(rs) == 0 {
		return false
	}
	var env *cms.Envelope
	var err error
	switch {
	case m.Envelope != nil:
		env, err = m.envelope()
	case len(m.unchecked) > 0:
		// Refused before its envelope was accepted: whom it was encrypted to still
		// says which certificate the client will verify the FAILURE with.
		env, err = cms.Parse(m.unchecked)
	default:
		return false
	}
	if err != nil {
		return false
	}
	for _, ri := range env.Recipients {
		for _, r := range rs {
			if r.Certificate != nil && ri.Matches(r.Certificate) {
				return true
			}
		}
	}
	return false
}

// unexpired returns the recipients whose certificate is valid at now.
func unexpired(rs []Recipient, now time.Time) []Recipient {
	var out []Recipient
	for _, r := range rs {
		if r.Certificate != nil && !now.After(r.Certificate.NotAfter) {
			out = append(out, r)
		}
	}
	return out
}
