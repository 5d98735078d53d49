package crp

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scepkit/scepkit/scep"
)

// Decision is what [RegistrationPoint.Decide] decided for a request that a CA of the
// caller's will issue: the request passed the gateway step, phases 1-3 and template
// resolution, and its challenge is claimed.
type Decision struct {
	// TransactionID names the decision in [RegistrationPoint.Complete]; at most one
	// decision per transactionID is open at a time.
	TransactionID string
	// Template is what the certificate must contain: RawSubject, the
	// subjectAltName extension (in ExtraExtensions; absent when there are no SANs),
	// KeyUsage, ExtKeyUsage, UnknownExtKeyUsage, NotBefore and NotAfter, for
	// PublicKey (the CSR's key). SerialNumber and SubjectKeyId are suggestions the
	// CA may replace. Complete refuses a certificate that differs from the decision
	// the registration point keeps: Template is the caller's copy, and changing it
	// changes nothing Complete checks against.
	Template *x509.Certificate
	// TemplateName names the catemplate.Template that was applied.
	TemplateName string
	// CACert is the CA that must issue the certificate: the one in force when
	// Decide was called (after a Rollover's switch, its CA), chosen once for the
	// decision. Template's validity ends no later than CACert's.
	CACert *x509.Certificate
	// RequiresApproval is set when the template needs a CA manager's approval:
	// complete with an error matching ErrPending to queue the request.
	RequiresApproval bool
	// UserID, DeviceID and ProfileID are who and what the certificate is for (empty
	// when an external validator judged the challenge and did not say).
	UserID, DeviceID, ProfileID string
	// Expires is when the decision lapses if it was not completed.
	Expires time.Time
	// Trace is the transaction's trace so far.
	Trace *Trace
}

// Completion tells [RegistrationPoint.Complete] how the CA acted on a [Decision].
type Completion struct {
	// TransactionID names the decision. Required.
	TransactionID string
	// CSR, when the caller has it, must be the decided request (a completion for
	// another request with the same transactionID is refused: ErrOtherRequest).
	CSR *x509.CertificateRequest
	// Certificate is the issued certificate, nil when Err is set.
	Certificate *x509.Certificate
	// Err says why the CA did not issue: an error matching ErrUnavailable releases
	// the challenge (the device may retry with it), ErrPending queues the request
	// (see [RegistrationPoint.Approve]), anything else burns the challenge.
	Err error
}

// DefaultDecisionTTL is how long a decision stays open when
// RegistrationPoint.DecisionTTL is zero.
const DefaultDecisionTTL = 5 * time.Minute

// DefaultMaxOpenDecisions is how many decisions may wait for their completion at
// once when RegistrationPoint.MaxOpenDecisions is zero.
const DefaultMaxOpenDecisions = 10000

// Errors of Complete, besides *Error: test them with errors.Is. Each refuses the
// completion: it does not change the decision's outcome (a decision found lapsed is
// recorded as lapsed first; see Complete for a certificate the completion carries).
var (
	// ErrNoDecision: no open decision has this transactionID, and no final record
	// of it is kept: never decided here (or decided by another process), completed
	// as PENDING or with a transient failure, or its record expired (RecordTTL).
	ErrNoDecision = errors.New("crp: no open decision for this transaction")
	// ErrCompleted: no decision is open under this transactionID, and its record is
	// final (SUCCESS or FAILURE): the decision was completed or lapsed, or Decide
	// refused the request after claiming its challenge. It is known only while the
	// record is kept (RecordTTL); afterwards the same completion gets ErrNoDecision.
	ErrCompleted = errors.New("crp: decision already completed")
	// ErrOtherRequest: the completion's CSR is not the one decided under this
	// transactionID. The decision stays open for the right completion.
	ErrOtherRequest = errors.New("crp: completion for another request than the one decided")
)

