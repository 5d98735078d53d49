package catemplate

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	cryptorand "crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sort"
	"sync"
	"time"

	"github.com/scepkit/scepkit/internal/crlnumber"
	"github.com/scepkit/scepkit/profile"
)

// ErrRefused is returned by [CA.Sign] for a template it will not sign.
var ErrRefused = errors.New("catemplate: CA refuses to sign")

// ErrSigner is returned by [CA.Sign] when the CA's key failed, not the request: the
// Signer returned an error (a token removed, a session lost, a mechanism the key does
// not allow), a signature its public key does not verify, or it does not hold the key
// of the CA certificate. No certificate was made.
var ErrSigner = errors.New("catemplate: the CA's signer failed")

// CA is a built-in certificate authority that signs through a crypto.Signer, so the
// key may live in an HSM or a cloud KMS. Create one with [NewCA] or [LoadCA], or fill
// Certificate and Signer for a CA you already have.
//
// Sign is safe for concurrent use and takes no lock; Revoke, IsRevoked and CRL share a
// mutex that Sign never touches. Do not copy a CA after first use.
type CA struct {
	// Certificate is the CA certificate (root or intermediate). Required.
	Certificate *x509.Certificate
	// Signer holds the key of Certificate. Required; must be safe for concurrent use
	// (the crypto/rsa and crypto/ecdsa keys are).
	Signer crypto.Signer
	// Chain holds the issuers above Certificate, nearest first; empty for a root.
	Chain []*x509.Certificate
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand is the randomness source for signatures; nil means crypto/rand. It must be
	// safe for concurrent use.
	Rand io.Reader
	// CRLDistributionPoints, when set, are the URLs of this CA's CRL, written into
	// every certificate Sign issues that names none of its own (the CRL Distribution
	// Points extension, RFC 5280 section 4.2.1.13), so that relying parties find the
	// CRL. Use http URLs: a CRL fetched over https would need its own revocation check
	// (RFC 5280 section 8).
	CRLDistributionPoints []string
	// IssuingCertificateURL, when set, are URLs of this CA's certificate, written into
	// every certificate Sign issues that names none of its own, as the caIssuers
	// access method of the Authority Information Access extension (RFC 5280 section
	// 4.2.2.1), so that relying parties can build the chain.
	IssuingCertificateURL []string

	mu      sync.Mutex
	revoked map[string]x509.RevocationListEntry
	lastCRL *big.Int // the number of the last CRL signed by CRL; nil before the first
}

func (ca *CA) now() time.Time {
	if ca.Now != nil {
		return ca.Now()
	}
	return time.Now()
}

func (ca *CA) rand() io.Reader {
	if ca.Rand != nil {
		return ca.Rand
	}
	return cryptorand.Reader
}

// Validate reports what would make every Sign fail whatever the template: no
// certificate or no Signer, or a certificate whose public key crypto/x509 cannot read
// (matching [ErrRefused]), or a Signer that does not hold the certificate's key
// (matching [ErrSigner]). Sign checks it first; call it at start to find out before
// the first request.
func (ca *CA) Validate() error {
	switch {
	case ca == nil || ca.Certificate == nil || ca.Signer == nil:
		return fmt.Errorf("%w: CA has no certificate or signer", ErrRefused)
	case ca.Certificate.PublicKey == nil:
		// Without it nothing can check that the Signer holds the CA's key.
		return fmt.Errorf("%w: CA certificate has no public key crypto/x509 can read", ErrRefused)
	}
	if eq, ok := ca.Signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(ca.Certificate.PublicKey) {
		return fmt.Errorf("%w: the Signer does not hold the key of its certificate", ErrSigner)
	}
	return nil
}

