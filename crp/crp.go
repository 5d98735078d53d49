package crp

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/profile"
	"github.com/scepkit/scepkit/scep"
)

// RenewalPolicy says which renewals a RegistrationPoint accepts. A renewal is a
// RenewalReq, or a PKCSReq signed by a certificate this CA issued; it needs no
// challenge, since the old certificate authenticates the device.
type RenewalPolicy struct {
	// Disabled refuses every renewal (RenewalReq, and PKCSReq signed by one of our
	// certificates without a challenge).
	Disabled bool
	// Grace accepts a signer certificate expired by at most Grace. Zero means it must
	// be valid now.
	Grace time.Duration
}

// Check is a check of the user's own, run before or after the built-in steps of a
// phase (a compliance check, a rate limit, an allow-list). Its error refuses the
// request in Phase; return a *Error to choose the reason.
type Check struct {
	Name  string
	Phase Phase
	// After runs the check after the phase's built-in steps; false runs it before.
	After bool
	Func  func(ctx context.Context, tx *Transaction) error
}

// Transaction is one request on its way through the registration point. Steps read
// and fill it; user checks may read it.
type Transaction struct {
	ID          string
	MessageType scep.MessageType
	CSR         *x509.CertificateRequest
	// Challenge is the challenge password as sent. Never log it: use
	// Trace.ChallengeFingerprint.
	Challenge string
	// Signer is the certificate that signed the SCEP message, if any.
	Signer *x509.Certificate
	// Renewal is set when Signer is a certificate we issued; Renewed is its record.
	Renewal bool
	Renewed *IssuedCertificate

	Claims       *challenge.Claims
	User         *User
	Device       *Device
	Profile      *profile.Profile
	Rendered     *profile.Rendered
	Template     *catemplate.Template
	CertTemplate *x509.Certificate
	Certificate  *x509.Certificate
	Trace        *Trace
	// Validator is the external validator that judged the challenge (one of
	// RegistrationPoint.Validators); nil when the built-in check did, and for
	// renewals.
	Validator ChallengeValidator

	renewalClaim string // the replay-store id claimed for a renewal of Signer
	reqHash      []byte // requestHash of the request, computed once
	checkErr     error  // what Verifier.Check said, judged phase by phase
	extErr       *Error // what Validator.Validate said, judged phase by phase
	claimed      bool
}

// UserID returns the user the transaction is for (from the challenge, or from the
// renewed certificate's record).
func (tx *Transaction) UserID() string {
	switch {
	case tx.Claims != nil:
		return tx.Claims.UserID
	case tx.Renewed != nil:
		return tx.Renewed.UserID
	}
	return ""
}

// DeviceID returns the device the transaction is for.
func (tx *Transaction) DeviceID() string {
	switch {
	case tx.Claims != nil:
		return tx.Claims.DeviceID
	case tx.Renewed != nil:
		return tx.Renewed.DeviceID
	}
	return ""
}

// ProfileID returns the profile the transaction is for: the challenge's, the renewed
// certificate's, or (for a challenge an external validator judged) the ID of the
// Profile the validator set, if any.
func (tx *Transaction) ProfileID() string {
	switch {
	case tx.Claims != nil:
		return tx.Claims.ProfileID
	case tx.Renewed != nil:
		return tx.Renewed.ProfileID
	case tx.Profile != nil:
		return tx.Profile.ID
	}
	return ""
}

// RegistrationPoint is the Certificate Registration Point: it decides SCEP requests
// (it is a scep.Responder) and can be embedded in any CA front end ([Enroll]). For
// each request it runs the gateway check, phase 1 (expiry), phase 2 (genuineness),
// phase 3 (mapping), template resolution, issuance and notification, each step
// traced and logged with the transactionID.
//
// Set the fields, then use it; do not change them while it serves. It is safe for
// concurrent use and holds no global lock on the request path.
type RegistrationPoint struct {
	// Verifier checks challenges. Its Audience is this gateway's identity (step 0:
	// a challenge minted for another gateway is refused) and its Replay store makes
	// challenges one-time. Required unless Validators is set; without it, a
	// challenge no validator accepts is refused in phase 2.
	Verifier *challenge.Verifier
	// Validators judge challenges this registration point cannot check itself (an
	// MDM's opaque challenges, such as Intune's). They are asked in order, before
	// the Verifier; the first whose Accepts reports true judges the request in place
	// of the built-in challenge, user, device and profile steps of the gateway and
	// phases 1-3 (see [ChallengeValidator]). Optional.
	Validators []ChallengeValidator
	// Users, Devices and Profiles are consulted in phases 2 and 3. Required unless
	// Validators is set; when one is nil, a request that needs it (a renewal, a
	// challenge of the Verifier) is refused.
	Users    UserDirectory
	Devices  DeviceRegistry
	Profiles ProfileSource
	// Templates resolves the certificate template. Required.
	Templates catemplate.Resolver
	// Issuer signs. Required.
	Issuer Issuer
	// CACert is the issuing CA's certificate: issued certificates never outlive it,
	// renewal signers must chain to it. Required.
	CACert *x509.Certificate
	// Notifier tells the MDM; nil means nobody is told.
	Notifier Notifier
	// RequireNotification withholds an issued certificate (FAILURE to the device)
	// when Notifier fails, as Intune requires.
	RequireNotification bool
	// Transactions keeps transaction records; nil means an in-memory store.
	Transactions TransactionStore
	// Certificates remembers issued certificates; nil means an in-memory store.
	Certificates CertificateStore
	// Revocation is asked about renewal signers; nil means revocation is not checked.
	Revocation RevocationChecker
	// Renewal is the renewal policy; the zero value accepts renewals of unexpired,
	// unrevoked certificates we issued.
	Renewal RenewalPolicy
	// CRL returns the current CRL for GetCRL; nil refuses GetCRL.
	CRL func(ctx context.Context) ([]byte, error)
	// Checks are the user's own checks, placed around the phases.
	Checks []Check
	// RecordTTL is how long transaction records are kept; zero means 24 hours.
	RecordTTL time.Duration
	// Logger receives one record per step; nil means no logging.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now. Rand is the source of serials; nil means
	// crypto/rand.
	Now  func() time.Time
	Rand io.Reader

	init     sync.Once
	memTx    *MemoryTransactions
	memCerts *MemoryCertificates
	deciding sync.Map // pending requests being decided, without a shared replay store
}