// Reasons of Decide and Complete.
const (
	// ReasonCertMismatch: the certificate a CA issued differs from the decision.
	ReasonCertMismatch Reason = "certificate does not match the decision"
	// ReasonDecisionLapsed: the decision was not completed in time.
	ReasonDecisionLapsed Reason = "decision lapsed"
	// ReasonTooManyDecisions: MaxOpenDecisions decisions wait for their completion;
	// the refusal matches ErrUnavailable (the device may retry).
	ReasonTooManyDecisions Reason = "too many open decisions"
)

// openDecision is a decision waiting for its completion.
type openDecision struct {
	tx        *Transaction
	signerKey []byte
	expires   time.Time
}

// decisions holds the open decisions of one registration point.
type decisions struct {
	m         sync.Map     // transactionID -> *openDecision
	n         atomic.Int64 // decisions in m, and places reserved by Decide calls on their way
	lastSweep atomic.Int64 // the last sweep of sweepDecisions: its Now in unix nanoseconds
	lastMono  atomic.Int64 // and its time since monoBase, on the monotonic clock
}

// monoBase is the origin of decisions.lastMono: time.Since(monoBase) reads the
// monotonic clock, which a step of the wall clock does not move.
var monoBase = time.Now()

// reserve takes a place for a decision, if fewer than max are taken.
func (d *decisions) reserve(max int) bool {
	if d.n.Add(1) <= int64(max) {
		return true
	}
	d.n.Add(-1)
	return false
}

// remove ends the open decision od under id, if it is still open; it reports
// whether this call ended it.
func (d *decisions) remove(id any, od any) bool {
	if d.m.CompareAndDelete(id, od) {
		d.n.Add(-1)
		return true
	}
	return false
}

func (rp *RegistrationPoint) maxOpenDecisions() int {
	if rp.MaxOpenDecisions > 0 {
		return rp.MaxOpenDecisions
	}
	return DefaultMaxOpenDecisions
}

func (rp *RegistrationPoint) decisionTTL() time.Duration {
	if rp.DecisionTTL > 0 {
		return rp.DecisionTTL
	}
	return DefaultDecisionTTL
}

