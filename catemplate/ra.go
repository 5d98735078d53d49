package catemplate

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"time"

	"github.com/scepkit/scepkit/profile"
)

// OIDCertificateRequestAgent is the EKU NDES's RA certificates carry (from the
// "Exchange Enrollment Agent (Offline request)" and "CEP Encryption" templates). It is
// what marks a certificate as an RA for scep.Client (see scep.IsRA): [NewRA] puts it
// on the signing and on the encryption certificate.
var OIDCertificateRequestAgent = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 1}

// RA is a SCEP registration authority: the identity the gateway signs CertReps with and
// devices encrypt requests to. Like NDES it may hold two certificates, one to sign and
// one to decrypt; when combined, both fields name the same certificate and key.
type RA struct {
	// SigningCertificate has keyUsage digitalSignature; Signer holds its key.
	SigningCertificate *x509.Certificate
	Signer             crypto.Signer
	// EncryptionCertificate has keyUsage keyEncipherment and an RSA key (CMS key
	// transport); Decrypter holds its key.
	EncryptionCertificate *x509.Certificate
	Decrypter             crypto.Decrypter
}

// Combined reports whether one certificate serves both roles.
func (ra *RA) Combined() bool {
	return ra.SigningCertificate != nil && ra.SigningCertificate == ra.EncryptionCertificate ||
		ra.SigningCertificate != nil && ra.EncryptionCertificate != nil && ra.SigningCertificate.Equal(ra.EncryptionCertificate)
}

// Certificates returns the distinct RA certificates, signing first.
func (ra *RA) Certificates() []*x509.Certificate {
	if ra.Combined() {
		return []*x509.Certificate{ra.SigningCertificate}
	}
	return []*x509.Certificate{ra.SigningCertificate, ra.EncryptionCertificate}
}

// RAOptions configures [NewRA]. Every zero value has a default.
type RAOptions struct {
	// Subject of the RA certificates; zero means CN=scepkit RA.
	Subject pkix.Name
	// Combined issues one certificate with digitalSignature+keyEncipherment instead
	// of two.
	Combined bool
	// KeySize of the generated RSA keys: 2048 (zero value), 3072 or 4096.
	KeySize int
	// Validity of the RA certificates; zero means 2 years; clamped to the CA's expiry.
	Validity time.Duration
	// SigningKey and EncryptionKey, if set, are used instead of generated keys. The
	// encryption key must be RSA. With Combined, SigningKey must also be a
	// crypto.Decrypter with an RSA key.
	SigningKey    crypto.Signer
	EncryptionKey crypto.Decrypter
}

// NewRA creates RA keys and has ca issue their certificates. Signing certificate:
// keyUsage digitalSignature, EKU Certificate Request Agent. Encryption certificate:
// keyUsage keyEncipherment, EKU Certificate Request Agent. Combined: one RSA key with
// both key usages and the EKU. The EKU on both is what lets a scep.Client that pins ca
// encrypt to the RA and believe its replies; an RA saved by an older version without
// it on the encryption certificate must be issued again. Both certificates' NotBefore
// is [CABackdate] before now, not before the CA's.
func NewRA(ca *CA, opts RAOptions) (*RA, error) {
	if ca == nil || ca.Certificate == nil || ca.Signer == nil {
		return nil, errors.New("catemplate: NewRA needs a CA with certificate and signer")
	}
	size := opts.KeySize
	if size == 0 {
		size = 2048
	}
	subject := opts.Subject
	if len(subject.ToRDNSequence()) == 0 {
		subject = pkix.Name{CommonName: "scepkit RA"}
	}
	validity := opts.Validity
	if validity == 0 {
		validity = 2 * 365 * 24 * time.Hour
	}
	newKey := func(k crypto.Signer) (crypto.Signer, error) {
		if k != nil {
			return k, nil
		}
		return generateKey(profile.RSA, size, ca.Rand)
	}
	issue := func(pub crypto.PublicKey, ku x509.KeyUsage) (*x509.Certificate, error) {
		now := ca.now()
		serial, err := RandomSerial(ca.Rand)
		if err != nil {
			return nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber:          serial,
			Subject:               subject,
			NotBefore:             now.Add(-CABackdate),
			NotAfter:              now.Add(validity),
			KeyUsage:              ku,
			BasicConstraintsValid: true,
			UnknownExtKeyUsage:    []asn1.ObjectIdentifier{OIDCertificateRequestAgent},
		}
		if tmpl.NotBefore.Before(ca.Certificate.NotBefore) {
			tmpl.NotBefore = ca.Certificate.NotBefore
		}
		if tmpl.NotAfter.After(ca.Certificate.NotAfter) {
			tmpl.NotAfter = ca.Certificate.NotAfter
		}
		return ca.Sign(context.Background(), tmpl, pub)
	}
	ra := &RA{}
	sk, err := newKey(opts.SigningKey)
	if err != nil {
		return nil, err
	}
	if opts.Combined {
		dec, ok := sk.(crypto.Decrypter)
		if _, isRSA := sk.Public().(*rsa.PublicKey); !ok || !isRSA {
			return nil, errors.New("catemplate: a combined RA needs an RSA key that can decrypt")
		}
		cert, err := issue(sk.Public(), x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment)
		if err != nil {
			return nil, err
		}
		ra.SigningCertificate, ra.Signer = cert, sk
		ra.EncryptionCertificate, ra.Decrypter = cert, dec
		return ra, nil
	}
	if ra.SigningCertificate, err = issue(sk.Public(), x509.KeyUsageDigitalSignature); err != nil {
		return nil, err
	}
	ra.Signer = sk
	var ek crypto.Decrypter = opts.EncryptionKey
	if ek == nil {
		k, err := generateKey(profile.RSA, size, ca.Rand)
		if err != nil {
			return nil, err
		}
		ek = k.(crypto.Decrypter)
	}
	if _, ok := ek.Public().(*rsa.PublicKey); !ok {
		return nil, errors.New("catemplate: the RA encryption key must be RSA")
	}
	if ra.EncryptionCertificate, err = issue(ek.Public(), x509.KeyUsageKeyEncipherment); err != nil {
		return nil, err
	}
	ra.Decrypter = ek
	return ra, nil
}
