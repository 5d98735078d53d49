package crp

import (
	"context"
	"crypto/sha1"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"time"

	"github.com/scepkit/scepkit/challenge"
)

// issuedBy reports whether cert was signed by our CA (the previous one too, after a
// rollover).
func (rp *RegistrationPoint) issuedBy(cert *x509.Certificate) bool {
	return cert != nil && rp.signedByOurCA(cert) == nil
}

// checkIssuingCA refuses, before any challenge or renewal is claimed, a transaction
// whose CA is not valid now: a request the scep.Server chose the previous CA for
// (its requester knows no other) after that CA expired, or any request while the CA
// in force is outside its validity. Nothing could be issued for it.
func (rp *RegistrationPoint) checkIssuingCA(ctx context.Context, tx *Transaction) *Error {
	now := rp.now()
	ca := tx.ca.cert
	// The bounds catemplate applies too: valid from NotBefore, up to but not at NotAfter.
	if ca != nil && !now.Before(ca.NotBefore) && now.Before(ca.NotAfter) {
		return nil
	}
	err := errors.New("no CA certificate to issue under")
	if ca != nil {
		err = fmt.Errorf("the CA %q the request is for is valid %s to %s", ca.Subject.String(),
			ca.NotBefore.UTC().Format(time.RFC3339), ca.NotAfter.UTC().Format(time.RFC3339))
	}
	e := fail(PhaseGateway, ReasonMisconfigured, err)
	rp.step(ctx, tx, PhaseGateway, "issuing-ca", now, e)
	return e
}

