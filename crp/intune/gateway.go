package intune

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/profile"
)

// Validator plugs Intune's verdict into a crp.RegistrationPoint: put it in
// RegistrationPoint.Validators. It accepts every challenge that is not one of
// scepkit's own (challenge.LooksLikeToken), so one gateway serves both without a
// network call to tell them apart. Intune's challenges do not say which tenant minted
// them: a registration point has one Intune Validator, and a gateway serving several
// tenants gives each its own path and registration point (see Tenant).
type Validator struct {
	// Client calls the validation service. Required.
	Client *Client
	// Accept, if set, replaces the default choice of the challenges to judge.
	Accept func(challenge string) bool
	// Profile, if set, is recorded as the transaction's profile (its ID names it in
	// records and template resolution). Intune's challenge does not name a scepkit
	// profile: Intune checked the CSR against its own.
	Profile *profile.Profile
}

var (
	_ crp.NamedValidator    = (*Validator)(nil)
	_ crp.NotifiedValidator = (*Validator)(nil)
)

// RequiresNotification implements crp.NotifiedValidator: true. The service requires
// that a certificate whose successNotification failed is not issued, so a
// registration point withholds it even without RequireNotification, and refuses an
// Intune Validator without a Notifier (use [Notifier], or [Tenant.Wire]).
func (v *Validator) RequiresNotification() bool { return true }

// Name implements crp.NamedValidator: "intune:" and the Client's tenant. A pending
// request (a template that needs approval, a CA that queues) is recorded with it, so
// that crp's Approve and Reject tell Intune the outcome through the Notifier.
func (v *Validator) Name() string { return "intune:" + v.Client.Tenant }

// Accepts implements crp.ChallengeValidator.
func (v *Validator) Accepts(ch string) bool {
	if v.Accept != nil {
		return v.Accept(ch)
	}
	return ch != "" && !challenge.LooksLikeToken(ch)
}

// Validate implements crp.ChallengeValidator: it calls validateRequest with the
// SCEP transactionID and the CSR, and maps a refusal code to its phase (see
// Code.Verdict). A failure to get a verdict refuses in phase 2 and matches
// crp.ErrUnavailable.
func (v *Validator) Validate(ctx context.Context, tx *crp.Transaction) error {
	if tx.CSR == nil {
		return &crp.Error{Phase: crp.PhaseGateway, Reason: crp.ReasonCSRSignature, Err: errors.New("no CSR")}
	}
	err := v.Client.ValidateRequest(ctx, tx.ID, tx.CSR.Raw)
	var se *ServiceError
	switch {
	case err == nil:
		if v.Profile != nil {
			tx.Profile = v.Profile
		}
		return nil
	case errors.As(err, &se):
		p, r := se.Code.Verdict()
		return &crp.Error{Phase: p, Reason: r, Err: err}
	}
	return &crp.Error{Phase: crp.PhaseGenuineness, Reason: crp.ReasonInternal, Err: fmt.Errorf("no verdict from Intune: %w", err)}
}

// Notifier tells Intune how the transactions its Validator judged ended: a
// successNotification for an issued certificate (set RegistrationPoint.
// RequireNotification, so that a failed one withholds the certificate, as the
// service requires), and a failureNotification when issuance failed for good after
// a successful validation: not after a transient failure or an operator fault
// (crp.Notification.Transient), after which the device sends the same transaction
// again. A certificate crp withholds after the CA signed (its record could not be
// written) is reported as that failure, never as issued: crp notifies once the record
// is written. One whose transactionID another requester's record took (another
// gateway) is refused in the gateway phase, which is not reported: the transactionID
// is the other requester's. A certificate whose gateway stopped before recording the
// outcome of its successNotification is reported as failed, after that
// successNotification, by the gateway that ends its transaction (see
// crp.ReasonNotifying). Notifications of other transactions (scepkit's own
// challenges, renewals, and any other tenant's) go to Others.
type Notifier struct {
	// Client calls the validation service. Required.
	Client *Client
	// IssuingCA names the CA in success notifications; "" means the certificate's
	// issuer DN.
	IssuingCA string
	// CAConfiguration and CertificateAuthority are sent in success notifications
	// when set.
	CAConfiguration, CertificateAuthority string
	// Others receives the notifications of transactions Intune did not judge; nil
	// drops them.
	Others crp.Notifier
}

var _ crp.Notifier = (*Notifier)(nil)

// Notify implements crp.Notifier.
func (n *Notifier) Notify(ctx context.Context, note *crp.Notification) error {
	if v, ok := note.Validator.(*Validator); !ok || !strings.EqualFold(v.Client.Tenant, n.Client.Tenant) {
		// scepkit's own challenges, renewals, and (misconfigured) another tenant's
		if n.Others != nil {
			return n.Others.Notify(ctx, note)
		}
		return nil
	}
	if note.CSR == nil {
		return errors.New("intune: notification without a CSR")
	}
	switch note.Outcome {
	case crp.OutcomeIssued:
		return n.Client.NotifySuccess(ctx, &Issued{TransactionID: note.TransactionID, CSR: note.CSR.Raw,
			Certificate: note.Certificate, IssuingCA: n.IssuingCA, CAConfiguration: n.CAConfiguration,
			CertificateAuthority: n.CertificateAuthority})
	case crp.OutcomeFailed:
		// Only a failure after Intune's verdict was Success is reported: a refusal by
		// Intune itself, or a request Intune never saw, is not (the library's rule:
		// never report its own exceptions). A transient failure or an operator fault
		// (note.Transient) is not reported either: the device retries the same
		// transaction, and the service must not hear "failed" before "issued".
		// A failure in the notify phase is reported: crp notifies one only when it
		// ends a transaction whose gateway stopped while it told the service of the
		// certificate (the service may have heard "issued"; the device never gets
		// it), and never the failure of a notification itself.
		if note.Phase < crp.PhaseTemplate || note.Transient || errors.Is(note.Err, crp.ErrUnavailable) {
			return nil
		}
		desc := note.Phase.String() + ": " + string(note.Reason)
		if note.Err != nil {
			desc += ": " + note.Err.Error()
		}
		return n.Client.NotifyFailure(ctx, note.TransactionID, note.CSR.Raw, HResultFor(note.Reason), oneLine(desc))
	}
	return nil // pending: Intune is told when the certificate is issued
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
