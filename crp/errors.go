package crp

import (
	"errors"
	"strconv"
	"strings"

	"github.com/scepkit/scepkit/scep"
)

// Phase names a step of the registration point's flow. Its zero value is
// [PhaseGateway]: a field that names the phase of a refusal (Notification.Phase,
// Record.Phase) holds PhaseGateway, meaning nothing, for a certificate issued or a
// request pending; read it only with OutcomeFailed or a Failure status.
type Phase int

// The phases, in the order a request runs through them.
const (
	// PhaseGateway: the request is addressed to this gateway (challenge audience) and
	// the CSR proves possession of its key; renewal signers are checked here too.
	PhaseGateway Phase = iota
	// PhaseExpiry (phase 1): the challenge is within its lifetime, at most one hour.
	PhaseExpiry
	// PhaseGenuineness (phase 2): the challenge is genuine and unused; the user it
	// names exists and is active.
	PhaseGenuineness
	// PhaseMapping (phase 3): the device exists, belongs to that user and is in good
	// standing; the CSR matches the profile rendered for them.
	PhaseMapping
	// PhaseTemplate: a published template is resolved and accepts the CSR.
	PhaseTemplate
	// PhaseIssue: the CA issues (or queues: PENDING).
	PhaseIssue
	// PhaseNotify: the MDM is told.
	PhaseNotify
)

// String returns the phase's name ("gateway", "phase1-expiry", ...).
func (p Phase) String() string {
	switch p {
	case PhaseGateway:
		return "gateway"
	case PhaseExpiry:
		return "phase1-expiry"
	case PhaseGenuineness:
		return "phase2-genuineness"
	case PhaseMapping:
		return "phase3-mapping"
	case PhaseTemplate:
		return "template"
	case PhaseIssue:
		return "issue"
	case PhaseNotify:
		return "notify"
	}
	return "unknown(" + strconv.Itoa(int(p)) + ")"
}

// FailInfo is the SCEP failInfo a refusal in phase p answers with: badTime for phase 1
// (an expired or not yet valid challenge, RFC 8894 §3.2.1.4), badRequest for the
// others.
func (p Phase) FailInfo() scep.FailInfo {
	if p == PhaseExpiry {
		return scep.BadTime
	}
	return scep.BadRequest
}

// Reason says why a request was refused, in words an operator searches logs for.
type Reason string

// The reasons the built-in steps give.
const (
	ReasonNoChallenge         Reason = "no challenge"
	ReasonWrongGateway        Reason = "challenge for another gateway"
	ReasonCSRSignature        Reason = "CSR signature does not verify"
	ReasonExpired             Reason = "challenge expired"
	ReasonNotYetValid         Reason = "challenge not yet valid"
	ReasonLifetime            Reason = "challenge lifetime over one hour"
	ReasonMalformed           Reason = "challenge malformed"
	ReasonBadSignature        Reason = "challenge signature invalid"
	ReasonUnknownKey          Reason = "challenge key unknown"
	ReasonWrongIssuer         Reason = "challenge from another issuer"
	ReasonReplayed            Reason = "challenge already used"
	ReasonUserUnknown         Reason = "user unknown"
	ReasonUserDisabled        Reason = "user disabled"
	ReasonDeviceUnknown       Reason = "device unknown"
	ReasonDeviceOtherUser     Reason = "device enrolled to another user"
	ReasonDeviceNotCompliant  Reason = "device not compliant"
	ReasonProfileUnknown      Reason = "profile unknown"
	ReasonCSRMismatch         Reason = "CSR does not match the profile"
	ReasonNoTemplate          Reason = "no template"
	ReasonTemplateUnpublish   Reason = "template not published"
	ReasonKeyRefused          Reason = "key refused by the template"
	ReasonCARefused           Reason = "CA refused"
	ReasonCAUnavailable       Reason = "CA unavailable"
	ReasonNotifyFailed        Reason = "MDM notification failed"
	ReasonRenewalRefused      Reason = "renewal refused"
	ReasonRenewalSigner       Reason = "renewal signer not acceptable"
	ReasonUnknownTransaction  Reason = "unknown transaction"
	ReasonTransactionConflict Reason = "transactionID in use by another requester"
	ReasonRejected            Reason = "request rejected"
	// ReasonNotifying is the reason a FAILURE record gives while the MDM is told of
	// its certificate (a required notification; see [Notifier]): the certificate is
	// withheld until the record says SUCCESS (the record keeps it, never answered).
	// A poll or resend that reads it is answered PENDING while the gateway that
	// notifies may still record the outcome (for a minute from when the record was
	// made). Once it can no longer (it stopped before recording it, and the MDM may
	// have heard of the certificate), the gateway that reads the record ends the
	// transaction: it replaces the record with the final FAILURE
	// (ReasonNotifyFailed), with a compare-and-swap when the store is a
	// [TransactionReplacer] (of gateways reading it at once, one ends it; without
	// one, each does, and the MDM hears the failure once for each), keeps the
	// certificate withheld in the inventory, tells the MDM the failure, and then
	// answers FAILURE (ReasonNotifyFailed). A record it cannot replace fails the
	// request as transient, and the next read tries again; a failure
	// notification that fails is logged and not made again, as any notification.
	ReasonNotifying Reason = "MDM notification in progress"
	// ReasonRevoked: a resend or poll whose recorded certificate has been revoked
	// since; the device enrolls again rather than install it.
	ReasonRevoked     Reason = "certificate revoked since"
	ReasonInternal    Reason = "internal error"
	ReasonCheckFailed Reason = "check failed"
	// ReasonMisconfigured is an operator fault, not the device's: the profile cannot
	// be rendered for this user and device (an invalid profile, a variable the
	// directory has no value for), or the template cannot be applied (an invalid
	// template, a CA outside its validity). The challenge is released, not burned,
	// so that the device's retry succeeds once the configuration is fixed.
	ReasonMisconfigured Reason = "gateway misconfigured"
)