// Sign issues an end-entity certificate from tmpl (usually from [Apply]) for pub. It
// refuses ([ErrRefused]) a CA template, a missing, non-positive or over-long (more
// than 20 octets) serial number, a malformed object identifier among the extensions
// or extended key usages, and a validity outside the CA's own. ctx is checked before
// signing; a signer that talks to a remote KMS should be given its own deadline.
//
// A template with only the fields Apply sets is encoded by Sign itself, to the same
// bytes x509.CreateCertificate would write; any other goes through CreateCertificate.
// A CA that fails [CA.Validate] is refused with its error. The signature is verified
// with the CA's key before the certificate is returned; Sign's own encoder skips that
// check only for a *rsa.PrivateKey, which crypto/rsa already makes on every signature.
// A Signer that fails or returns a bad signature gives an error matching [ErrSigner]:
// the CA's fault, not the request's.
func (ca *CA) Sign(ctx context.Context, tmpl *x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := ca.Validate(); err != nil {
		return nil, err
	}
	switch {
	case tmpl == nil:
		return nil, fmt.Errorf("%w: nil template", ErrRefused)
	case tmpl.IsCA:
		return nil, fmt.Errorf("%w: CA certificates are issued by NewCA with a Parent", ErrRefused)
	case tmpl.SerialNumber == nil || tmpl.SerialNumber.Sign() <= 0:
		return nil, fmt.Errorf("%w: serial number must be positive", ErrRefused)
	case tmpl.SerialNumber.BitLen() > 159:
		// RFC 5280, 4.1.2.2: at most 20 octets, DER's leading zero included.
		return nil, fmt.Errorf("%w: serial number longer than 20 octets", ErrRefused)
	case !validOIDs(tmpl):
		return nil, fmt.Errorf("%w: malformed object identifier in an extension or extended key usage", ErrRefused)
	case tmpl.NotAfter.After(ca.Certificate.NotAfter) || tmpl.NotBefore.Before(ca.Certificate.NotBefore):
		return nil, fmt.Errorf("%w: validity outside the CA's (%w)", ErrRefused, ErrCAExpired)
	}
	if (len(ca.CRLDistributionPoints) > 0 && len(tmpl.CRLDistributionPoints) == 0) ||
		(len(ca.IssuingCertificateURL) > 0 && len(tmpl.IssuingCertificateURL) == 0) {
		c := *tmpl // the caller's template is left as it was
		if len(c.CRLDistributionPoints) == 0 {
			c.CRLDistributionPoints = ca.CRLDistributionPoints
		}
		if len(c.IssuingCertificateURL) == 0 {
			c.IssuingCertificateURL = ca.IssuingCertificateURL
		}
		tmpl = &c
	}
	der, err := ca.signDirect(tmpl, pub)
	if errors.Is(err, errNotDirect) {
		w := &watchedSigner{Signer: ca.Signer}
		var s crypto.Signer = w
		if _, ok := ca.Signer.(crypto.MessageSigner); ok {
			s = watchedMessageSigner{w}
		}
		der, err = x509.CreateCertificate(ca.rand(), tmpl, ca.Certificate, pub, s)
		if err != nil && w.called {
			// crypto/x509 calls the signer last, then only checks its signature.
			err = fmt.Errorf("%w: %w", ErrSigner, err)
		}
	}
	switch {
	case errors.Is(err, ErrSigner):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("catemplate: signing: %w", err)
	}
	return x509.ParseCertificate(der)
}

// watchedSigner records whether crypto/x509 got as far as asking for the signature.
type watchedSigner struct {
	crypto.Signer
	called bool
}

func (w *watchedSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	w.called = true
	return w.Signer.Sign(rand, digest, opts)
}

// watchedMessageSigner is a watchedSigner for a crypto.MessageSigner, which crypto/x509
// gives the message to sign rather than its digest (as signDirect does): a signer that
// hashes itself, or signs only messages, keeps working on either encoder.
type watchedMessageSigner struct{ *watchedSigner }

func (w watchedMessageSigner) SignMessage(rand io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	w.called = true
	return w.Signer.(crypto.MessageSigner).SignMessage(rand, msg, opts)
}

// validOIDs reports whether every object identifier tmpl carries for the certificate
// (extra extensions, unknown extended key usages) can be encoded as it is: crypto/x509
// would otherwise write a different identifier than the one asked for.
func validOIDs(tmpl *x509.Certificate) bool {
	for _, oid := range tmpl.UnknownExtKeyUsage {
		if !directOID(oid) {
			return false
		}
	}
	for _, e := range tmpl.ExtraExtensions {
		if !directOID(e.Id) {
			return false
		}
	}
	return true
}

