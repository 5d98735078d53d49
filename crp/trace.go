package crp

import (
	"context"
	"log/slog"
	"time"

	"github.com/scepkit/scepkit/internal/logtext"
)

// Trace is the record of one transaction's way through the registration point: one
// TraceStep per step run, in order. It is returned to callers that embed the verifier
// and each step is also logged.
//
// Each step is timed where its work happens. For a challenge of the Verifier the
// steps are, by phase:
//
//	gateway             csr-signature       the CSR's signature (proof of possession)
//	gateway             challenge-verify    the challenge checked offline, once: signature,
//	                                        key, issuer, audience, lifetime
//	gateway             challenge-audience  its verdict on the audience judged
//	phase1-expiry       challenge-lifetime  its verdict on the lifetime judged
//	phase2-genuineness  challenge-genuine   its verdict on signature, key, issuer judged
//	phase2-genuineness  user-active         the UserDirectory asked
//	phase2-genuineness  challenge-unused    the challenge claimed in the replay store
//	phase3-mapping      device-mapping      the DeviceRegistry asked
//	phase3-mapping      profile-match       the profile rendered, the CSR checked against it
//	template            template            the template resolved and applied
//	issue               issue               the Issuer asked
//	notify              notify-<outcome>    the Notifier told
//
// so the judging steps take next to nothing: the cost of the challenge is under
// challenge-verify. Renewals and external validators run other steps
// (renewal-signer, challenge-external, external-<phase>); a request signed by one of
// our certificates with a challenge runs renewal-signer-or-challenge, which renews if
// the signer may and otherwise verifies the challenge; user Checks add theirs.
type Trace struct {
	TransactionID string
	// ChallengeFingerprint identifies the challenge in logs; the challenge itself is
	// never recorded.
	ChallengeFingerprint string
	Steps                []TraceStep
}

// TraceStep is one step of a Trace.
type TraceStep struct {
	Phase    Phase
	Step     string
	OK       bool
	Reason   Reason // when !OK
	Err      error  // when !OK; for operators, never for the device
	Duration time.Duration
}

// Failed returns the step that refused the transaction, or nil (also for a nil Trace).
func (t *Trace) Failed() *TraceStep {
	if t == nil {
		return nil // no trace: a request refused before the registration point
	}
	for i := range t.Steps {
		if !t.Steps[i].OK {
			return &t.Steps[i]
		}
	}
	return nil
}

// step records and logs one step.
func (rp *RegistrationPoint) step(ctx context.Context, tx *Transaction, p Phase, name string, start time.Time, err *Error) {
	s := TraceStep{Phase: p, Step: name, OK: err == nil, Duration: rp.now().Sub(start)}
	if err != nil {
		s.Reason, s.Err = err.Reason, err.Err
	}
	tx.Trace.Steps = append(tx.Trace.Steps, s)
	log := rp.log()
	if !log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	attrs := []slog.Attr{
		slog.String("transactionID", tx.ID),
		slog.String("phase", p.String()),
		slog.String("step", name),
		slog.Duration("duration", s.Duration),
	}
	if tx.Trace.ChallengeFingerprint != "" {
		attrs = append(attrs, slog.String("challenge", tx.Trace.ChallengeFingerprint))
	}
	if err == nil {
		outcome := "ok"
		if p == PhaseIssue && name == "issue" && tx.Certificate == nil {
			outcome = "pending" // queued, for approval or by the CA: nothing issued
		}
		attrs = append(attrs, slog.String("outcome", outcome))
		if c := tx.Certificate; p == PhaseIssue && c != nil {
			// Which certificate, from which CA: what an operator searches the log for
			// (to revoke it, or around a rollover, to tell the CAs apart).
			attrs = append(attrs, slog.String("serial", c.SerialNumber.Text(16)), slog.String("issuer", c.Issuer.String()))
		}
		log.LogAttrs(ctx, slog.LevelInfo, "crp", attrs...)
		return
	}
	attrs = append(attrs, slog.String("outcome", "refused"), slog.String("reason", string(err.Reason)),
		slog.String("failInfo", err.FailInfo().String()))
	if err.Err != nil {
		attrs = append(attrs, slog.String("err", loggedError(err.Err)))
	}
	log.LogAttrs(ctx, slog.LevelWarn, "crp", attrs...)
}

// maxLoggedError bounds the text of an error in a step's log record: it may quote what
// a requester chose (a CSR's subject and names, as long as the body allows), and one
// request must not write a log record of its own size.
const maxLoggedError = 1024

// loggedError is err's text, cut at maxLoggedError bytes.
func loggedError(err error) string { return logtext.Cut(err.Error(), maxLoggedError) }