var _ scep.Responder = (*RegistrationPoint)(nil)

// Validate reports a configuration the registration point cannot work with.
func (rp *RegistrationPoint) Validate() error {
	var missing []string
	external := len(rp.Validators) > 0
	for name, ok := range map[string]bool{
		"Verifier": external || rp.Verifier != nil, "Users": external || rp.Users != nil,
		"Devices": external || rp.Devices != nil, "Profiles": external || rp.Profiles != nil,
		"Templates": rp.Templates != nil, "Issuer": rp.Issuer != nil, "CACert": rp.CACert != nil,
	} {
		if !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("crp: RegistrationPoint needs %s", strings.Join(missing, ", "))
	}
	for i, v := range rp.Validators {
		if v == nil {
			return fmt.Errorf("crp: Validators[%d] is nil", i)
		}
	}
	if rp.Verifier == nil {
		return nil
	}
	if rp.Verifier.Audience == "" {
		return errors.New("crp: the Verifier needs an Audience (this gateway's identity)")
	}
	if rp.Verifier.Replay == nil {
		return errors.New("crp: the Verifier needs a Replay store: challenges are one-time")
	}
	return nil
}

func (rp *RegistrationPoint) now() time.Time {
	if rp.Now != nil {
		return rp.Now()
	}
	return time.Now()
}

func (rp *RegistrationPoint) log() *slog.Logger {
	if rp.Logger != nil {
		return rp.Logger
	}
	return discard
}

var discard = slog.New(slog.DiscardHandler)

func (rp *RegistrationPoint) transactions() TransactionStore {
	if rp.Transactions != nil {
		return rp.Transactions
	}
	rp.init.Do(rp.initMemory)
	return rp.memTx
}

func (rp *RegistrationPoint) certificates() CertificateStore {
	if rp.Certificates != nil {
		return rp.Certificates
	}
	rp.init.Do(rp.initMemory)
	return rp.memCerts
}

func (rp *RegistrationPoint) initMemory() {
	rp.memTx = &MemoryTransactions{Now: rp.Now}
	rp.memCerts = &MemoryCertificates{}
}

func (rp *RegistrationPoint) ttl() time.Duration {
	if rp.RecordTTL > 0 {
		return rp.RecordTTL
	}
	return 24 * time.Hour
}

// ---- the steps ----

// runPhase runs the user's Before checks, the built-in steps and the After checks of
// phase p, stopping at the first refusal.
func (rp *RegistrationPoint) runPhase(ctx context.Context, tx *Transaction, p Phase, builtins ...builtin) *Error {
	for _, c := range rp.Checks {
		if c.Phase == p && !c.After {
			if err := rp.runCheck(ctx, tx, c); err != nil {
				return err
			}
		}
	}
	for _, b := range builtins {
		start := rp.now()
		err := b.run(ctx, tx)
		rp.step(ctx, tx, p, b.name, start, err)
		if err != nil {
			return err
		}
	}
	for _, c := range rp.Checks {
		if c.Phase == p && c.After {
			if err := rp.runCheck(ctx, tx, c); err != nil {
				return err
			}
		}
	}
	return nil
}

type builtin struct {
	name string
	run  func(ctx context.Context, tx *Transaction) *Error
}

func (rp *RegistrationPoint) runCheck(ctx context.Context, tx *Transaction, c Check) *Error {
	start := rp.now()
	var e *Error
	if err := c.Func(ctx, tx); err != nil {
		if !errors.As(err, &e) {
			e = fail(c.Phase, ReasonCheckFailed, err)
		}
	}
	rp.step(ctx, tx, c.Phase, c.Name, start, e)
	return e
}

// unavailable wraps an unexpected error from a directory, registry or store: a
// transient failure, never a pass.
func unavailable(p Phase, err error) *Error {
	if errors.Is(err, ErrUnavailable) {
		return fail(p, ReasonInternal, err)
	}
	return fail(p, ReasonInternal, fmt.Errorf("%w: %w", ErrUnavailable, err))
}

func (rp *RegistrationPoint) stepCSRSignature(_ context.Context, tx *Transaction) *Error {
	if tx.CSR == nil {
		return fail(PhaseGateway, ReasonCSRSignature, errors.New("no CSR"))
	}
	if err := scep.CheckKeySize(tx.CSR.PublicKey); err != nil { // before any RSA operation
		return fail(PhaseGateway, ReasonCSRSignature, err)
	}
	if err := tx.CSR.CheckSignature(); err != nil {
		return fail(PhaseGateway, ReasonCSRSignature, err)
	}
	return nil
}