// Decide runs the gateway step, phases 1-3 and template resolution for a request
// that another CA will issue (step-ca, AD CS, a cloud CA), and claims its challenge
// exactly as [RegistrationPoint.Enroll] does. It does not issue: the caller's CA
// issues what the returned Decision says, then the caller reports the outcome with
// [RegistrationPoint.Complete] within DecisionTTL. A refusal is a *Error (recorded and
// notified as Enroll's are). A decision that is not completed in time lapses: its
// challenge stays claimed (burnt), the failure is recorded and notified (at the next
// Decide or Complete, which sweep lapsed decisions at most once a second, or at the
// next [RegistrationPoint.SweepDecisions]), and a late Complete is refused. Open
// decisions live in this RegistrationPoint's memory: the Complete must reach the
// process that decided. At most MaxOpenDecisions wait at once: beyond, Decide refuses
// before claiming anything, with a *Error of reason ReasonTooManyDecisions that
// matches ErrUnavailable.
//
// Decide, the CA, then Complete is what Enroll does with the Issuer, step for step.
// A transactionID is kept its requester's as by Enroll: the same request decided
// before, or another requester's record, is refused ([ReasonTransactionConflict]).
func (rp *RegistrationPoint) Decide(ctx context.Context, req *EnrollRequest) (*Decision, error) {
	if req == nil {
		return nil, errNilRequest()
	}
	rp.sweepDecisions(ctx)
	tx, e := rp.enrollTx(req)
	if e != nil {
		return nil, e
	}
	// A transactionID recorded by another requester is theirs; the same request,
	// recorded, was decided already: a second decision could only be refused later
	// (its challenge is spent) or, for a renewal, make a second certificate.
	switch rec, e := rp.priorRecord(ctx, tx, keyHash(tx.Signer)); {
	case e != nil:
		return nil, e
	case rec != nil:
		e := fail(PhaseGateway, ReasonTransactionConflict, fmt.Errorf("this request was decided before (%s): no second decision", rec.Status))
		rp.step(ctx, tx, PhaseGateway, "transaction-owner", rp.now(), e)
		return nil, e
	}
	if _, open := rp.open.m.Load(tx.ID); open { // enrollTx refused an empty transactionID
		e := fail(PhaseGateway, ReasonTransactionConflict, errors.New("a decision for this transactionID is open"))
		rp.step(ctx, tx, PhaseGateway, "transaction-open", rp.now(), e)
		return nil, e
	}
	if max := rp.maxOpenDecisions(); !rp.open.reserve(max) {
		// Refused before anything is claimed: nothing to release or record.
		e := fail(PhaseGateway, ReasonTooManyDecisions, fmt.Errorf("%w: %d decisions wait for their completion", ErrUnavailable, max))
		rp.step(ctx, tx, PhaseGateway, "decisions-open", rp.now(), e)
		return nil, e
	}
	opened := false
	defer func() {
		if !opened {
			rp.open.n.Add(-1) // the place reserved above
		}
	}()
	csrDER, signerKey := csrRaw(req.CSR), keyHash(tx.Signer)
	if e := rp.verify(ctx, tx); e != nil {
		return nil, rp.finish(ctx, tx, e, signerKey, csrDER)
	}
	od := &openDecision{tx: tx, signerKey: signerKey, expires: rp.now().Add(rp.decisionTTL())}
	if _, busy := rp.open.m.LoadOrStore(tx.ID, od); busy {
		// Another request with this transactionID was decided meanwhile: this one lost
		// the race, as the loser of a replayed challenge does. Its claims are released
		// (the challenge stays usable) and nothing is recorded or notified under the
		// transactionID of the winner's open decision.
		e := fail(PhaseGateway, ReasonTransactionConflict, errors.New("a decision for this transactionID is open"))
		rp.step(ctx, tx, PhaseGateway, "transaction-open", rp.now(), e)
		rctx, cancel := detached(ctx, time.Time{})
		rp.release(rctx, tx)
		cancel()
		return nil, e
	}
	opened = true
	return &Decision{TransactionID: tx.ID, Template: cloneTemplate(tx.CertTemplate), TemplateName: tx.Template.Name, CACert: tx.ca.cert,
		RequiresApproval: tx.Template.RequiresApproval, UserID: tx.UserID(), DeviceID: tx.DeviceID(),
		ProfileID: tx.ProfileID(), Expires: od.expires, Trace: tx.Trace}, nil
}

// Complete ends an open [Decision] with what the CA did, as Enroll ends a request
// after its Issuer: an issued certificate is checked against the decision (same
// subject, subjectAltName, key usages, public key, validity within the decided one,
// not a CA, signed by the Decision's CACert), recorded in the stores and notified (an Intune
// successNotification, say); a failure releases or burns the challenge by
// Completion.Err and is notified. It returns nil, a *Error (the certificate does not
// match, or the CA's failure, or a required notification that failed), or an error
// matching ErrNoDecision, ErrCompleted (a second completion: refused and logged) or
// ErrOtherRequest.
//
// A certificate that a refused completion carries (its decision lapsed, or was
// completed already with another certificate) is not the device's answer, but the CA
// issued it: it is recorded in the certificate inventory (when our CA signed it and
// its serial is not recorded yet), so that an operator finds it by serial, and logged
// at ERROR as withheld, to be revoked. Its transaction record, FAILURE or another
// certificate, tells it from a certificate the device got.
func (rp *RegistrationPoint) Complete(ctx context.Context, c *Completion) error {
	if c == nil {
		return errNilRequest()
	}
	rp.sweepDecisions(ctx)
	v, ok := rp.open.m.Load(c.TransactionID)
	if !ok {
		return rp.noDecision(ctx, c, nil)
	}
	od := v.(*openDecision)
	tx := od.tx
	if c.CSR != nil && !bytes.Equal(c.CSR.Raw, tx.CSR.Raw) {
		rp.log().WarnContext(ctx, "crp: completion for another request than the one decided; refused, the decision stays open",
			"transactionID", tx.ID)
		return fmt.Errorf("%w: transaction %q was decided for another CSR", ErrOtherRequest, c.TransactionID)
	}
	if !rp.open.remove(c.TransactionID, od) {
		return rp.noDecision(ctx, c, tx)
	}
	if rp.now().After(od.expires) {
		rp.lapse(ctx, od)
		return rp.noDecision(ctx, c, tx)
	}
	e := rp.runPhase(ctx, tx, PhaseIssue, builtin{"complete", func(ctx context.Context, tx *Transaction) *Error {
		return rp.accept(ctx, tx, c.Certificate, c.Err, true)
	}})
	if e = rp.finish(ctx, tx, e, od.signerKey, tx.CSR.Raw); e != nil {
		return e
	}
	return nil
}