// verify runs every check up to the template: gateway, phases 1-3, template. On
// success the challenge is claimed (or the renewal signer accepted) and
// tx.CertTemplate is ready to sign.
func (rp *RegistrationPoint) verify(ctx context.Context, tx *Transaction) *Error {
	if e := rp.checkIssuingCA(ctx, tx); e != nil {
		return e
	}
	signerOrChallenge := tx.Renewal && tx.Challenge != "" // a PKCSReq or a RenewalReq (scepclient sends one)
	if tx.Renewal {
		step := builtin{"renewal-signer", rp.stepRenewalSigner}
		if signerOrChallenge {
			step = builtin{"renewal-signer-or-challenge", rp.stepSignerOrChallenge}
		}
		if err := rp.runPhase(ctx, tx, PhaseGateway, builtin{"csr-signature", rp.stepCSRSignature}, step); err != nil {
			return err
		}
	}
	if tx.Renewal { // still: the signer renews
		if err := rp.runPhase(ctx, tx, PhaseGenuineness, builtin{"user-active", rp.stepUser}); err != nil {
			return err
		}
	} else if signerOrChallenge {
		// The signer could not renew; its step verified the challenge instead.
		if err := rp.challengePhases(ctx, tx); err != nil {
			return err
		}
	} else if tx.Validator = rp.validatorFor(tx.Challenge); tx.Validator != nil {
		// An external validator judges the challenge and the CSR against what the
		// MDM expects (phases 1-3); the user, device and profile steps do not run.
		rp.noteChallenge(ctx, tx)
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
			rp.noteChallenge(ctx, tx)
		}
		if err := rp.runPhase(ctx, tx, PhaseGateway,
			builtin{"csr-signature", rp.stepCSRSignature},
			builtin{"challenge-verify", rp.stepVerifyChallenge},
			builtin{"challenge-audience", rp.stepAudience}); err != nil {
			return err
		}
		if err := rp.challengePhases(ctx, tx); err != nil {
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

// challengePhases runs phases 1 and 2 of a challenge of the Verifier, verified in the
// gateway phase: its lifetime, then its genuineness, the user, and its claim.
func (rp *RegistrationPoint) challengePhases(ctx context.Context, tx *Transaction) *Error {
	if err := rp.runPhase(ctx, tx, PhaseExpiry, builtin{"challenge-lifetime", rp.stepExpiry}); err != nil {
		return err
	}
	return rp.runPhase(ctx, tx, PhaseGenuineness,
		builtin{"challenge-genuine", rp.stepGenuine},
		builtin{"user-active", rp.stepUser},
		builtin{"challenge-unused", rp.stepClaim})
}

// stepSignerOrChallenge decides a PKCSReq or RenewalReq signed by one of our
// certificates that carries a challenge: a renewal if the signer may renew (stepRenewalSigner, which
// claims it); otherwise (expired, revoked, another subject, already renewed) the
// challenge authorizes it as a new enrollment (RFC 8894 §2.3, §3.3.1), as it would
// with a self-signed signer, and this step verifies the challenge as challenge-verify
// and challenge-audience do. Clients such as certmonger and sscep sign with the
// certificate they hold, which may be the very one a fresh challenge is meant to
// replace, and scepclient sends a RenewalReq whenever it holds a certificate. One
// step, so that the signer is judged once.
func (rp *RegistrationPoint) stepSignerOrChallenge(ctx context.Context, tx *Transaction) *Error {
	e := rp.stepRenewalSigner(ctx, tx)
	if e == nil || e.Reason != ReasonRenewalSigner {
		return e
	}
	tx.Renewal = false
	if log := rp.log(); log.Enabled(ctx, slog.LevelInfo) {
		log.LogAttrs(ctx, slog.LevelInfo, "crp: the signer cannot renew; the challenge decides",
			slog.String("transactionID", tx.ID), slog.String("err", loggedError(e.Err)))
	}
	rp.noteChallenge(ctx, tx)
	if e := rp.stepVerifyChallenge(ctx, tx); e != nil {
		return e
	}
	return rp.stepAudience(ctx, tx)
}

// noteChallenge records the fingerprint of tx's challenge in its trace and its span:
// what identifies the challenge in logs, never the challenge itself.
func (rp *RegistrationPoint) noteChallenge(ctx context.Context, tx *Transaction) {
	tx.Trace.ChallengeFingerprint = challenge.Fingerprint(tx.Challenge)
	rp.tel().challengeFingerprint(ctx, tx.Trace.ChallengeFingerprint)
}

// issue runs the issue phase; it returns a nil error with tx.Certificate nil when the
// request is pending.
func (rp *RegistrationPoint) issue(ctx context.Context, tx *Transaction, approved bool) *Error {
	return rp.runPhase(ctx, tx, PhaseIssue, builtin{"issue", func(ctx context.Context, tx *Transaction) *Error {
		if tx.Template.RequiresApproval && !approved {
			return nil
		}
		if tx.ca.issuer == nil {
			return fail(PhaseIssue, ReasonMisconfigured, errors.New("no Issuer configured"))
		}
		if e := rp.pingStores(ctx, tx); e != nil {
			return e
		}
		// The Issuer gets its own copy of the template: a CA that sets its serial or
		// adds its extensions in place must not change what its certificate is
		// checked against (accept).
		cert, err := tx.ca.issuer.Issue(ctx, &IssueRequest{Template: cloneTemplate(tx.CertTemplate), PublicKey: tx.CSR.PublicKey,
			CSR: tx.CSR, TemplateName: tx.Template.Name, TransactionID: tx.ID,
			UserID: tx.UserID(), DeviceID: tx.DeviceID(), ProfileID: tx.ProfileID()})
		return rp.accept(ctx, tx, cert, err, issuerCA(tx.ca.issuer) == nil)
	}})
}

// pingStores pings, before the CA signs, each store the outcome is recorded in that is
// not the one tx's claim went to (see [Pinger]): that store answered the claim a moment
// ago, another one may be down.
func (rp *RegistrationPoint) pingStores(ctx context.Context, tx *Transaction) *Error {
	var claimed any
	switch {
	case tx.claimID != "":
		claimed = tx.claimStore
	case tx.claimed:
		claimed = rp.Verifier.Replay
	}
	for _, st := range []struct {
		name  string
		store any
	}{{"certificates", rp.certificates()}, {"transactions", rp.transactions()}} {
		p, ok := st.store.(Pinger)
		if !ok || sameStore(st.store, claimed) {
			continue
		}
		if err := p.Ping(ctx); err != nil {
			rp.tel().storeError(ctx, st.name)
			return unavailable(PhaseIssue, fmt.Errorf("the %s store does not answer, so nothing is signed: %w", st.name, err))
		}
	}
	return nil
}

// sameStore reports whether a and b are the same store value.
func sameStore(a, b any) bool {
	if a == nil || b == nil {
		return false
	}
	t := reflect.TypeOf(a)
	return t == reflect.TypeOf(b) && t.Comparable() && a == b
}

func (rp *RegistrationPoint) notification(tx *Transaction, e *Error) *Notification {
	n := &Notification{TransactionID: tx.ID, UserID: tx.UserID(), DeviceID: tx.DeviceID(), ProfileID: tx.ProfileID(),
		ChallengeFingerprint: tx.Trace.ChallengeFingerprint, CSR: tx.CSR, Renewal: tx.Renewal, IssuedAt: rp.now(),
		Trace: tx.Trace, Validator: tx.Validator}
	if tx.Template != nil {
		n.Template = tx.Template.Name
	} else {
		n.Template = tx.recordedTemplate
	}
	switch {
	case e != nil:
		n.Outcome, n.Phase, n.Reason, n.Err = OutcomeFailed, e.Phase, e.Reason, e.Err
		n.Transient = e.transientFor(tx)
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

// notify runs the notify phase, once e, tx's outcome, is recorded (finishRecord). A
// failed notification of an issued certificate is a refusal when RequireNotification
// is set or the transaction's validator requires its notification.
func (rp *RegistrationPoint) notify(ctx context.Context, tx *Transaction, e *Error) *Error {
	if rp.Notifier == nil {
		return nil
	}
	n := rp.notification(tx, e)
	var out *Error
	pe := rp.runPhase(ctx, tx, PhaseNotify, builtin{"notify-" + string(n.Outcome), func(ctx context.Context, tx *Transaction) *Error {
		if err := rp.Notifier.Notify(ctx, n); err != nil {
			out = fail(PhaseNotify, ReasonNotifyFailed, err)
			return out
		}
		return nil
	}})
	if out == nil && pe != nil && errors.Is(pe.Err, errPanicked) {
		// A notifier (or a check of this phase) that panicked told nobody: a failed
		// notification, which a required one may not be.
		out = fail(PhaseNotify, ReasonNotifyFailed, pe.Err)
	}
	if out != nil && e == nil && tx.Certificate != nil && (rp.RequireNotification || notificationRequired(tx.Validator)) {
		return out
	}
	return nil
}