// stepAudience runs the offline challenge check once and refuses here a challenge
// minted for another gateway; phases 1 and 2 judge the rest of its verdict.
func (rp *RegistrationPoint) stepAudience(ctx context.Context, tx *Transaction) *Error {
	if tx.Challenge == "" {
		tx.checkErr = errNoChallenge
		return nil
	}
	if rp.Verifier == nil {
		tx.checkErr = errNoValidator
		return nil
	}
	tx.Claims, tx.checkErr = rp.Verifier.Check(ctx, tx.Challenge)
	if errors.Is(tx.checkErr, challenge.ErrAudience) {
		return fail(PhaseGateway, ReasonWrongGateway, tx.checkErr)
	}
	if errors.Is(tx.checkErr, challenge.ErrConfig) {
		return fail(PhaseGateway, ReasonInternal, tx.checkErr)
	}
	return nil
}

var (
	errNoChallenge = errors.New("crp: the CSR carries no challengePassword")
	errNoValidator = errors.New("crp: no validator accepts this challenge and no Verifier is configured")
)

// validatorFor returns the first of rp.Validators that accepts the challenge, or nil.
func (rp *RegistrationPoint) validatorFor(ch string) ChallengeValidator {
	if ch == "" {
		return nil
	}
	for _, v := range rp.Validators {
		if v.Accepts(ch) {
			return v
		}
	}
	return nil
}

// stepExternal asks the external validator once; a refusal in the gateway phase is
// returned here, the others are judged by stepExternalIn in their phase.
func (rp *RegistrationPoint) stepExternal(ctx context.Context, tx *Transaction) *Error {
	err := tx.Validator.Validate(ctx, tx)
	if err == nil {
		return nil
	}
	var e *Error
	switch {
	case !errors.As(err, &e):
		e = fail(PhaseGenuineness, ReasonCheckFailed, err)
	case e.Phase > PhaseMapping:
		e = &Error{Phase: PhaseMapping, Reason: e.Reason, Err: e.Err}
	}
	if e.Phase == PhaseGateway {
		return e
	}
	tx.extErr = e
	return nil
}

// stepExternalIn returns the external validator's refusal if it belongs to phase p.
func stepExternalIn(p Phase) func(context.Context, *Transaction) *Error {
	return func(_ context.Context, tx *Transaction) *Error {
		if tx.extErr != nil && tx.extErr.Phase == p {
			return tx.extErr
		}
		return nil
	}
}

func (rp *RegistrationPoint) stepExpiry(_ context.Context, tx *Transaction) *Error {
	err := tx.checkErr
	switch {
	case errors.Is(err, challenge.ErrExpired):
		return fail(PhaseExpiry, ReasonExpired, err)
	case errors.Is(err, challenge.ErrNotYetValid):
		return fail(PhaseExpiry, ReasonNotYetValid, err)
	case errors.Is(err, challenge.ErrLifetime):
		return fail(PhaseExpiry, ReasonLifetime, err)
	}
	return nil
}

func (rp *RegistrationPoint) stepGenuine(_ context.Context, tx *Transaction) *Error {
	err := tx.checkErr
	if err == nil {
		return nil
	}
	r := ReasonMalformed
	switch {
	case err == errNoChallenge:
		r = ReasonNoChallenge
	case errors.Is(err, challenge.ErrSignature):
		r = ReasonBadSignature
	case errors.Is(err, challenge.ErrUnknownKey):
		r = ReasonUnknownKey
	case errors.Is(err, challenge.ErrIssuer):
		r = ReasonWrongIssuer
	case errors.Is(err, challenge.ErrAlgorithm), errors.Is(err, challenge.ErrType):
		r = ReasonBadSignature
	}
	return fail(PhaseGenuineness, r, err)
}

func (rp *RegistrationPoint) stepClaim(ctx context.Context, tx *Transaction) *Error {
	if err := rp.Verifier.Claim(ctx, tx.Claims); err != nil {
		if errors.Is(err, challenge.ErrReplayed) {
			return fail(PhaseGenuineness, ReasonReplayed, err)
		}
		return unavailable(PhaseGenuineness, err)
	}
	tx.claimed = true
	return nil
}

func (rp *RegistrationPoint) stepUser(ctx context.Context, tx *Transaction) *Error {
	if rp.Users == nil {
		return fail(PhaseGenuineness, ReasonUserUnknown, errors.New("no UserDirectory configured"))
	}
	u, err := rp.Users.LookupUser(ctx, tx.UserID())
	switch {
	case errors.Is(err, ErrNotFound):
		return fail(PhaseGenuineness, ReasonUserUnknown, err)
	case err != nil:
		return unavailable(PhaseGenuineness, err)
	case u.Disabled:
		return fail(PhaseGenuineness, ReasonUserDisabled, fmt.Errorf("user %q is disabled", u.ID))
	}
	tx.User = u
	return nil
}

func (rp *RegistrationPoint) stepDevice(ctx context.Context, tx *Transaction) *Error {
	id := tx.DeviceID()
	if id == "" {
		return fail(PhaseMapping, ReasonDeviceUnknown, errors.New("the challenge names no device"))
	}
	if rp.Devices == nil {
		return fail(PhaseMapping, ReasonDeviceUnknown, errors.New("no DeviceRegistry configured"))
	}
	d, err := rp.Devices.LookupDevice(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		return fail(PhaseMapping, ReasonDeviceUnknown, err)
	case err != nil:
		return unavailable(PhaseMapping, err)
	case d.UserID != tx.UserID():
		return fail(PhaseMapping, ReasonDeviceOtherUser, fmt.Errorf("device %q is enrolled to another user", id))
	case !d.Compliant:
		return fail(PhaseMapping, ReasonDeviceNotCompliant, fmt.Errorf("device %q is not compliant", id))
	}
	tx.Device = d
	return nil
}