// noDecision explains a completion that finds no open decision, and logs it: a
// certificate completed twice (or after its decision lapsed) is worth an operator's
// look. A certificate it carries exists all the same: it is recorded in the inventory
// (see lateCertificate). tx is the decision's transaction when it was just lapsed or
// completed, nil when it is unknown here.
func (rp *RegistrationPoint) noDecision(ctx context.Context, c *Completion, tx *Transaction) error {
	rec, err := rp.transactions().Get(ctx, c.TransactionID)
	completed := err == nil && rec.Status != scep.Pending
	if c.Certificate != nil {
		ic := &IssuedCertificate{Certificate: c.Certificate, TransactionID: c.TransactionID, IssuedAt: rp.now()}
		switch {
		case tx != nil:
			ic.UserID, ic.DeviceID, ic.ProfileID = tx.UserID(), tx.DeviceID(), tx.ProfileID()
			if tx.Template != nil {
				ic.Template = tx.Template.Name
			}
		case err == nil:
			ic.UserID, ic.DeviceID, ic.ProfileID, ic.Template = rec.UserID, rec.DeviceID, rec.ProfileID, rec.Template
		}
		rp.lateCertificate(ctx, ic)
	}
	attrs := []any{"transactionID", c.TransactionID}
	if c.Certificate != nil {
		attrs = append(attrs, "serial", fmt.Sprintf("%x", c.Certificate.SerialNumber))
	}
	if completed {
		rp.log().WarnContext(ctx, "crp: decision completed twice, or after it lapsed; refused", attrs...)
		return fmt.Errorf("%w: transaction %q", ErrCompleted, c.TransactionID)
	}
	rp.log().WarnContext(ctx, "crp: completion for no open decision; refused", attrs...)
	return fmt.Errorf("%w: transaction %q", ErrNoDecision, c.TransactionID)
}

// lateCertificate takes a certificate a completion brought when no decision was open
// for it (it lapsed, was completed already, or is unknown here). The CA issued it,
// and it is not the device's answer: it is recorded in the inventory, where an
// operator (and intune.CARevoker) finds it by serial to revoke it, and logged as
// withheld. Nothing is logged for the certificate the inventory already holds (a
// completion repeated with the same certificate); a certificate our CA did not sign
// (neither CA of a rollover) is not ours to record, and a serial recorded with
// another certificate is kept.
func (rp *RegistrationPoint) lateCertificate(ctx context.Context, ic *IssuedCertificate) {
	rp.recordWithheld(ctx, ic, "completed late", true, nil)
}

