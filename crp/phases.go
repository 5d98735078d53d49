package crp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/profile"
	"github.com/scepkit/scepkit/scep"
)

// runPhase runs the user's Before checks, the built-in steps and the After checks of
// phase p, stopping at the first refusal.
func (rp *RegistrationPoint) runPhase(ctx context.Context, tx *Transaction, p Phase, builtins ...builtin) *Error {
	ctx, end := rp.tel().startPhase(ctx, p)
	e := rp.runSteps(ctx, tx, p, builtins)
	end(e)
	return e
}

// runSteps runs the steps of phase p. One deferred recover serves the whole phase: a
// panic in the step running (the user's check, directory, registry, Issuer or notifier,
// or a bug of ours) fails that step, as panicked says.
func (rp *RegistrationPoint) runSteps(ctx context.Context, tx *Transaction, p Phase, builtins []builtin) (e *Error) {
	var name string // the step running, and when it started
	var start time.Time
	defer func() {
		if v := recover(); v != nil {
			e = rp.panicked(ctx, tx, p, name, v)
			rp.step(ctx, tx, p, name, start, e)
		}
	}()
	for _, c := range rp.Checks {
		if c.Phase == p && !c.After {
			name, start = c.Name, rp.now()
			if err := rp.runCheck(ctx, tx, c, start); err != nil {
				return err
			}
		}
	}
	for _, b := range builtins {
		name, start = b.name, rp.now()
		err := b.run(ctx, tx)
		rp.step(ctx, tx, p, b.name, start, err)
		if err != nil {
			return err
		}
	}
	for _, c := range rp.Checks {
		if c.Phase == p && c.After {
			name, start = c.Name, rp.now()
			if err := rp.runCheck(ctx, tx, c, start); err != nil {
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

func (rp *RegistrationPoint) runCheck(ctx context.Context, tx *Transaction, c Check, start time.Time) *Error {
	var e *Error
	if err := c.Func(ctx, tx); err != nil && !errors.As(err, &e) {
		e = fail(c.Phase, ReasonCheckFailed, err)
	}
	rp.step(ctx, tx, c.Phase, c.Name, start, e)
	return e
}

// errPanicked marks the failure of a step whose code (the user's Issuer, directory,
// registry, notifier or check, or a bug of ours) panicked.
var errPanicked = errors.New("panicked")

// panicked is the failure of step name of phase p whose code panicked with v, logged
// at ERROR with its stack, so that the request ends as any refusal does: recorded,
// notified, and its challenge given back when nothing can have been issued yet (a
// panic before the issue phase), kept otherwise (the CA may have signed). A panic that
// escaped would leave the challenge claimed with no record and no notification (the
// SCEP server recovers it as a bare failure), or end an embedding caller's goroutine.
// The panic's value is logged, not carried: the error reaches notifiers (an MDM) and
// callers, and the value may quote anything.
func (rp *RegistrationPoint) panicked(ctx context.Context, tx *Transaction, p Phase, name string, v any) *Error {
	rp.log().ErrorContext(ctx, "crp: a step panicked", "transactionID", tx.ID, "phase", p.String(), "step", name,
		"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	return fail(p, ReasonInternal, fmt.Errorf("step %s %w", name, errPanicked))
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
	if e := csrKeyRefused(tx.CSR); e != nil { // before any RSA operation
		return e
	}
	if err := tx.CSR.CheckSignature(); err != nil {
		return fail(PhaseGateway, ReasonCSRSignature, csrAlgorithmRefused(err))
	}
	return nil
}

// csrAlgorithmRefused marks a CSR signature that was not checked because its algorithm
// is refused (MD5, or one crypto/x509 does not know) as scep.ErrUnsupportedAlgorithm,
// so that the device is answered badAlg, not badMessageCheck: the signature may be
// right, its algorithm is what is refused (RFC 8894 §3.2.1.4).
func csrAlgorithmRefused(err error) error {
	var insecure x509.InsecureAlgorithmError
	if errors.As(err, &insecure) || errors.Is(err, x509.ErrUnsupportedAlgorithm) {
		return fmt.Errorf("%w: %w", scep.ErrUnsupportedAlgorithm, err)
	}
	return err
}

// stepVerifyChallenge runs the offline challenge check once (signature, key, issuer,
// audience, lifetime: the cost of the challenge is here) and keeps its verdict; it
// refuses only a Verifier that cannot work. The steps challenge-audience,
// challenge-lifetime and challenge-genuine judge the verdict in their phases.
func (rp *RegistrationPoint) stepVerifyChallenge(ctx context.Context, tx *Transaction) *Error {
	if tx.Challenge == "" {
		tx.checkErr = errNoChallenge
		return nil
	}
	if rp.Verifier == nil {
		tx.checkErr = errNoValidator
		return nil
	}
	tx.Claims, tx.checkErr = rp.Verifier.Check(ctx, tx.Challenge)
	if errors.Is(tx.checkErr, challenge.ErrConfig) {
		// The operator's fault, not the device's: badCertId, and the challenge stays
		// usable once the Verifier is fixed.
		return fail(PhaseGateway, ReasonMisconfigured, tx.checkErr)
	}
	return nil
}

// stepAudience refuses a challenge minted for another gateway.
func (rp *RegistrationPoint) stepAudience(_ context.Context, tx *Transaction) *Error {
	if errors.Is(tx.checkErr, challenge.ErrAudience) {
		return fail(PhaseGateway, ReasonWrongGateway, tx.checkErr)
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

// ExternalClaimLifetime is how long a challenge an external validator accepted stays
// claimed in the replay store. The challenge is opaque, so its expiry is unknown here;
// the MDM's own validity (Intune's: 60 minutes from minting) began before its first
// use, which is when the claim starts, so a day outlives it with room for clock skew
// between the MDM and the gateway and for an MDM that is lenient, at the cost of one
// small entry per enrollment for a day.
const ExternalClaimLifetime = 24 * time.Hour

// externalClaimID names a challenge an external validator accepted in the replay
// store: a digest, never the challenge itself, of its canonical spelling
// (canonicalChallenge), so that one challenge spelt two ways is claimed once.
func externalClaimID(ch string) string {
	sum := sha256.Sum256([]byte(canonicalChallenge(ch)))
	return "external:" + hex.EncodeToString(sum[:])
}

// challengeEncodings are the base64 spellings canonicalChallenge recognises, in the
// order it tries them.
var challengeEncodings = []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding}

// canonicalChallenge is ch as an MDM that decodes it as base64 reads it (Intune's
// challenges are base64): when ch, its ASCII white space removed, is base64 in one of
// challengeEncodings, that encoding of its bytes, written canonically (the bits after
// the last whole byte zero) when it is padded; ch itself otherwise. A service may well
// decode leniently (.NET's Convert.FromBase64String skips white space, and only a
// strict decoder looks at the bits after the last byte), so the same challenge with a
// line break in it, or other trailing bits, is the same challenge to it, and must be
// one claim here. An unpadded one loses its white space but keeps its bits: short
// codes an MDM compares as text (six digits, a hex token) are base64 by accident, and
// "123450" and "123451", two codes, decode alike; .NET refuses base64 without its
// padding. A challenge spelt canonically is its own canonical spelling: claims made
// before this rule keep their ids.
func canonicalChallenge(ch string) string {
	s := strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\n', '\r', '\v', '\f':
			return -1
		}
		return r
	}, ch)
	for _, enc := range challengeEncodings {
		if b, err := enc.DecodeString(s); err == nil && len(b) > 0 {
			if !strings.HasSuffix(s, "=") {
				return s // no bits after the last byte but those it spells
			}
			return enc.EncodeToString(b)
		}
	}
	return ch
}

// stepExternal asks the external validator once; a refusal in the gateway phase is
// returned here, the others are judged by stepExternalIn in their phase. A challenge
// the validator accepts is claimed then, as the Verifier's are: the MDM may well
// accept it again (Intune does, for its whole validity), but it issues one
// certificate. A transient failure later releases the claim (see finish).
func (rp *RegistrationPoint) stepExternal(ctx context.Context, tx *Transaction) *Error {
	err := tx.Validator.Validate(ctx, tx)
	if err == nil {
		return rp.claimExternal(ctx, tx)
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

func (rp *RegistrationPoint) claimExternal(ctx context.Context, tx *Transaction) *Error {
	store := rp.externalReplay()
	if store == nil {
		return fail(PhaseGenuineness, ReasonInternal, errors.New("no replay store to make the challenge one-time"))
	}
	id := externalClaimID(tx.Challenge)
	switch err := store.Claim(ctx, id, rp.now().Add(ExternalClaimLifetime)); {
	case errors.Is(err, challenge.ErrReplayed):
		tx.extErr = fail(PhaseGenuineness, ReasonReplayed, fmt.Errorf("%w: challenge already used", err))
		return nil
	case err != nil:
		tx.extErr = unavailable(PhaseGenuineness, err)
		return nil
	}
	tx.claimID, tx.claimStore = id, store
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
			rp.tel().claim(ctx, "replayed")
			return fail(PhaseGenuineness, ReasonReplayed, err)
		}
		rp.tel().claim(ctx, "error")
		rp.tel().storeError(ctx, "replay")
		return unavailable(PhaseGenuineness, err)
	}
	rp.tel().claim(ctx, "claimed")
	tx.claimed = true
	return nil
}

func (rp *RegistrationPoint) stepUser(ctx context.Context, tx *Transaction) *Error {
	if rp.Users == nil {
		return fail(PhaseGenuineness, ReasonMisconfigured, errors.New("no UserDirectory configured"))
	}
	u, err := rp.Users.LookupUser(ctx, tx.UserID())
	switch {
	case errors.Is(err, ErrNotFound):
		return fail(PhaseGenuineness, ReasonUserUnknown, err)
	case err != nil:
		return unavailable(PhaseGenuineness, err)
	case u == nil:
		return fail(PhaseGenuineness, ReasonMisconfigured, errors.New("the UserDirectory returned neither a user nor an error"))
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
		return fail(PhaseMapping, ReasonMisconfigured, errors.New("no DeviceRegistry configured"))
	}
	d, err := rp.Devices.LookupDevice(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		return fail(PhaseMapping, ReasonDeviceUnknown, err)
	case err != nil:
		return unavailable(PhaseMapping, err)
	case d == nil:
		return fail(PhaseMapping, ReasonMisconfigured, errors.New("the DeviceRegistry returned neither a device nor an error"))
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
		return fail(PhaseMapping, ReasonMisconfigured, errors.New("no ProfileSource configured"))
	}
	p, err := rp.Profiles.LookupProfile(ctx, tx.ProfileID())
	switch {
	case errors.Is(err, ErrNotFound):
		return fail(PhaseMapping, ReasonProfileUnknown, err)
	case err != nil:
		return unavailable(PhaseMapping, err)
	case p == nil:
		return fail(PhaseMapping, ReasonMisconfigured, errors.New("the ProfileSource returned neither a profile nor an error"))
	}
	tx.Profile = p
	r, err := profile.Render(p, tx.User.User, tx.Device.Device, nil)
	if err != nil { // the profile and the directory's data, not the request
		return fail(PhaseMapping, ReasonMisconfigured, fmt.Errorf("profile %q cannot be rendered: %w", p.ID, err))
	}
	tx.Rendered = r
	if err := profile.Check(tx.CSR, r); err != nil {
		return fail(PhaseMapping, ReasonCSRMismatch, err)
	}
	tx.profileChecked = true // the CSR, its key included, is what the profile asks for
	return nil
}

func (rp *RegistrationPoint) stepTemplate(ctx context.Context, tx *Transaction) *Error {
	var ku x509.KeyUsage // zero without a rendered profile: resolvers read the CSR's
	if tx.Rendered != nil {
		ku = tx.Rendered.KeyUsage
	}
	if rp.Templates == nil {
		return fail(PhaseTemplate, ReasonMisconfigured, errors.New("no Templates configured"))
	}
	t, err := rp.Templates.Resolve(ctx, &catemplate.ResolveRequest{ProfileID: tx.ProfileID(),
		KeyUsage: ku, CSR: tx.CSR, Rendered: tx.Rendered})
	if err != nil {
		switch {
		case errors.Is(err, catemplate.ErrNotPublished):
			return fail(PhaseTemplate, ReasonTemplateUnpublish, err)
		case errors.Is(err, catemplate.ErrInvalidTemplate):
			return fail(PhaseTemplate, ReasonMisconfigured, err)
		case keyRefusal(err):
			// The resolver's own verdict on this key (a blocklist, say): the device's.
			return fail(PhaseTemplate, ReasonKeyRefused, err)
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.Is(err, ErrUnavailable):
			// No verdict on the request: the request's context ended (the device hung
			// up), or the resolver says it could not reach its store. Transient: the
			// challenge is released for the device's retry, as for a directory.
			return unavailable(PhaseTemplate, err)
		}
		var te *catemplate.TemplateError
		if errors.As(err, &te) || errors.Is(err, catemplate.ErrNoTemplate) || errors.Is(err, catemplate.ErrUnknownTemplate) {
			return fail(PhaseTemplate, ReasonNoTemplate, err)
		}
		// Neither a verdict the resolver names nor a transient failure it names: an
		// error from a store behind it, say. Transient too.
		return unavailable(PhaseTemplate, err)
	}
	if t == nil {
		return fail(PhaseTemplate, ReasonMisconfigured, errors.New("the template resolver returned neither a template nor an error"))
	}
	tx.Template = t
	// The CSR's signature was verified in the gateway step (proof of possession).
	ct, err := catemplate.ApplyVerified(t, tx.CSR, tx.Rendered, tx.ca.cert, rp.now(), rp.Rand)
	switch {
	case keyRefusal(err):
		return templateKeyRefusal(tx, err)
	case errors.Is(err, catemplate.ErrNotPublished):
		return fail(PhaseTemplate, ReasonTemplateUnpublish, err)
	case errors.Is(err, catemplate.ErrInvalidTemplate), errors.Is(err, catemplate.ErrCAExpired):
		// The template or the CA, not the request: an operator fault.
		return fail(PhaseTemplate, ReasonMisconfigured, err)
	case err != nil:
		return fail(PhaseTemplate, ReasonNoTemplate, err)
	}
	tx.CertTemplate = ct
	return nil
}

// templateKeyRefusal is the verdict on a template whose settings (MinKeySize,
// KeyTypes) refuse the request's key. When phase 3 has checked the CSR against the
// profile (profile.Check), the template refuses what the profile tells devices to
// make, so no device can satisfy both: an operator fault that gives the challenge back
// (ReasonMisconfigured). Otherwise (an external validator judged the CSR) the key is
// the device's choice: ReasonKeyRefused.
func templateKeyRefusal(tx *Transaction, err error) *Error {
	if tx.profileChecked {
		return fail(PhaseTemplate, ReasonMisconfigured, fmt.Errorf("the template refuses the key profile %q asks for: %w", tx.ProfileID(), err))
	}
	return fail(PhaseTemplate, ReasonKeyRefused, err)
}

// keyRefusal reports whether err is a template's refusal of the request's key.
func keyRefusal(err error) bool {
	return errors.Is(err, catemplate.ErrKeyTooSmall) || errors.Is(err, catemplate.ErrKeyType) ||
		errors.Is(err, catemplate.ErrKeyTooLarge)
}

// stepRenewalSigner checks the certificate a renewal is signed with.
func (rp *RegistrationPoint) stepRenewalSigner(ctx context.Context, tx *Transaction) *Error {
	if rp.renewalDisabled(tx) {
		return fail(PhaseGateway, ReasonRenewalRefused, errors.New("renewal is disabled"))
	}
	s := tx.Signer
	now := rp.now()
	if now.Before(s.NotBefore) || now.After(s.NotAfter.Add(rp.Renewal.Grace)) {
		return fail(PhaseGateway, ReasonRenewalSigner, fmt.Errorf("signer certificate %x not valid now", s.SerialNumber))
	}
	switch rc := rp.revocation(); {
	case rc != nil:
		revoked, err := rc.IsRevoked(ctx, s)
		if err != nil {
			rp.tel().storeError(ctx, "revocations")
			return unavailable(PhaseGateway, err)
		}
		if revoked {
			return fail(PhaseGateway, ReasonRenewalSigner, fmt.Errorf("signer certificate %x is revoked", s.SerialNumber))
		}
	case !rp.Renewal.InsecureSkipRevocationCheck:
		return fail(PhaseGateway, ReasonRenewalRefused, errors.New("renewal needs a RevocationChecker"))
	}
	rec, err := rp.certificates().Lookup(ctx, s.SerialNumber)
	switch {
	case errors.Is(err, ErrNotFound):
		return fail(PhaseGateway, ReasonRenewalSigner, fmt.Errorf("signer certificate %x was not issued here", s.SerialNumber))
	case err != nil:
		rp.tel().storeError(ctx, "certificates")
		return unavailable(PhaseGateway, err)
	case !bytes.Equal(rec.Certificate.Raw, s.Raw):
		return fail(PhaseGateway, ReasonRenewalSigner, errors.New("signer certificate differs from the one issued"))
	case rec.Withheld:
		return fail(PhaseGateway, ReasonRenewalSigner, fmt.Errorf("signer certificate %x was withheld from its requester", s.SerialNumber))
	case !bytes.Equal(tx.CSR.RawSubject, s.RawSubject):
		return fail(PhaseGateway, ReasonRenewalSigner, errors.New("a renewal must keep the subject"))
	}
	// A certificate renews once: claim it in the replay store, as a challenge is
	// claimed, so that a stolen certificate cannot mint certificates without end (and
	// across gateways when the store is shared). The claim outlives the last moment a
	// renewal by it is accepted by challenge.ClaimMargin, as a challenge's does: a
	// clock stepped forward and back, or a gateway ahead sweeping the shared store,
	// must not give the certificate a second renewal.
	if rp.Verifier == nil || rp.Verifier.Replay == nil {
		return fail(PhaseGateway, ReasonRenewalRefused, errors.New("renewal needs the Verifier's replay store"))
	}
	id := renewalClaimID(s)
	switch err := rp.Verifier.Replay.Claim(ctx, id, s.NotAfter.Add(rp.Renewal.Grace+challenge.ClaimMargin)); {
	case errors.Is(err, challenge.ErrReplayed):
		return fail(PhaseGateway, ReasonRenewalSigner, fmt.Errorf("certificate %x has had its one renewal (a renewal request signed by it was issued, is pending, or was refused for good)", s.SerialNumber))
	case err != nil:
		rp.tel().storeError(ctx, "replay")
		return unavailable(PhaseGateway, err)
	}
	tx.claimID, tx.claimStore = id, rp.Verifier.Replay
	tx.Renewed = rec
	return nil
}

// renewalDisabled reports whether renewal is off for tx: by the policy, or by the SCEP
// server it came through.
func (rp *RegistrationPoint) renewalDisabled(tx *Transaction) bool {
	return rp.Renewal.Disabled || tx.renewalOff
}

// renewalClaimID names the one-time renewal of cert in the replay store.
func renewalClaimID(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return "renewal:" + hex.EncodeToString(sum[:16])
}