func (rp *RegistrationPoint) stepProfile(ctx context.Context, tx *Transaction) *Error {
	if rp.Profiles == nil {
		return fail(PhaseMapping, ReasonProfileUnknown, errors.New("no ProfileSource configured"))
	}
	p, err := rp.Profiles.LookupProfile(ctx, tx.ProfileID())
	switch {
	case errors.Is(err, ErrNotFound):
		return fail(PhaseMapping, ReasonProfileUnknown, err)
	case err != nil:
		return unavailable(PhaseMapping, err)
	}
	tx.Profile = p
	r, err := profile.Render(p, tx.User.User, tx.Device.Device, nil)
	if err != nil {
		return fail(PhaseMapping, ReasonCSRMismatch, fmt.Errorf("rendering profile %q: %w", p.ID, err))
	}
	tx.Rendered = r
	if err := profile.Check(tx.CSR, r); err != nil {
		return fail(PhaseMapping, ReasonCSRMismatch, err)
	}
	return nil
}

func (rp *RegistrationPoint) stepTemplate(ctx context.Context, tx *Transaction) *Error {
	var ku x509.KeyUsage // zero without a rendered profile: resolvers read the CSR's
	if tx.Rendered != nil {
		ku = tx.Rendered.KeyUsage
	}
	t, err := rp.Templates.Resolve(ctx, &catemplate.ResolveRequest{ProfileID: tx.ProfileID(),
		KeyUsage: ku, CSR: tx.CSR, Rendered: tx.Rendered})
	if err != nil {
		if errors.Is(err, catemplate.ErrNotPublished) {
			return fail(PhaseTemplate, ReasonTemplateUnpublish, err)
		}
		return fail(PhaseTemplate, ReasonNoTemplate, err)
	}
	tx.Template = t
	// The CSR's signature was verified in the gateway step (proof of possession).
	ct, err := catemplate.ApplyVerified(t, tx.CSR, tx.Rendered, rp.CACert, rp.now(), rp.Rand)
	switch {
	case errors.Is(err, catemplate.ErrKeyTooSmall), errors.Is(err, catemplate.ErrKeyType):
		return fail(PhaseTemplate, ReasonKeyRefused, err)
	case errors.Is(err, catemplate.ErrNotPublished):
		return fail(PhaseTemplate, ReasonTemplateUnpublish, err)
	case err != nil:
		return fail(PhaseTemplate, ReasonNoTemplate, err)
	}
	tx.CertTemplate = ct
	return nil
}

// stepRenewalSigner checks the certificate a renewal is signed with.
func (rp *RegistrationPoint) stepRenewalSigner(ctx context.Context, tx *Transaction) *Error {
	if rp.Renewal.Disabled {
		return fail(PhaseGateway, ReasonRenewalRefused, errors.New("renewal is disabled"))
	}
	s := tx.Signer
	now := rp.now()
	if now.Before(s.NotBefore) || now.After(s.NotAfter.Add(rp.Renewal.Grace)) {
		return fail(PhaseGateway, ReasonRenewalSigner, fmt.Errorf("signer certificate %x not valid now", s.SerialNumber))
	}
	if rp.Revocation != nil {
		revoked, err := rp.Revocation.IsRevoked(ctx, s)
		if err != nil {
			return unavailable(PhaseGateway, err)
		}
		if revoked {
			return fail(PhaseGateway, ReasonRenewalSigner, fmt.Errorf("signer certificate %x is revoked", s.SerialNumber))
		}
	}
	rec, err := rp.certificates().Lookup(ctx, s.SerialNumber)
	switch {
	case errors.Is(err, ErrNotFound):
		return fail(PhaseGateway, ReasonRenewalSigner, fmt.Errorf("signer certificate %x was not issued here", s.SerialNumber))
	case err != nil:
		return unavailable(PhaseGateway, err)
	case !bytes.Equal(rec.Certificate.Raw, s.Raw):
		return fail(PhaseGateway, ReasonRenewalSigner, errors.New("signer certificate differs from the one issued"))
	case !bytes.Equal(tx.CSR.RawSubject, s.RawSubject):
		return fail(PhaseGateway, ReasonRenewalSigner, errors.New("a renewal must keep the subject"))
	}
	// A certificate renews once: claim it in the replay store, as a challenge is
	// claimed, so that a stolen certificate cannot mint certificates without end (and
	// across gateways when the store is shared).
	if rp.Verifier == nil || rp.Verifier.Replay == nil {
		return fail(PhaseGateway, ReasonRenewalRefused, errors.New("renewal needs the Verifier's replay store"))
	}
	id := renewalClaimID(s)
	switch err := rp.Verifier.Replay.Claim(ctx, id, s.NotAfter.Add(rp.Renewal.Grace)); {
	case errors.Is(err, challenge.ErrReplayed):
		return fail(PhaseGateway, ReasonRenewalSigner, fmt.Errorf("certificate %x was already renewed", s.SerialNumber))
	case err != nil:
		return unavailable(PhaseGateway, err)
	}
	tx.renewalClaim = id
	tx.Renewed = rec
	return nil
}

// renewalClaimID names the one-time renewal of cert in the replay store.
func renewalClaimID(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return "renewal:" + hex.EncodeToString(sum[:16])
}

// ---- running a transaction ----

// issuedBy reports whether cert was signed by our CA.
func (rp *RegistrationPoint) issuedBy(cert *x509.Certificate) bool {
	return cert != nil && bytes.Equal(cert.RawIssuer, rp.CACert.RawSubject) && cert.CheckSignatureFrom(rp.CACert) == nil
}