// Error is a refusal: the phase that refused, why, and the underlying error. The
// device sees only the failInfo; the log and the trace see all of it.
type Error struct {
	// Phase is where the request was refused; with Reason, it decides the
	// failInfo the device receives (FailInfo).
	Phase Phase
	// Reason is why: one of the Reason constants.
	Reason Reason
	// Err is the underlying error, for the log and errors.Is/As (nil when the
	// reason says all).
	Err error
}

// Error implements error: "crp: <phase>: <reason>: <underlying error>", the
// underlying error's own "crp: " prefix dropped so that it is not said twice.
func (e *Error) Error() string {
	s := "crp: " + e.Phase.String() + ": " + string(e.Reason)
	if e.Err != nil {
		s += ": " + strings.TrimPrefix(e.Err.Error(), "crp: ")
	}
	return s
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// FailInfo is the SCEP failInfo the device receives: the phase's, except for a CSR
// whose signature does not verify, which fails an integrity check (badMessageCheck,
// like any other signature that does not verify) unless its key is one scepkit does
// not verify with (badAlg, as [scep.CheckKeySize] refuses it) or its signature
// algorithm is refused (badAlg: MD5, or one crypto/x509 does not know), and for an operator fault
// ([ReasonMisconfigured]), which answers badCertId ("no certificate could be
// identified matching the provided criteria", RFC 8894 §3.2.1.4): the gateway
// cannot make a certificate for this profile, whatever the device sends, and a
// device log tells it apart from a refused request (badRequest).
func (e *Error) FailInfo() scep.FailInfo {
	switch e.Reason {
	case ReasonCSRSignature:
		if errors.Is(e.Err, scep.ErrUnsupportedAlgorithm) {
			return scep.BadAlg
		}
		return scep.BadMessageCheck
	case ReasonMisconfigured:
		return scep.BadCertID
	}
	return e.Phase.FailInfo()
}

// releases reports whether the refusal leaves the challenge usable again: a
// transient failure, or an operator fault, before anything was issued.
func (e *Error) releases() bool {
	return e.Reason == ReasonMisconfigured || errors.Is(e.Err, ErrUnavailable) ||
		e.Phase < PhaseIssue && errors.Is(e.Err, errPanicked)
}

// transientFor reports whether e, tx's refusal, is transient: it releases and the CA
// has signed nothing for tx (finishRecord then records nothing, and the MDM is told
// so: Notification.Transient). False for a nil e.
func (e *Error) transientFor(tx *Transaction) bool {
	return e != nil && e.releases() && tx.Certificate == nil
}

func fail(p Phase, r Reason, err error) *Error { return &Error{Phase: p, Reason: r, Err: err} }

// errNilRequest is Enroll's, Decide's, Complete's and Respond's answer to a nil
// request: a caller's mistake, refused without a trace in the store. A new *Error each
// time, since callers may change what they get.
func errNilRequest() *Error {
	return &Error{Phase: PhaseGateway, Reason: ReasonRejected, Err: errors.New("nil request")}
}

// Errors the interfaces of this package return, and that callers test with errors.Is.
var (
	// ErrNotFound: a directory, registry or store has no such entry.
	ErrNotFound = errors.New("crp: not found")
	// ErrUnavailable marks a transient failure (a CA or store that cannot be reached):
	// the challenge is released so that the device can retry with it.
	ErrUnavailable = errors.New("crp: unavailable")
	// ErrPending, returned by an Issuer, queues the request: the device gets PENDING
	// and polls.
	ErrPending = errors.New("crp: pending")
	// ErrRefused, returned by an Issuer, is a definitive refusal by the CA.
	ErrRefused = errors.New("crp: refused by the CA")
	// ErrRecordExists, returned by [TransactionCreator.Create] and
	// [IssuanceCreator.CreateIssuance], says that a record of the transaction id is
	// stored already (and has not expired): nothing was written.
	ErrRecordExists = errors.New("crp: a record of this transaction id is stored")
)