// recordWithheld records in the inventory a certificate the CA issued that the device
// is not given (why, with the detail cause), as lateCertificate says, and logs it as
// withheld: the inventory is where an operator, or code of the embedding CA, finds
// what to revoke. late says the certificate came with a completion for no open
// decision: one the inventory holds already, withheld or not, is then a completion
// repeated, said before or the device's own.
func (rp *RegistrationPoint) recordWithheld(ctx context.Context, ic *IssuedCertificate, why string, late bool, cause error) {
	cert := ic.Certificate
	have, err := rp.certificates().Lookup(ctx, cert.SerialNumber)
	switch {
	case err == nil && bytes.Equal(have.Certificate.Raw, cert.Raw) && (have.Withheld || late):
		// A completion repeated with the same certificate: said already, or that
		// certificate is the device's.
		return
	case err == nil && bytes.Equal(have.Certificate.Raw, cert.Raw):
		// Recorded as given to a device before (an Issuer that returned a
		// certificate it had issued already): that record stands.
		rp.withheld(ctx, ic.TransactionID, cert, why+"; already recorded as issued for transaction "+have.TransactionID, cause)
		return
	case err == nil:
		rp.withheld(ctx, ic.TransactionID, cert, why+", with the serial of another certificate", cause)
		return
	case !errors.Is(err, ErrNotFound):
		rp.tel().storeError(ctx, "certificates")
		rp.withheld(ctx, ic.TransactionID, cert, why+"; not recorded", errors.Join(cause, err))
		return
	}
	if err := rp.signedByOurCA(cert); err != nil {
		rp.withheld(ctx, ic.TransactionID, cert, why+"; not signed by our CA, not recorded", errors.Join(cause, err))
		return
	}
	withheld := *ic
	withheld.Withheld = true
	if err := rp.certificates().Add(ctx, &withheld); err != nil {
		rp.tel().storeError(ctx, "certificates")
		rp.withheld(ctx, ic.TransactionID, cert, why+"; not recorded", errors.Join(cause, err))
		return
	}
	// A completion of this same certificate that the device did get may have been
	// recorded between the Lookup above and this Add (the same certificate completed
	// twice at once), and this Add replaced its entry: its transaction record says
	// so, and the entry is put back as issued.
	if ic.TransactionID != "" {
		if rec, err := rp.transactions().Get(ctx, ic.TransactionID); err == nil && rec.Status == scep.Success &&
			rec.Certificate != nil && bytes.Equal(rec.Certificate.Raw, cert.Raw) {
			issued := *ic
			issued.Withheld = false
			if err := rp.certificates().Add(ctx, &issued); err != nil {
				rp.tel().storeError(ctx, "certificates")
				rp.log().ErrorContext(ctx, "crp: restoring an issued certificate marked withheld by a concurrent completion",
					"transactionID", ic.TransactionID, "serial", fmt.Sprintf("%x", cert.SerialNumber), "err", err)
			}
			return
		}
	}
	rp.withheld(ctx, ic.TransactionID, cert, why+"; recorded in the inventory as withheld", cause)
}

// withheld logs, at ERROR, a certificate the CA issued that the device is not given:
// an operator must revoke it. why says what happened, err (if any) the detail.
func (rp *RegistrationPoint) withheld(ctx context.Context, txID string, cert *x509.Certificate, why string, err error) {
	attrs := []any{"transactionID", txID, "serial", fmt.Sprintf("%x", cert.SerialNumber), "issuer", cert.Issuer.String(), "reason", why}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	rp.log().ErrorContext(ctx, "crp: certificate issued but withheld from the device; revoke it", attrs...)
}

// SweepDecisions lapses the decisions of Decide whose DecisionTTL is over, and
// returns how many. Decide and Complete sweep too, at most once a second and only
// when they are called: a CA that embeds the registration point may call
// SweepDecisions on a ticker so that lapses are recorded and notified (Intune's
// failure notification, say) on time while no request comes.
func (rp *RegistrationPoint) SweepDecisions(ctx context.Context) int {
	return rp.sweep(ctx, rp.now())
}

// sweepDecisions sweeps at most once per second (amortized over calls of Decide and
// Complete): once Now has moved a second past the last sweep, or a second has passed
// on the monotonic clock. By Now alone, a clock stepped forward and back stopped the
// sweeps until it had caught up with the step, and lapsed decisions kept their places
// (MaxOpenDecisions) meanwhile.
func (rp *RegistrationPoint) sweepDecisions(ctx context.Context) {
	now, mono := rp.now(), int64(time.Since(monoBase))
	last, lastMono := rp.open.lastSweep.Load(), rp.open.lastMono.Load()
	if now.UnixNano()-last < int64(time.Second) && mono-lastMono < int64(time.Second) {
		return
	}
	if !rp.open.lastMono.CompareAndSwap(lastMono, mono) {
		return // another call sweeps
	}
	rp.open.lastSweep.Store(now.UnixNano())
	rp.sweep(ctx, now)
}