// verify runs every check up to the template: gateway, phases 1-3, template. On
// success the challenge is claimed (or the renewal signer accepted) and
// tx.CertTemplate is ready to sign.
func (rp *RegistrationPoint) verify(ctx context.Context, tx *Transaction) *Error {
	if tx.Renewal {
		if err := rp.runPhase(ctx, tx, PhaseGateway,
			builtin{"csr-signature", rp.stepCSRSignature},
			builtin{"renewal-signer", rp.stepRenewalSigner}); err != nil {
			return err
		}
		if err := rp.runPhase(ctx, tx, PhaseGenuineness, builtin{"user-active", rp.stepUser}); err != nil {
			return err
		}
	} else if tx.Validator = rp.validatorFor(tx.Challenge); tx.Validator != nil {
		// An external validator judges the challenge and the CSR against what the
		// MDM expects (phases 1-3); the user, device and profile steps do not run.
		tx.Trace.ChallengeFingerprint = challenge.Fingerprint(tx.Challenge)
		if err := rp.runPhase(ctx, tx, PhaseGateway,
			builtin{"csr-signature", rp.stepCSRSignature},
			builtin{"challenge-external", rp.stepExternal}); err != nil {
			return err
		}
		for _, p := range []Phase{PhaseExpiry, PhaseGenuineness, PhaseMapping} {
			if err := rp.runPhase(ctx, tx, p, builtin{"external-" + p.String(), stepExternalIn(p)}); err != nil {
				return err
			}
		}
		return rp.runPhase(ctx, tx, PhaseTemplate, builtin{"template", rp.stepTemplate})
	} else {
		if tx.Challenge != "" {
			tx.Trace.ChallengeFingerprint = challenge.Fingerprint(tx.Challenge)
		}
		if err := rp.runPhase(ctx, tx, PhaseGateway,
			builtin{"csr-signature", rp.stepCSRSignature},
			builtin{"challenge-audience", rp.stepAudience}); err != nil {
			return err
		}
		if err := rp.runPhase(ctx, tx, PhaseExpiry, builtin{"challenge-lifetime", rp.stepExpiry}); err != nil {
			return err
		}
		if err := rp.runPhase(ctx, tx, PhaseGenuineness,
			builtin{"challenge-genuine", rp.stepGenuine},
			builtin{"user-active", rp.stepUser},
			builtin{"challenge-unused", rp.stepClaim}); err != nil {
			return err
		}
	}
	if err := rp.runPhase(ctx, tx, PhaseMapping,
		builtin{"device-mapping", rp.stepDevice},
		builtin{"profile-match", rp.stepProfile}); err != nil {
		return err
	}
	return rp.runPhase(ctx, tx, PhaseTemplate, builtin{"template", rp.stepTemplate})
}

// issue runs the issue phase; it returns a nil error with tx.Certificate nil when the
// request is pending.
func (rp *RegistrationPoint) issue(ctx context.Context, tx *Transaction, approved bool) *Error {
	return rp.runPhase(ctx, tx, PhaseIssue, builtin{"issue", func(ctx context.Context, tx *Transaction) *Error {
		if tx.Template.RequiresApproval && !approved {
			return nil
		}
		cert, err := rp.Issuer.Issue(ctx, &IssueRequest{Template: tx.CertTemplate, PublicKey: tx.CSR.PublicKey,
			CSR: tx.CSR, TemplateName: tx.Template.Name, TransactionID: tx.ID})
		switch {
		case errors.Is(err, ErrPending):
			return nil
		case errors.Is(err, ErrUnavailable):
			return fail(PhaseIssue, ReasonCAUnavailable, err)
		case err != nil:
			return fail(PhaseIssue, ReasonCARefused, err)
		case cert == nil:
			return fail(PhaseIssue, ReasonCARefused, errors.New("issuer returned no certificate"))
		}
		tx.Certificate = cert
		if err := rp.certificates().Add(ctx, &IssuedCertificate{Certificate: cert, UserID: tx.UserID(),
			DeviceID: tx.DeviceID(), ProfileID: tx.ProfileID(), Template: tx.Template.Name}); err != nil {
			rp.log().ErrorContext(ctx, "crp: recording issued certificate", "transactionID", tx.ID, "err", err)
		}
		return nil
	}})
}

func (rp *RegistrationPoint) notification(tx *Transaction, e *Error) *Notification {
	n := &Notification{TransactionID: tx.ID, UserID: tx.UserID(), DeviceID: tx.DeviceID(), ProfileID: tx.ProfileID(),
		ChallengeFingerprint: tx.Trace.ChallengeFingerprint, CSR: tx.CSR, Renewal: tx.Renewal, IssuedAt: rp.now(),
		Trace: tx.Trace, Validator: tx.Validator}
	if tx.Template != nil {
		n.Template = tx.Template.Name
	}
	switch {
	case e != nil:
		n.Outcome, n.Phase, n.Reason, n.Err = OutcomeFailed, e.Phase, e.Reason, e.Err
	case tx.Certificate != nil:
		n.Outcome = OutcomeIssued
		n.Certificate, n.Serial, n.NotAfter = tx.Certificate, tx.Certificate.SerialNumber, tx.Certificate.NotAfter
		sum := sha1.Sum(tx.Certificate.Raw)
		n.Thumbprint = strings.ToUpper(hex.EncodeToString(sum[:]))
	default:
		n.Outcome = OutcomePending
	}
	return n
}

// notify runs the notify phase. A failed notification of an issued certificate is a
// refusal when RequireNotification is set.
func (rp *RegistrationPoint) notify(ctx context.Context, tx *Transaction, e *Error) *Error {
	if rp.Notifier == nil {
		return nil
	}
	n := rp.notification(tx, e)
	var out *Error
	rp.runPhase(ctx, tx, PhaseNotify, builtin{"notify-" + string(n.Outcome), func(ctx context.Context, tx *Transaction) *Error {
		if err := rp.Notifier.Notify(ctx, n); err != nil {
			out = fail(PhaseNotify, ReasonNotifyFailed, err)
			return out
		}
		return nil
	}})
	if out != nil && e == nil && tx.Certificate != nil && rp.RequireNotification {
		return out
	}
	return nil
}