// Revoke records serial as revoked for reason (an RFC 5280 CRLReason, 0-10 but not 7,
// nor 8, removeFromCRL, which only a delta CRL may carry)
// at time at; it shows in the next [CA.CRL]. Revoking a serial again keeps the first
// entry. Revocations live in memory only: [SaveCA] does not persist them.
func (ca *CA) Revoke(serial *big.Int, reason int, at time.Time) error {
	if serial == nil || serial.Sign() <= 0 {
		return errors.New("catemplate: revoke: serial must be positive")
	}
	if reason < 0 || reason > 10 || reason == 7 || reason == 8 {
		return fmt.Errorf("catemplate: revoke: invalid reason %d", reason)
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.revoked == nil {
		ca.revoked = map[string]x509.RevocationListEntry{}
	}
	k := serial.Text(16)
	if _, ok := ca.revoked[k]; !ok {
		ca.revoked[k] = x509.RevocationListEntry{
			SerialNumber:   new(big.Int).Set(serial),
			RevocationTime: at.UTC(),
			ReasonCode:     reason,
		}
	}
	return nil
}

// IsRevoked reports whether serial was revoked with [CA.Revoke].
func (ca *CA) IsRevoked(serial *big.Int) bool {
	if serial == nil {
		return false
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	_, ok := ca.revoked[serial.Text(16)]
	return ok
}

// CRL returns a DER certificate revocation list of every revoked serial, signed by the
// CA, valid from now until nextUpdate. The CA certificate must allow cRLSign ([NewCA]
// sets it).
//
// The CRL number (RFC 5280 section 5.2.3) must grow from one CRL of the CA to the
// next, across restarts too, and no state is kept for it: it is the time of signing
// (now) in microseconds since 1970, or one more than the number of this CA's last CRL
// when that is not smaller (two CRLs signed within one microsecond, or a clock
// stepped back). It grows from one call to the next, and from the last CRL before a
// restart ([LoadCA]) to the first after it as long as the clock at the restart has
// passed the last number: it runs ahead of the clock only by a microsecond for each
// CRL signed within the same microsecond, and not at all when the clock is not
// stepped back. It is the rule crp.CRLPublisher numbers its CRLs by, so that CRLs of
// one CA signed by either (and by gateways side by side whose clocks are
// synchronised) grow by the clock together. It fits in 8 octets, far below the
// 20-octet limit.
func (ca *CA) CRL(ctx context.Context, nextUpdate time.Time) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := ca.now()
	if !nextUpdate.After(now) {
		return nil, errors.New("catemplate: CRL nextUpdate must be after now")
	}
	ca.mu.Lock()
	num := crlnumber.Next(now, ca.lastCRL)
	ca.lastCRL = num
	entries := make([]x509.RevocationListEntry, 0, len(ca.revoked))
	for _, e := range ca.revoked {
		entries = append(entries, e)
	}
	ca.mu.Unlock()
	return ca.SignCRL(ctx, &x509.RevocationList{Number: num, ThisUpdate: now,
		NextUpdate: nextUpdate, RevokedCertificateEntries: entries})
}

// SignCRL signs the CRL crl describes, for revocations kept elsewhere (a durable
// store): crl.Number (required, positive, at most 20 octets, and growing from one
// CRL to the next: RFC 5280 section 5.2.3), ThisUpdate (zero means now), NextUpdate
// (after ThisUpdate) and RevokedCertificateEntries, which are listed in serial order.
// Sign's clock and randomness are used; the key is used only through the Signer.
func (ca *CA) SignCRL(ctx context.Context, crl *x509.RevocationList) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if ca.Certificate == nil || ca.Signer == nil {
		return nil, errors.New("catemplate: CRL: CA has no certificate or signer")
	}
	if crl == nil || crl.Number == nil || crl.Number.Sign() <= 0 || crl.Number.BitLen() > 159 {
		return nil, errors.New("catemplate: CRL: the CRL number must be positive and at most 20 octets")
	}
	c := *crl
	if c.ThisUpdate.IsZero() {
		c.ThisUpdate = ca.now()
	}
	if !c.NextUpdate.After(c.ThisUpdate) {
		return nil, errors.New("catemplate: CRL nextUpdate must be after thisUpdate")
	}
	c.RevokedCertificateEntries = append([]x509.RevocationListEntry(nil), crl.RevokedCertificateEntries...)
	sort.Slice(c.RevokedCertificateEntries, func(i, j int) bool {
		return c.RevokedCertificateEntries[i].SerialNumber.Cmp(c.RevokedCertificateEntries[j].SerialNumber) < 0
	})
	der, err := x509.CreateRevocationList(ca.rand(), &c, ca.Certificate, ca.Signer)
	if err != nil {
		return nil, fmt.Errorf("catemplate: CRL: %w", err)
	}
	return der, nil
}