// sweep lapses the open decisions past their time at now.
func (rp *RegistrationPoint) sweep(ctx context.Context, now time.Time) int {
	n := 0
	rp.open.m.Range(func(k, v any) bool {
		if od := v.(*openDecision); now.After(od.expires) && rp.open.remove(k, v) {
			rp.lapse(ctx, od)
			n++
		}
		return true
	})
	return n
}

// lapse ends a decision that was not completed in time: the challenge stays claimed,
// the failure is recorded and notified.
func (rp *RegistrationPoint) lapse(ctx context.Context, od *openDecision) {
	tx := od.tx
	e := fail(PhaseIssue, ReasonDecisionLapsed, errors.New("the CA did not report within the decision's time"))
	rp.step(ctx, tx, PhaseIssue, "complete", rp.now(), e)
	rp.finish(context.WithoutCancel(ctx), tx, e, od.signerKey, tx.CSR.Raw)
}

// accept takes what the CA answered for tx: a certificate (checked against the
// decision, then remembered), a queued request (tx.Certificate stays nil), or a
// failure. With verify, the certificate's issuer name and signature are checked
// against the decision's CA first: whatever signed it is not known to hold that CA's
// key (only the built-in CA checks its own signatures). A certificate that fails
// either check is withheld.
func (rp *RegistrationPoint) accept(ctx context.Context, tx *Transaction, cert *x509.Certificate, err error, verify bool) *Error {
	switch {
	case errors.Is(err, ErrPending):
		return nil
	case errors.Is(err, ErrUnavailable):
		return fail(PhaseIssue, ReasonCAUnavailable, err)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		// The CA did not answer in time, or the request went away while it worked:
		// nothing says it refused, so the device may try again.
		return fail(PhaseIssue, ReasonCAUnavailable, fmt.Errorf("%w: %w", ErrUnavailable, err))
	case err != nil && !errors.Is(err, ErrRefused):
		// Any other error is a definitive refusal too: said so to errors.Is.
		return fail(PhaseIssue, ReasonCARefused, fmt.Errorf("%w: %w", ErrRefused, err))
	case err != nil:
		return fail(PhaseIssue, ReasonCARefused, err)
	case cert == nil:
		// Neither a certificate nor an error: a bug of the Issuer. The CA was asked
		// and may have signed, so the challenge stays spent, as after a refusal.
		return fail(PhaseIssue, ReasonCARefused, errors.New("the Issuer returned neither a certificate nor an error"))
	}
	if verify {
		if err := issuedUnder(cert, tx.ca.cert, nil); err != nil {
			e := fail(PhaseIssue, ReasonCertMismatch, fmt.Errorf("not signed by the CA: %w", err))
			rp.withheld(ctx, tx.ID, cert, string(ReasonCertMismatch), e.Err)
			return e
		}
	}
	ic := &IssuedCertificate{Certificate: cert, UserID: tx.UserID(), DeviceID: tx.DeviceID(),
		ProfileID: tx.ProfileID(), Template: tx.Template.Name, TransactionID: tx.ID, IssuedAt: rp.now()}
	if err := Matches(tx.CertTemplate, cert); err != nil {
		// Our CA signed it (checked above, or a CAIssuer's): it exists, valid until
		// revoked, so the inventory lists it for the operator to revoke.
		dctx, cancel := detached(ctx, tx.leaseEnd)
		rp.recordWithheld(dctx, ic, string(ReasonCertMismatch), false, err)
		cancel()
		return fail(PhaseIssue, ReasonCertMismatch, err)
	}
	tx.Certificate = cert
	if rp.issuanceRecorder() != nil {
		// Written with the transaction record, in one commit (finishRecord).
		tx.unrecorded = ic
		return nil
	}
	// The inventory holds the certificate before the device can: a certificate
	// that could not be recorded is withheld (the device gets FAILURE). Written
	// whether or not the device hangs up meanwhile, as finishRecord writes: a write
	// cut by the request's end may reach the store after all, and the operator could
	// not tell which revocation the withheld certificate needs.
	dctx, cancel := detached(ctx, tx.leaseEnd)
	defer cancel()
	if e := rp.addCertificate(dctx, ic); e != nil {
		return e
	}
	tx.added = ic
	return nil
}