// finish releases a claimed challenge after a transient failure, notifies, and keeps
// a record of a definitive outcome so that resends and polls get the same answer.
func (rp *RegistrationPoint) finish(ctx context.Context, tx *Transaction, e *Error, signerKey, csrDER []byte) *Error {
	if tx.reqHash == nil {
		tx.reqHash = requestHash(tx.MessageType, tx.Signer, csrDER)
	}
	return rp.finishRecord(ctx, tx, e, signerKey, csrDER, tx.reqHash)
}

// requestHash identifies a request, for resend detection: its type, its signer (key
// and issuer) and its CSR.
func requestHash(t scep.MessageType, signer *x509.Certificate, csrDER []byte) []byte {
	h := sha256.New()
	fmt.Fprintf(h, "%d\n", int(t))
	switch {
	case signer == nil:
	case bytes.Equal(signer.RawIssuer, signer.RawSubject):
		// Self-signed: a device may regenerate it for each attempt; the same key and
		// name are the same signer.
		h.Write(signer.RawIssuer)
		h.Write(signer.RawSubjectPublicKeyInfo)
	default:
		// A certificate of ours (a renewal): exactly that certificate.
		h.Write(signer.Raw)
	}
	h.Write([]byte{0})
	h.Write(csrDER)
	return h.Sum(nil)
}

func (rp *RegistrationPoint) finishRecord(ctx context.Context, tx *Transaction, e *Error, signerKey, csrDER, reqHash []byte) *Error {
	if e == nil {
		e = rp.notify(ctx, tx, nil)
	} else if nerr := rp.notify(ctx, tx, e); nerr != nil {
		_ = nerr
	}
	// Once the CA has signed, the outcome is never transient: the challenge stays
	// claimed and the outcome is recorded, so that a retry cannot obtain a second
	// certificate (for example when a required notification fails after issuance).
	transient := e != nil && errors.Is(e.Err, ErrUnavailable) && tx.Certificate == nil
	if transient {
		rp.release(ctx, tx)
	}
	if e != nil && tx.Certificate != nil {
		rp.log().ErrorContext(ctx, "crp: certificate issued but withheld from the device; revoke it",
			"transactionID", tx.ID, "serial", fmt.Sprintf("%x", tx.Certificate.SerialNumber), "reason", string(e.Reason))
	}
	// Recorded: successes, PENDING, and refusals of requests that were authenticated
	// (challenge claimed, renewal signer accepted, or an external validator's verdict
	// after which a certificate was issued). An anonymous refusal is not recorded: it
	// costs nothing to repeat and must not let anyone fill the store or overwrite the
	// record of another transaction. A replayed challenge is not recorded either: when
	// two copies of one request race, the loser's refusal must not replace the
	// winner's record.
	authenticated := tx.claimed || tx.Renewed != nil || tx.Certificate != nil
	if transient || tx.ID == "" || (e != nil && (!authenticated || e.Reason == ReasonReplayed)) {
		return e
	}
	rec := &Record{TransactionID: tx.ID, SignerKey: signerKey, Request: reqHash, Expires: rp.now().Add(rp.ttl()),
		UserID: tx.UserID(), DeviceID: tx.DeviceID(), ProfileID: tx.ProfileID()}
	if e == nil && tx.Certificate == nil {
		rec.CSR = csrDER // a PENDING request is decided later, from its CSR
	}
	if tx.Template != nil {
		rec.Template = tx.Template.Name
	}
	switch {
	case e != nil:
		rec.Status, rec.Phase, rec.Reason = scep.Failure, e.Phase, e.Reason
	case tx.Certificate != nil:
		rec.Status, rec.Certificate = scep.Success, tx.Certificate
	default:
		rec.Status = scep.Pending
	}
	if err := rp.transactions().Put(ctx, rec); err != nil {
		rp.log().ErrorContext(ctx, "crp: recording transaction", "transactionID", tx.ID, "err", err)
	}
	return e
}

// release undoes the claims a transaction made (its challenge, or its renewal of a
// certificate) after a transient failure, so that the device can retry.
func (rp *RegistrationPoint) release(ctx context.Context, tx *Transaction) {
	if tx.claimed && tx.Claims != nil {
		if err := rp.Verifier.Release(ctx, tx.Claims); err != nil {
			rp.log().ErrorContext(ctx, "crp: releasing challenge", "transactionID", tx.ID, "err", err)
		}
	}
	if tx.renewalClaim != "" {
		if r, ok := rp.Verifier.Replay.(challenge.Releaser); ok {
			if err := r.Release(ctx, tx.renewalClaim); err != nil {
				rp.log().ErrorContext(ctx, "crp: releasing renewal", "transactionID", tx.ID, "err", err)
			}
		}
	}
}

// Result is the outcome of [RegistrationPoint.Enroll].
type Result struct {
	// Status is scep.Success (Certificate set) or scep.Pending.
	Status      scep.PKIStatus
	Certificate *x509.Certificate
	Trace       *Trace
}

// EnrollRequest is a request to [RegistrationPoint.Enroll].
type EnrollRequest struct {
	// TransactionID names the transaction in traces and records; required.
	TransactionID string
	CSR           *x509.CertificateRequest
	// Challenge is the challenge password (from the CSR, or sent beside it).
	Challenge string
	// Signer, when it is a certificate this CA issued, makes the request a renewal.
	Signer *x509.Certificate
}

