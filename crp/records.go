package crp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/scep"
)

// finish releases a claimed challenge after a transient failure or an operator fault,
// keeps a record of a definitive outcome so that resends and polls get the same answer,
// and notifies (see finishRecord), for a request whose hash is not known yet.
func (rp *RegistrationPoint) finish(ctx context.Context, tx *Transaction, e *Error, signerKey, csrDER []byte) *Error {
	if tx.reqHash == nil {
		tx.reqHash = requestHash(tx.MessageType, tx.Signer, csrDER)
	}
	return rp.finishRecord(ctx, tx, e, signerKey, csrDER)
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

// finishRecord is finish for a transaction whose request hash (tx.reqHash) is set:
// the one of the request being answered, or the one a pending request's record
// keeps.
//
// The record is written before the MDM is told (the notify phase), so that the MDM
// hears the outcome the device gets: a certificate whose record could not be written,
// or whose transactionID another requester's record took meanwhile (another gateway,
// ErrRecordExists), is withheld, and the MDM is told that failure, never "issued".
// A certificate whose notification is required (RequireNotification, a
// NotifiedValidator) is recorded twice: first as withheld while the MDM is told
// (finishNotified), then, once the MDM has heard of it, as issued. A gateway that
// stops between the two has told the MDM nothing the device may not have, or has told
// it of a certificate no device gets, until the next poll or resend tells it the
// failure (see finishNotified).
// Without a required notification the certificate is recorded as issued at once, and
// a gateway that stops before notifying leaves it untold. The outcome of a pending
// request being decided (Approve, Reject) that could not be recorded is not notified,
// whether or not the CA signed (a certificate signed is withheld): the request stays
// PENDING, to be decided again.
//
// It runs with ctx's values but not its end: a client that hangs up once its request is
// being decided (the HTTP request's context ends) must not leave its challenge claimed
// after a transient failure, nor a certificate the CA signed out of the record and the
// inventory. finishTimeout bounds it instead, and a decision's lease (tx.leaseEnd)
// until its record is written.
func (rp *RegistrationPoint) finishRecord(ctx context.Context, tx *Transaction, e *Error, signerKey, csrDER []byte) *Error {
	parent := ctx
	ctx, cancel := detached(parent, tx.leaseEnd)
	defer cancel()
	// Once the CA has signed, the outcome is never transient: the challenge stays
	// claimed and the outcome is recorded, so that a retry cannot obtain a second
	// certificate (for example when a required notification fails after issuance).
	transient := e.transientFor(tx)
	if transient || e != nil && tx.Renewal && tx.Certificate == nil && e.Phase < PhaseIssue {
		// A renewal refused before the CA was asked gives its one renewal back: the
		// certificate proves its holder as well as before, and keeping the claim
		// left a device whose renewal was refused (a key size its profile does not
		// allow, a user disabled for a while) unable to renew at all. Once the CA
		// was asked (a decision that lapsed, a certificate withheld for not matching
		// it) it may have signed: the claim stays. A challenge stays spent: its
		// holder gets a new one from the MDM.
		rp.release(ctx, tx)
	}
	if e != nil && tx.Certificate != nil {
		rp.withheld(ctx, tx.ID, tx.Certificate, string(e.Reason), nil)
		rp.markWithheld(ctx, tx)
	}
	// Recorded: successes, PENDING, and refusals of requests that were authenticated
	// (challenge claimed, an external challenge claimed, renewal signer accepted, or
	// a certificate issued). An anonymous refusal is not recorded: it costs nothing to
	// repeat and must not let anyone fill the store or overwrite the record of another
	// transaction. A replayed challenge is not recorded either: when
	// two copies of one request race, the loser's refusal must not replace the
	// winner's record.
	authenticated := tx.claimed || tx.claimID != "" || tx.Renewed != nil || tx.Certificate != nil
	if transient || tx.ID == "" || (e != nil && (!authenticated || e.Reason == ReasonReplayed)) {
		if ic := tx.unrecorded; ic != nil {
			// No record to write it with: the certificate alone.
			tx.unrecorded = nil
			if ae := rp.addCertificate(ctx, ic); ae != nil && e == nil {
				e = ae
				rp.withheld(ctx, tx.ID, tx.Certificate, string(e.Reason), nil)
			} else if ae == nil {
				tx.added = ic
			}
		}
		return rp.notifyOutcome(ctx, tx, e)
	}
	rec := rp.recordOf(tx, e, signerKey, csrDER)
	if e == nil && tx.Certificate != nil && rp.notificationRequiredFor(tx) {
		return rp.finishNotified(parent, ctx, tx, rec, csrDER)
	}
	e, written := rp.writeOutcome(ctx, tx, e, rec)
	if !written && tx.resumed {
		// Still PENDING, to be decided again (Approve and Reject give the decision
		// back; a certificate signed is withheld, and the request waits for the
		// lease): nothing is decided yet, and an MDM told "failed" must not see it
		// issued later.
		return e
	}
	if written {
		// The record holds the outcome now, whatever the lease: the MDM is told
		// under a bound of its own.
		nctx, ncancel := detached(parent, time.Time{})
		defer ncancel()
		ctx = nctx
	}
	return rp.notifyOutcome(ctx, tx, e)
}

// notifyOutcome notifies e, tx's outcome, once it is recorded or known to be
// recorded never. It returns e, or the failure of a required notification of an issued
// certificate (which a transaction without a record can carry only), after which the
// certificate is withheld.
func (rp *RegistrationPoint) notifyOutcome(ctx context.Context, tx *Transaction, e *Error) *Error {
	out := rp.notify(ctx, tx, e)
	if out == nil || e != nil {
		return e
	}
	rp.withheld(ctx, tx.ID, tx.Certificate, string(out.Reason), nil)
	rp.markWithheld(ctx, tx)
	return out
}

// notificationRequiredFor reports whether an issued certificate of tx may reach its
// device only once the MDM has heard of it: RequireNotification, or a
// NotifiedValidator judged tx.
func (rp *RegistrationPoint) notificationRequiredFor(tx *Transaction) bool {
	return rp.Notifier != nil && (rp.RequireNotification || notificationRequired(tx.Validator))
}

// recordOf is the record of tx, whose outcome is e.
func (rp *RegistrationPoint) recordOf(tx *Transaction, e *Error, signerKey, csrDER []byte) *Record {
	now := rp.now()
	rec := &Record{TransactionID: tx.ID, SignerKey: signerKey, Request: tx.reqHash, Expires: now.Add(rp.ttl()), Written: now,
		UserID: tx.UserID(), DeviceID: tx.DeviceID(), ProfileID: tx.ProfileID()}
	if e != nil && len(signerKey) == 0 {
		// A refusal of a request without a signer (Enroll without a Proof, Decide)
		// keeps its CSR: the key that made the request, whose holder may send another
		// request under the transactionID (priorRecord).
		rec.CSR = csrDER
	}
	if e == nil && tx.Certificate == nil {
		rec.CSR = csrDER // a PENDING request is decided later, from its CSR
		if nv, ok := tx.Validator.(NamedValidator); ok {
			rec.Validator = nv.Name() // and its external verdict stands
		}
		rec.CAHash = caHash(tx.ca.cert) // and issued by the CA its requester trusts
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
	return rec
}

// writeOutcome writes rec, the record of tx whose outcome is e, with tx's certificate when
// it is still to be written with it (tx.unrecorded). It returns the outcome, e or why
// it could not be recorded (the certificate then withheld), and whether rec was
// written. When another requester's record of tx.ID was written meanwhile, rec is not
// written and the outcome is lostTransactionID's.
func (rp *RegistrationPoint) writeOutcome(ctx context.Context, tx *Transaction, e *Error, rec *Record) (*Error, bool) {
	var err error
	switch ic := tx.unrecorded; {
	case !tx.leaseEnd.IsZero() && !time.Now().Before(tx.leaseEnd):
		// The decision's lease has passed: another gateway may have decided since,
		// and this record would overwrite its. Not written; a certificate is withheld.
		err = errors.New("the decision's lease ran out before its outcome was recorded")
	case ic != nil:
		// The certificate and its record in one commit.
		tx.unrecorded = nil
		err = rp.writeIssuance(ctx, tx, ic, rec)
	default:
		err = rp.writeRecord(ctx, tx, rec)
	}
	if errors.Is(err, ErrRecordExists) {
		return rp.lostTransactionID(ctx, tx, e), false
	}
	if err != nil {
		return rp.unrecorded(ctx, tx, e, err), false
	}
	return e, true
}

// unrecorded is the outcome of tx, e, when its record could not be written (err): a
// certificate or a PENDING the record does not hold is not acknowledged, since polls
// and resends could not find it, and the certificate is withheld; a refusal stays
// the refusal.
func (rp *RegistrationPoint) unrecorded(ctx context.Context, tx *Transaction, e *Error, err error) *Error {
	tx.recordErr = err
	rp.tel().storeError(ctx, "transactions")
	rp.log().ErrorContext(ctx, "crp: recording transaction", "transactionID", tx.ID, "err", err)
	if e != nil {
		return e
	}
	e = fail(PhaseIssue, ReasonInternal, fmt.Errorf("recording the transaction: %w", err))
	if tx.Certificate != nil {
		rp.withheld(ctx, tx.ID, tx.Certificate, string(e.Reason), nil)
		rp.markWithheld(ctx, tx) // when the inventory holds it already
	}
	return e
}

// finishNotified records and notifies tx's issued certificate, which its device may
// have only once the MDM has heard of it (notificationRequiredFor): rec is its record
// as issued. The record is written first as the record of a certificate withheld while
// the MDM is told (FAILURE, ReasonNotifying; in the inventory, marked withheld when it
// is written with it), which claims the transactionID; a lost transactionID, or a
// record that cannot be written, withholds the certificate then, and the MDM is told
// that failure. Only then is the MDM told of the certificate, and once it has heard,
// rec replaces that record, and the inventory's entry is unmarked: in the same write
// when the store is an IssuanceReplacer (heldReplacer), with a write of its own after
// otherwise.
// A poll or resend that reads the first record meanwhile is answered PENDING (see
// ReasonNotifying). A notification that fails is recorded as that failure
// (ReasonNotifyFailed). A gateway that stops before rec is written leaves the
// certificate withheld: the MDM was not told of it, or was told of a certificate no
// device gets. The gateway that reads the record once this one can no longer write it
// ends it (endNotifying): the record says FAILURE, and the MDM is told that failure.
// With a store that is a TransactionReplacer, rec replaces the held record only while
// it is still held: a gateway too slow to write rec before another ended the
// transaction answers FAILURE (ReasonNotifyFailed) and tells the MDM nothing more.
// When rec cannot be written after the MDM heard of the certificate, the device gets
// FAILURE and the MDM is told that failure after the success.
//
// parent is finishRecord's context; ctx is bounded by the decision's lease, which
// bounds the first write only: once it is written, the request is no longer PENDING,
// and no other gateway decides it.
func (rp *RegistrationPoint) finishNotified(parent, ctx context.Context, tx *Transaction, rec *Record, csrDER []byte) *Error {
	held := *rec
	// The record keeps what a gateway that reads it once this one can no longer end
	// it needs to tell the MDM the failure (endNotifying): the certificate withheld
	// (never answered: its Status is FAILURE), the CSR and the validator's name.
	held.Status, held.Phase, held.Reason, held.CSR = scep.Failure, PhaseNotify, ReasonNotifying, csrDER
	if nv, ok := tx.Validator.(NamedValidator); ok {
		held.Validator = nv.Name()
	}
	var issued *IssuedCertificate // the inventory's entry, written with rec
	if ic := tx.unrecorded; ic != nil {
		c := *ic
		issued = &c
		ic.Withheld = true
	}
	if e, written := rp.writeOutcome(ctx, tx, nil, &held); !written {
		if tx.resumed {
			return e // still PENDING, as in finishRecord: not notified
		}
		return rp.notifyOutcome(ctx, tx, e)
	}
	nctx, cancel := detached(parent, time.Time{})
	defer cancel()
	if out := rp.notify(nctx, tx, nil); out != nil {
		rp.withheld(nctx, tx.ID, tx.Certificate, string(out.Reason), nil)
		rp.markWithheld(nctx, tx) // when the inventory holds it alone
		// The record says so at once, rather than once its notification's time is
		// over (a failure to write it is only logged: the gateway that reads it then
		// ends it, and tells the MDM the failure).
		failed := held
		failed.Reason = ReasonNotifyFailed
		if err := rp.transactions().Put(nctx, &failed); err != nil {
			rp.tel().storeError(nctx, "transactions")
			rp.log().ErrorContext(nctx, "crp: recording transaction", "transactionID", tx.ID, "err", err)
		}
		return out
	}
	// With a compare-and-swap, the record says SUCCESS only while it is still held:
	// a gateway that read it once this one was too slow to record the outcome may
	// have ended the transaction (endNotifying) and told the MDM the failure, after
	// which the certificate must not be issued.
	replace, together := rp.heldReplacer(nctx, issued, rec)
	var err error
	switch {
	case replace != nil:
		err = replace(&held)
		if errors.Is(err, ErrRecordExists) {
			err = rp.replaceHeld(nctx, replace, rec, err)
		}
		if errors.Is(err, ErrRecordExists) {
			// Ended meanwhile: the inventory lists the certificate withheld, and the
			// MDM heard the failure from the gateway that ended it.
			rp.withheld(nctx, tx.ID, tx.Certificate, string(ReasonNotifyFailed), err)
			return fail(PhaseNotify, ReasonNotifyFailed, fmt.Errorf("the transaction was ended before its outcome was recorded: %w", err))
		}
		if err == nil && issued != nil && !together {
			// The record says SUCCESS: a poll may have had the certificate already.
			// The inventory lists it as issued with the record written again; should
			// that fail, the entry stays marked withheld, which is logged.
			if err := rp.issuanceRecorder().RecordIssuance(nctx, issued, rec); err != nil {
				rp.tel().storeError(nctx, "certificates")
				rp.log().ErrorContext(nctx, "crp: the inventory lists an issued certificate as withheld", "transactionID", tx.ID,
					"serial", fmt.Sprintf("%x", tx.Certificate.SerialNumber), "err", err)
			}
		}
	case issued != nil:
		err = rp.issuanceRecorder().RecordIssuance(nctx, issued, rec)
	default:
		err = rp.transactions().Put(nctx, rec)
	}
	if err == nil {
		return nil
	}
	e := rp.unrecorded(nctx, tx, nil, err)
	// The record says that failure when the store takes it now (otherwise the
	// gateway that reads it once its notification's time is over ends it, as the
	// notification's failure, and the MDM hears the failure a second time).
	failed := held
	failed.Phase, failed.Reason = e.Phase, e.Reason
	if err := rp.transactions().Put(nctx, &failed); err != nil {
		rp.log().ErrorContext(nctx, "crp: recording transaction", "transactionID", tx.ID, "err", err)
	}
	// The MDM heard of a certificate its device does not get: it is told the failure.
	rp.notify(nctx, tx, e)
	return e
}

// heldReplacer returns finishNotified's compare-and-swap of rec, a SUCCESS, for old,
// the held record, and whether it writes issued, the inventory's entry of rec's
// certificate (nil when it was not written with the held record), in the same write:
// ReplaceIssuance when the store that wrote them together is an IssuanceReplacer,
// Replace when the transaction store is a TransactionReplacer; nil otherwise.
func (rp *RegistrationPoint) heldReplacer(ctx context.Context, issued *IssuedCertificate, rec *Record) (replace func(old *Record) error, together bool) {
	if r, ok := rp.issuanceRecorder().(IssuanceReplacer); ok && issued != nil {
		return func(old *Record) error { return r.ReplaceIssuance(ctx, issued, old, rec) }, true
	}
	if r, ok := rp.transactions().(TransactionReplacer); ok {
		return func(old *Record) error { return r.Replace(ctx, old, rec) }, false
	}
	return nil, false
}

// replaceHeld is finishNotified's compare-and-swap of rec, a SUCCESS, for the held
// record (replace, from heldReplacer), once the one of the held record as written was
// refused (refused): the store may keep the record as another version than the one
// written (its Expires at a coarser precision), which is replaced as Get returns it
// while it is still held; or a compare-and-swap sent again once its answer was lost
// found rec written. Otherwise it returns refused: another gateway ended the
// transaction.
func (rp *RegistrationPoint) replaceHeld(ctx context.Context, replace func(old *Record) error, rec *Record, refused error) error {
	cur, err := rp.transactions().Get(ctx, rec.TransactionID)
	switch {
	case err != nil || !bytes.Equal(cur.Request, rec.Request):
		return refused
	case notifying(cur):
		return replace(cur)
	case cur.Status == scep.Success && cur.Certificate != nil && rec.Certificate != nil &&
		bytes.Equal(cur.Certificate.Raw, rec.Certificate.Raw):
		return nil // its own write
	}
	return refused
}

// writeRecord writes rec, tx's record: with Create when no record of tx.ID was stored
// when tx boarded and the store is a TransactionCreator, so that a record another
// gateway wrote meanwhile for another requester is not replaced (an error matching
// ErrRecordExists then, and nothing written); with Put otherwise.
func (rp *RegistrationPoint) writeRecord(ctx context.Context, tx *Transaction, rec *Record) error {
	if c, ok := rp.transactions().(TransactionCreator); ok && tx.fresh {
		if err := c.Create(ctx, rec); !errors.Is(err, ErrRecordExists) || !rp.mayReplace(ctx, tx, rec.SignerKey) {
			return err
		}
	}
	return rp.transactions().Put(ctx, rec)
}

// writeIssuance is writeRecord for a record written with its certificate ic (the
// store is an IssuanceRecorder). When another requester's record was written
// meanwhile, neither is written and ic is left in tx.unrecorded, to be listed as
// withheld.
func (rp *RegistrationPoint) writeIssuance(ctx context.Context, tx *Transaction, ic *IssuedCertificate, rec *Record) error {
	r := rp.issuanceRecorder()
	if c, ok := r.(IssuanceCreator); ok && tx.fresh {
		err := c.CreateIssuance(ctx, ic, rec)
		if !errors.Is(err, ErrRecordExists) {
			return err
		}
		if !rp.mayReplace(ctx, tx, rec.SignerKey) {
			tx.unrecorded = ic
			return err
		}
	}
	return r.RecordIssuance(ctx, ic, rec)
}

// mayReplace reports whether the record of tx.ID that another gateway wrote while tx
// ran may be replaced by tx's: it is tx's requester's (priorRecord), or tx's
// transactionID is derived from tx's own key, or it is gone again. It may not when it
// cannot be read.
func (rp *RegistrationPoint) mayReplace(ctx context.Context, tx *Transaction, signerKey []byte) bool {
	rec, err := rp.transactions().Get(ctx, tx.ID)
	switch {
	case errors.Is(err, ErrNotFound):
		return true
	case err != nil:
		return false
	}
	return bytes.Equal(rec.Request, tx.reqHash) || sameRequester(rec, signerKey, tx.CSR) ||
		ownsTransactionID(tx.ID, tx.Signer, tx.CSR)
}

// lostTransactionID ends tx, whose outcome was e, when another requester's record of
// its transactionID was written while it ran (at another gateway sharing the store):
// tx's record is not written, and tx is refused as it would have been had it begun
// after that record (ReasonTransactionConflict), or keeps its refusal e. A
// certificate the CA signed for it is withheld and listed as such in the inventory;
// the claims (its challenge, a renewal) of a request PENDING for an operator's
// approval are released, since nothing was issued against them, but not those of
// one the CA queued, which the CA may still sign.
func (rp *RegistrationPoint) lostTransactionID(ctx context.Context, tx *Transaction, e *Error) *Error {
	conflict := fail(PhaseGateway, ReasonTransactionConflict,
		errors.New("transactionID recorded by another requester key while this request ran (another gateway)"))
	rp.step(ctx, tx, PhaseGateway, "transaction-owner", rp.now(), conflict)
	if e == nil && tx.Certificate != nil {
		rp.withheld(ctx, tx.ID, tx.Certificate, string(conflict.Reason), nil)
	}
	switch ic := tx.unrecorded; {
	case ic != nil:
		tx.unrecorded = nil
		ic.Withheld = true
		if err := rp.certificates().Add(ctx, ic); err != nil {
			rp.tel().storeError(ctx, "certificates")
			rp.log().ErrorContext(ctx, "crp: listing a withheld certificate in the inventory", "transactionID", tx.ID,
				"serial", fmt.Sprintf("%x", tx.Certificate.SerialNumber), "err", err)
		}
	case tx.Certificate != nil:
		if e == nil { // a refusal's certificate was marked already
			rp.markWithheld(ctx, tx)
		}
	case e == nil && tx.Template != nil && tx.Template.RequiresApproval:
		// PENDING for an operator's approval: the CA was not asked, nothing was
		// issued against its claims.
		rp.release(ctx, tx)
	case e == nil:
		// Queued by the CA (ErrPending): the CA holds the request and may still sign
		// it, so its claims stay, as after any request the CA was asked for.
	}
	if e != nil {
		return e
	}
	return conflict
}

// markWithheld marks tx's certificate withheld in the inventory (see
// [IssuedCertificate].Withheld): in the entry still to be written with the
// transaction record, or again in the inventory when it was written there alone
// already. A failure to mark it is logged: the certificate stays listed as issued, and
// the withheld log line says to revoke it.
func (rp *RegistrationPoint) markWithheld(ctx context.Context, tx *Transaction) {
	if ic := tx.unrecorded; ic != nil {
		ic.Withheld = true
		return
	}
	if tx.added == nil {
		return
	}
	marked := *tx.added
	marked.Withheld = true
	if err := rp.certificates().Add(ctx, &marked); err != nil {
		rp.tel().storeError(ctx, "certificates")
		rp.log().ErrorContext(ctx, "crp: marking a withheld certificate in the inventory", "transactionID", tx.ID,
			"serial", fmt.Sprintf("%x", tx.Certificate.SerialNumber), "err", err)
		return
	}
	tx.added = &marked
}

// finishTimeout bounds what concludes a transaction once the caller's context no
// longer does (see finishRecord).
const finishTimeout = 30 * time.Second

// detached is ctx without its cancellation or deadline, bounded by finishTimeout, and
// by end when it is set (a decision's lease) and earlier.
func detached(ctx context.Context, end time.Time) (context.Context, context.CancelFunc) {
	d := time.Now().Add(finishTimeout)
	if !end.IsZero() && end.Before(d) {
		d = end
	}
	return context.WithDeadline(context.WithoutCancel(ctx), d)
}

// release undoes the claims a transaction made (its challenge, an external challenge,
// or its renewal of a certificate) after a transient failure, so that the device can
// retry.
func (rp *RegistrationPoint) release(ctx context.Context, tx *Transaction) {
	if tx.claimed && tx.Claims != nil {
		if err := rp.Verifier.Release(ctx, tx.Claims); err != nil {
			rp.log().ErrorContext(ctx, "crp: releasing challenge", "transactionID", tx.ID, "err", err)
		}
	}
	if tx.claimID != "" {
		if r, ok := tx.claimStore.(challenge.Releaser); ok {
			if err := r.Release(ctx, tx.claimID); err != nil {
				rp.log().ErrorContext(ctx, "crp: releasing claim", "transactionID", tx.ID, "err", err)
			}
		}
	}
}