// CABackdate is how far before their making [NewCA] and [NewRA] set the NotBefore of
// the certificates they make: as far as a [Template] may backdate (an hour), so that
// a certificate issued moments after its CA was made keeps its template's backdate
// (NotBefore is never before the CA's), a device whose clock is behind finds the
// CA, the RA and its certificate valid, and a gateway whose clock steps back after
// making its CA (an NTP correction of a clock that ran ahead at first start) still
// issues.
const CABackdate = time.Hour

// CAOptions configures [NewCA]. Every zero value has a default.
type CAOptions struct {
	// Subject of the CA certificate; zero means CN=scepkit CA.
	Subject pkix.Name
	// KeyType of a generated key: RSA (zero value), ECDSAP256 or ECDSAP384.
	KeyType profile.KeyType
	// KeySize of a generated RSA key: 2048, 3072 or 4096; zero means 3072.
	KeySize int
	// Signer, if set, is used as the CA key instead of generating one (HSM, KMS);
	// KeyType and KeySize are then ignored.
	Signer crypto.Signer
	// Validity of the CA certificate; zero means 10 years. Under a Parent it is
	// clamped to the parent's expiry.
	Validity time.Duration
	// Parent, if set, issues an intermediate CA certificate instead of a self-signed
	// root; the new CA's Chain is the parent's certificate and chain.
	Parent *CA
	// Now and Rand become the new CA's fields (nil: time.Now, crypto/rand).
	Now  func() time.Time
	Rand io.Reader
}

// NewCA creates a CA: a fresh key (or opts.Signer) and a self-signed root certificate,
// or an intermediate under opts.Parent. The certificate has keyUsage
// keyCertSign+cRLSign (+digitalSignature), basicConstraints CA:TRUE, a random serial,
// and a NotBefore an hour before now ([CABackdate]; under a Parent, not before the
// parent's).
func NewCA(opts CAOptions) (*CA, error) {
	signer := opts.Signer
	if signer == nil {
		var err error
		if signer, err = generateKey(opts.KeyType, opts.KeySize, opts.Rand); err != nil {
			return nil, err
		}
	}
	ca := &CA{Signer: signer, Now: opts.Now, Rand: opts.Rand}
	now := ca.now()
	validity := opts.Validity
	if validity == 0 {
		validity = 10 * 365 * 24 * time.Hour
	}
	if validity < 0 {
		return nil, errors.New("catemplate: negative CA validity")
	}
	subject := opts.Subject
	if len(subject.ToRDNSequence()) == 0 {
		subject = pkix.Name{CommonName: "scepkit CA"}
	}
	serial, err := RandomSerial(opts.Rand)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             now.Add(-CABackdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	parentCert, parentKey := tmpl, crypto.Signer(signer)
	if p := opts.Parent; p != nil {
		if p.Certificate == nil || p.Signer == nil {
			return nil, errors.New("catemplate: parent CA has no certificate or signer")
		}
		if tmpl.NotAfter.After(p.Certificate.NotAfter) {
			tmpl.NotAfter = p.Certificate.NotAfter
		}
		if tmpl.NotBefore.Before(p.Certificate.NotBefore) {
			tmpl.NotBefore = p.Certificate.NotBefore
		}
		if !tmpl.NotAfter.After(tmpl.NotBefore) {
			return nil, ErrCAExpired
		}
		parentCert, parentKey = p.Certificate, p.Signer
		ca.Chain = append([]*x509.Certificate{p.Certificate}, p.Chain...)
	}
	der, err := x509.CreateCertificate(ca.rand(), tmpl, parentCert, signer.Public(), parentKey)
	if err != nil {
		return nil, fmt.Errorf("catemplate: creating CA certificate: %w", err)
	}
	if ca.Certificate, err = x509.ParseCertificate(der); err != nil {
		return nil, err
	}
	return ca, nil
}

// generateKey makes an RSA or ECDSA key. Go ignores rand for key generation unless
// GODEBUG says otherwise; it is passed for completeness.
func generateKey(kt profile.KeyType, size int, rand io.Reader) (crypto.Signer, error) {
	if rand == nil {
		rand = cryptorand.Reader
	}
	switch kt {
	case profile.RSA:
		switch size {
		case 0:
			size = 3072
		case 2048, 3072, 4096:
		default:
			return nil, fmt.Errorf("catemplate: RSA key size %d: want 2048, 3072 or 4096", size)
		}
		return rsa.GenerateKey(rand, size)
	case profile.ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand)
	case profile.ECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand)
	}
	return nil, fmt.Errorf("catemplate: unsupported key type %s", kt)
}