// Enroll runs the whole flow for one request without SCEP, for a CA with its own
// front end (ACME, EST, REST). On refusal it returns a *Error and a Result that still
// carries the Trace.
func (rp *RegistrationPoint) Enroll(ctx context.Context, req *EnrollRequest) (*Result, error) {
	tx := &Transaction{ID: req.TransactionID, MessageType: scep.PKCSReq, CSR: req.CSR, Challenge: req.Challenge,
		Signer: req.Signer, Trace: &Trace{TransactionID: req.TransactionID}}
	tx.Renewal = rp.issuedBy(req.Signer) && rp.validatorFor(req.Challenge) == nil
	var csrDER []byte
	if req.CSR != nil {
		csrDER = req.CSR.Raw
	}
	e := rp.run(ctx, tx, csrDER, keyHash(req.Signer))
	if e != nil {
		return &Result{Status: scep.Failure, Trace: tx.Trace}, e
	}
	res := &Result{Status: scep.Pending, Trace: tx.Trace, Certificate: tx.Certificate}
	if tx.Certificate != nil {
		res.Status = scep.Success
	}
	return res, nil
}

func (rp *RegistrationPoint) run(ctx context.Context, tx *Transaction, csrDER, signerKey []byte) *Error {
	e := rp.verify(ctx, tx)
	if e == nil {
		e = rp.issue(ctx, tx, false)
	}
	return rp.finish(ctx, tx, e, signerKey, csrDER)
}

func keyHash(cert *x509.Certificate) []byte {
	if cert == nil {
		return nil
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return sum[:]
}

// ---- SCEP ----

// Respond implements scep.Responder: PKCSReq and RenewalReq run the flow; CertPoll
// answers from the transaction record; GetCert from the certificate store; GetCRL from
// CRL. Refusals are *Error values wrapped in a scep.FailError with the phase's failInfo.
func (rp *RegistrationPoint) Respond(ctx context.Context, req *scep.Request) (*scep.Response, error) {
	resp, e := rp.respond(ctx, req)
	if e != nil {
		return nil, scep.Fail(failInfoFor(e), e)
	}
	return resp, nil
}

func failInfoFor(e *Error) scep.FailInfo {
	if e.Reason == ReasonUnknownTransaction {
		return scep.BadCertID
	}
	return e.FailInfo()
}

func (rp *RegistrationPoint) respond(ctx context.Context, req *scep.Request) (*scep.Response, *Error) {
	switch req.MessageType {
	case scep.PKCSReq, scep.RenewalReq:
		return rp.enrollSCEP(ctx, req)
	case scep.CertPoll:
		rec, e := rp.record(ctx, req)
		if e != nil {
			return nil, e
		}
		return answer(rec)
	case scep.GetCert:
		if !bytes.Equal(req.IssuerAndSerial.Issuer, rp.CACert.RawSubject) {
			return nil, fail(PhaseIssue, ReasonUnknownTransaction, errors.New("GetCert for another issuer"))
		}
		c, err := rp.certificates().Lookup(ctx, req.IssuerAndSerial.Serial)
		if err != nil {
			return nil, fail(PhaseIssue, ReasonUnknownTransaction, err)
		}
		return &scep.Response{Certificate: c.Certificate}, nil
	case scep.GetCRL:
		if rp.CRL == nil {
			return nil, fail(PhaseIssue, ReasonCARefused, errors.New("no CRL configured"))
		}
		crl, err := rp.CRL(ctx)
		if err != nil {
			return nil, fail(PhaseIssue, ReasonCAUnavailable, err)
		}
		return &scep.Response{CRL: crl}, nil
	}
	return nil, fail(PhaseGateway, ReasonInternal, fmt.Errorf("message type %v", req.MessageType))
}

// record finds the transaction a poll or resend names, and checks that it comes from
// the same signer key as the original request (a poll cannot fetch another device's
// certificate by guessing its transactionID).
func (rp *RegistrationPoint) record(ctx context.Context, req *scep.Request) (*Record, *Error) {
	rec, err := rp.transactions().Get(ctx, req.TransactionID)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, fail(PhaseIssue, ReasonUnknownTransaction, err)
	case err != nil:
		return nil, unavailable(PhaseIssue, err)
	case !bytes.Equal(rec.SignerKey, keyHash(req.Signer)):
		return nil, fail(PhaseGateway, ReasonUnknownTransaction, errors.New("poll signed by another key than the request"))
	}
	return rec, nil
}

func answer(rec *Record) (*scep.Response, *Error) {
	switch rec.Status {
	case scep.Success:
		return &scep.Response{Certificate: rec.Certificate}, nil
	case scep.Pending:
		return &scep.Response{Status: scep.Pending}, nil
	}
	return nil, fail(rec.Phase, rec.Reason, errors.New("as answered before"))
}