// addCertificate writes ic to the inventory alone; a failure is an internal *Error.
func (rp *RegistrationPoint) addCertificate(ctx context.Context, ic *IssuedCertificate) *Error {
	if err := rp.certificates().Add(ctx, ic); err != nil {
		rp.tel().storeError(ctx, "certificates")
		rp.log().ErrorContext(ctx, "crp: recording the issued certificate", "transactionID", ic.TransactionID, "err", err)
		return fail(PhaseIssue, ReasonInternal, fmt.Errorf("recording the issued certificate: %w", err))
	}
	return nil
}

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// Matches reports how cert differs from the decided template (a Decision's): its
// subject (the same DER), its subjectAltName extension (the same DER and
// criticality, or both absent), key usage, extended key usages (as sets), public key,
// not a CA, and a validity within the decided one (to the second, as certificates
// encode it). Serial, issuer and other extensions are the CA's. A nil decided or
// cert is an error.
func Matches(decided, cert *x509.Certificate) error {
	if decided == nil || cert == nil {
		return errors.New("crp: Matches needs the decided template and the certificate")
	}
	var diff []string
	if !bytes.Equal(cert.RawSubject, decided.RawSubject) {
		diff = append(diff, "subject")
	}
	if want, got := extension(decided.ExtraExtensions, oidSubjectAltName), extension(cert.Extensions, oidSubjectAltName); (want == nil) != (got == nil) ||
		(want != nil && (!bytes.Equal(want.Value, got.Value) || want.Critical != got.Critical)) {
		diff = append(diff, "subjectAltName")
	}
	if cert.KeyUsage != decided.KeyUsage {
		diff = append(diff, "keyUsage")
	}
	if !sameSet(cert.ExtKeyUsage, decided.ExtKeyUsage, cmp.Compare[x509.ExtKeyUsage]) ||
		!sameSet(cert.UnknownExtKeyUsage, decided.UnknownExtKeyUsage, slices.Compare[asn1.ObjectIdentifier]) {
		diff = append(diff, "extKeyUsage")
	}
	if pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(decided.PublicKey) {
		diff = append(diff, "public key")
	}
	if cert.IsCA {
		diff = append(diff, "basicConstraints (a CA)")
	}
	if cert.NotBefore.Before(decided.NotBefore.Truncate(time.Second)) || cert.NotAfter.After(decided.NotAfter) {
		diff = append(diff, "validity")
	}
	if len(diff) > 0 {
		return fmt.Errorf("the certificate differs from the decision in %v", diff)
	}
	return nil
}

func extension(exts []pkix.Extension, id asn1.ObjectIdentifier) *pkix.Extension {
	for i := range exts {
		if exts[i].Id.Equal(id) {
			return &exts[i]
		}
	}
	return nil
}

// sameSet reports whether a and b hold the same elements, ignoring order and
// repetition; compare orders them.
func sameSet[T any](a, b []T, compare func(T, T) int) bool {
	equal := func(x, y T) bool { return compare(x, y) == 0 }
	set := func(s []T) []T {
		s = slices.Clone(s)
		slices.SortFunc(s, compare)
		return slices.CompactFunc(s, equal)
	}
	return slices.EqualFunc(set(a), set(b), equal)
}

func csrRaw(csr *x509.CertificateRequest) []byte {
	if csr == nil {
		return nil
	}
	return csr.Raw
}