func (rp *RegistrationPoint) enrollSCEP(ctx context.Context, req *scep.Request) (*scep.Response, *Error) {
	if req.CSR == nil {
		return nil, fail(PhaseGateway, ReasonCSRSignature, errors.New("no CSR"))
	}
	signerKey := keyHash(req.Signer)
	tx := &Transaction{ID: req.TransactionID, MessageType: req.MessageType, CSR: req.CSR,
		Challenge: req.ChallengePassword, Signer: req.Signer, Trace: &Trace{TransactionID: req.TransactionID},
		reqHash: requestHash(req.MessageType, req.Signer, req.CSR.Raw)}
	if rec, err := rp.transactions().Get(ctx, req.TransactionID); err == nil {
		// A resend of the same request gets the same answer, never a second certificate.
		if bytes.Equal(rec.Request, tx.reqHash) {
			return answer(rec)
		}
		// A transactionID is the requester's: another key cannot take it over (and
		// replace the record a device will poll or resend for).
		if !bytes.Equal(rec.SignerKey, signerKey) {
			e := fail(PhaseGateway, ReasonTransactionConflict, errors.New("transactionID in use by another requester key"))
			rp.step(ctx, tx, PhaseGateway, "transaction-owner", rp.now(), e)
			return nil, e
		}
	}
	ours := rp.issuedBy(req.Signer)
	switch {
	case req.MessageType == scep.RenewalReq && !ours:
		e := fail(PhaseGateway, ReasonRenewalSigner, errors.New("RenewalReq not signed by a certificate of this CA"))
		rp.step(ctx, tx, PhaseGateway, "renewal-signer", rp.now(), e)
		return nil, e
	case ours && req.MessageType != scep.RenewalReq && rp.validatorFor(req.ChallengePassword) != nil:
		// A PKCSReq signed by one of our certificates but carrying a challenge an
		// external validator accepts is a new enrollment: the MDM judges it.
	case ours && (req.MessageType == scep.RenewalReq || !rp.Renewal.Disabled || req.ChallengePassword == ""):
		tx.Renewal = true
	}
	if e := rp.run(ctx, tx, req.CSR.Raw, signerKey); e != nil {
		// The same request won the race elsewhere (another gateway, a concurrent
		// resend): answer as that transaction did.
		if e.Reason == ReasonReplayed {
			if rec, err := rp.transactions().Get(ctx, req.TransactionID); err == nil &&
				bytes.Equal(rec.Request, tx.reqHash) && rec.Status != scep.Failure {
				return answer(rec)
			}
		}
		return nil, e
	}
	if tx.Certificate == nil {
		return &scep.Response{Status: scep.Pending}, nil
	}
	return &scep.Response{Certificate: tx.Certificate}, nil
}

// Approve issues a pending request (one whose template needs approval, or that the CA
// queued). Phase 3 and the template are checked again, since time has passed; the
// device's next poll gets the certificate.
func (rp *RegistrationPoint) Approve(ctx context.Context, transactionID string) (cert *x509.Certificate, err error) {
	rec, tx, err := rp.pending(ctx, transactionID)
	if err != nil {
		return nil, err
	}
	done, err := rp.decide(ctx, rec)
	if err != nil {
		return nil, err
	}
	defer func() { done(err != nil && errors.Is(err, ErrUnavailable)) }()
	e := rp.runPhase(ctx, tx, PhaseGenuineness, builtin{"user-active", rp.stepUser})
	if e == nil {
		e = rp.runPhase(ctx, tx, PhaseMapping, builtin{"device-mapping", rp.stepDevice}, builtin{"profile-match", rp.stepProfile})
	}
	if e == nil {
		e = rp.runPhase(ctx, tx, PhaseTemplate, builtin{"template", rp.stepTemplate})
	}
	if e == nil {
		e = rp.issue(ctx, tx, true)
	}
	if e == nil && tx.Certificate == nil {
		return nil, fmt.Errorf("crp: the CA queued transaction %q again", transactionID)
	}
	if e = rp.finishRecord(ctx, tx, e, rec.SignerKey, rec.CSR, rec.Request); e != nil {
		return nil, e
	}
	return tx.Certificate, nil
}

// Reject refuses a pending request; the device's next poll gets FAILURE badRequest.
func (rp *RegistrationPoint) Reject(ctx context.Context, transactionID string, why error) error {
	rec, tx, err := rp.pending(ctx, transactionID)
	if err != nil {
		return err
	}
	done, err := rp.decide(ctx, rec)
	if err != nil {
		return err
	}
	defer done(false)
	rp.finishRecord(ctx, tx, fail(PhaseIssue, ReasonRejected, why), rec.SignerKey, rec.CSR, rec.Request)
	return nil
}

// ErrDecided is returned by Approve and Reject when the pending request is already
// being decided (or was): a pending request is decided once.
var ErrDecided = errors.New("crp: pending request already decided")

// decide claims the right to decide a pending request, atomically (in the Verifier's
// replay store, shared by gateways side by side; in this process otherwise). The
// returned func ends the claim: with true it gives the decision back (a transient
// failure), with false it keeps it.
func (rp *RegistrationPoint) decide(ctx context.Context, rec *Record) (func(release bool), error) {
	id := "decide:" + hex.EncodeToString(rec.Request)
	if rp.Verifier != nil && rp.Verifier.Replay != nil {
		switch err := rp.Verifier.Replay.Claim(ctx, id, rec.Expires); {
		case errors.Is(err, challenge.ErrReplayed):
			return nil, ErrDecided
		case err != nil:
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return func(release bool) {
			if r, ok := rp.Verifier.Replay.(challenge.Releaser); ok && release {
				r.Release(context.WithoutCancel(ctx), id)
			}
		}, nil
	}
	if _, busy := rp.deciding.LoadOrStore(id, true); busy {
		return nil, ErrDecided
	}
	return func(bool) { rp.deciding.Delete(id) }, nil
}

func (rp *RegistrationPoint) pending(ctx context.Context, id string) (*Record, *Transaction, error) {
	rec, err := rp.transactions().Get(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if rec.Status != scep.Pending {
		return nil, nil, fmt.Errorf("crp: transaction %q is not pending", id)
	}
	csr, err := x509.ParseCertificateRequest(rec.CSR)
	if err != nil {
		return nil, nil, err
	}
	tx := &Transaction{ID: id, MessageType: scep.PKCSReq, CSR: csr, Trace: &Trace{TransactionID: id},
		Renewed: &IssuedCertificate{UserID: rec.UserID, DeviceID: rec.DeviceID, ProfileID: rec.ProfileID}}
	return rec, tx, nil
}
