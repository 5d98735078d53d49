package crp

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/scep"
)

// Approve issues a pending request (one whose template needs approval, or that the CA
// queued). Phase 3 and the template are checked again, since time has passed, and so
// is the signer: a request signed with the key of a certificate issued to its device
// and revoked since (a renewal whose signer was revoked while it waited) is refused.
// The device's next poll gets the certificate. When the CA queues the request again,
// the error wraps ErrPending and the request stays pending: approve (or reject) it
// again later. Approve issues through the Issuer: a request queued by
// [RegistrationPoint.Complete] with ErrPending has no open decision left to complete.
func (rp *RegistrationPoint) Approve(ctx context.Context, transactionID string) (cert *x509.Certificate, err error) {
	ctx, end := rp.tel().startRequest(ctx, "crp Approve", scep.PKCSReq, transactionID)
	defer func() {
		var e *Error
		errors.As(err, &e)
		status := scep.Success
		if err != nil {
			status = scep.Failure
		}
		end(status, e)
		rp.tel().decision(ctx, "approve", err)
	}()
	rec, tx, err := rp.pending(ctx, transactionID)
	if err != nil {
		return nil, err
	}
	dctx, done, err := rp.decide(ctx, rec, tx)
	if err != nil {
		return nil, err
	}
	// The decision is given back when it could not be carried out and nothing was
	// signed: a transient failure, a CA that queued the request again (it stays
	// pending, to be approved again), or an outcome the store could not record (the
	// record still says PENDING). A certificate signed but not recorded is withheld
	// (logged, to be revoked), and the request waits for the lease to pass.
	defer func() {
		// Never once the CA has signed: another Approve would sign again.
		done(err != nil && tx.Certificate == nil &&
			(errors.Is(err, ErrUnavailable) || errors.Is(err, ErrPending) || tx.recordErr != nil))
	}()
	e := rp.runPhase(dctx, tx, PhaseGateway, builtin{"signer-revoked", func(ctx context.Context, tx *Transaction) *Error {
		return rp.signerKeyRevoked(ctx, rec)
	}})
	if e == nil && tx.Validator == nil { // an external validator's verdict stands: it judged phases 1-3
		e = rp.runPhase(dctx, tx, PhaseGenuineness, builtin{"user-active", rp.stepUser})
		if e == nil {
			e = rp.runPhase(dctx, tx, PhaseMapping, builtin{"device-mapping", rp.stepDevice}, builtin{"profile-match", rp.stepProfile})
		}
	}
	if e == nil {
		e = rp.runPhase(dctx, tx, PhaseTemplate, builtin{"template", rp.stepTemplate})
	}
	if e == nil && dctx.Err() != nil {
		e = unavailable(PhaseIssue, fmt.Errorf("the decision's time ran out before the CA was asked: %w", dctx.Err()))
	}
	if e == nil {
		e = rp.issue(dctx, tx, true)
	}
	if e == nil && tx.Certificate == nil {
		return nil, fmt.Errorf("%w: the CA queued transaction %q again", ErrPending, transactionID)
	}
	if e = rp.finishRecord(dctx, tx, e, rec.SignerKey, rec.CSR); e != nil {
		return nil, e
	}
	return tx.Certificate, nil
}

// signerKeyRevoked refuses the approval of a request whose signer key is the key of
// a certificate issued here to its device (or user) and revoked since: a renewal
// whose signer was revoked while it waited (RFC 8894 §3.3.1.2 renewals rely on the
// signer being in good standing), or a request signed with a key whose certificate
// was revoked. The record keeps the signer's key, not its certificate, so the
// certificates issued to the request's device are searched for it. Without a
// RevocationChecker or a CertificateQuerier there is nothing to search.
func (rp *RegistrationPoint) signerKeyRevoked(ctx context.Context, rec *Record) *Error {
	rc := rp.revocation()
	q, ok := rp.certificates().(CertificateQuerier)
	if rc == nil || !ok || len(rec.SignerKey) == 0 {
		return nil
	}
	query := CertificateQuery{DeviceID: rec.DeviceID, Limit: MaxListLimit}
	if query.DeviceID == "" {
		query.UserID = rec.UserID
	}
	if query.DeviceID == "" && query.UserID == "" {
		return nil
	}
	for page := 0; page < 100; page++ {
		certs, err := q.Certificates(ctx, query)
		if err != nil {
			rp.tel().storeError(ctx, "certificates")
			return unavailable(PhaseGateway, err)
		}
		for _, ic := range certs {
			if !bytes.Equal(keyHash(ic.Certificate), rec.SignerKey) {
				continue
			}
			revoked, err := rc.IsRevoked(ctx, ic.Certificate)
			if err != nil {
				rp.tel().storeError(ctx, "revocations")
				return unavailable(PhaseGateway, err)
			}
			if revoked {
				return fail(PhaseGateway, ReasonRenewalSigner,
					fmt.Errorf("the request was signed with the key of certificate %x, revoked since", ic.Certificate.SerialNumber))
			}
		}
		if len(certs) < query.Limit {
			return nil
		}
		query.After = certs[len(certs)-1]
	}
	// More certificates than were searched: the signer's standing is not known, so
	// the approval waits rather than passes.
	return unavailable(PhaseGateway, fmt.Errorf("over %d certificates for this device or user: the signer's key was not found among them", 100*MaxListLimit))
}

// Reject refuses a pending request; the device's next poll gets FAILURE badRequest.
// When the store cannot record the rejection, the error wraps ErrUnavailable and the
// request stays pending, to be decided again.
func (rp *RegistrationPoint) Reject(ctx context.Context, transactionID string, why error) (err error) {
	defer func() { rp.tel().decision(ctx, "reject", err) }()
	rec, tx, err := rp.pending(ctx, transactionID)
	if err != nil {
		return err
	}
	dctx, done, err := rp.decide(ctx, rec, tx)
	if err != nil {
		return err
	}
	rp.finishRecord(dctx, tx, fail(PhaseIssue, ReasonRejected, why), rec.SignerKey, rec.CSR)
	if tx.recordErr != nil {
		// Still PENDING: the decision is given back, to be made again.
		done(true)
		return fmt.Errorf("%w: recording the rejection: %w", ErrUnavailable, tx.recordErr)
	}
	done(false)
	reason := ""
	if why != nil {
		reason = loggedError(why)
	}
	rp.log().InfoContext(ctx, "crp: pending request rejected", "transactionID", transactionID, "why", reason,
		"user", rec.UserID, "device", rec.DeviceID)
	return nil
}

// ErrDecided is returned by Approve and Reject when the pending request is already
// being decided, or was (its record is no longer PENDING): a pending request is
// decided once. A decision left unfinished by a gateway that died holds the request
// for RegistrationPoint.DecisionTTL at most.
var ErrDecided = errors.New("crp: pending request already decided")

// decide claims the right to decide a pending request, atomically (in the Decisions
// store or the Verifier's replay store, shared by gateways side by side; in this
// process otherwise). The returned func ends the claim: with true it gives the
// decision back (a transient failure), with false it keeps it. The returned context
// bounds the decision's work, so that it ends within the claim.
//
// A claim in a shared store is a lease of DecisionTTL: a gateway that dies while
// deciding (killed, or its host lost) leaves the request pending and decidable again
// once the lease has passed, not stuck until the record expires. The decision's work
// is bounded to end well within the lease, and the record is read again once the claim
// is held, so that a request another gateway decided meanwhile is not decided twice.
func (rp *RegistrationPoint) decide(ctx context.Context, rec *Record, tx *Transaction) (context.Context, func(release bool), error) {
	id := "decide:" + hex.EncodeToString(rec.Request)
	claims := rp.Decisions
	if claims == nil && rp.Verifier != nil {
		claims = rp.Verifier.Replay
	}
	if claims != nil {
		// The lease runs from here, before the claim is sent: taken on the monotonic
		// clock too, so that its end is not pushed back by the time the store takes
		// to answer, nor by a wall clock stepped back.
		taken, now := time.Now(), rp.now()
		lease := rp.decisionTTL()
		until := now.Add(lease)
		if rec.Expires.Before(until) {
			until = rec.Expires
		}
		held := until.Sub(now) // how long the claim holds, from taken
		switch err := claims.Claim(ctx, id, until); {
		case errors.Is(err, challenge.ErrReplayed):
			return nil, nil, ErrDecided
		case err != nil:
			return nil, nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		release := func() {
			if r, ok := claims.(challenge.Releaser); ok {
				r.Release(context.WithoutCancel(ctx), id)
			}
		}
		switch cur, err := rp.transactions().Get(ctx, rec.TransactionID); {
		case err != nil:
			release()
			return nil, nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		case cur.Status != scep.Pending || !bytes.Equal(cur.Request, rec.Request):
			return nil, nil, fmt.Errorf("%w: transaction %q was decided meanwhile", ErrDecided, rec.TransactionID)
		}
		// Everything ends while the lease holds, a margin before it: the work (three
		// quarters of the time), then the notification and the record, which
		// finishRecord bounds by tx.leaseEnd and skips once it has passed (a record
		// written after the lease could overwrite another gateway's decision).
		// These intervals are measured on the monotonic clock (time.Now), not on
		// rp.Now, from when the claim was sent: a wall clock stepped back must not
		// stretch them, nor a store slow to answer the claim and the read.
		total := lease - min(lease/4, finishTimeout)
		tx.leaseEnd = taken.Add(total)
		wctx, cancel := context.WithDeadline(ctx, taken.Add(total*3/4))
		return wctx, func(give bool) {
			cancel()
			// Given back only while the lease holds: past it, the claim may be
			// another gateway's. It holds by the clock the store expires it by (the
			// wall clock) and by the time that has passed since it was taken (the
			// monotonic one): a wall clock stepped back still reads before until
			// when the lease has run out.
			if give && rp.now().Before(until) && time.Since(taken) < held {
				release()
			}
		}, nil
	}
	if _, busy := rp.deciding.LoadOrStore(id, true); busy {
		return nil, nil, ErrDecided
	}
	return ctx, func(bool) { rp.deciding.Delete(id) }, nil
}

func (rp *RegistrationPoint) pending(ctx context.Context, id string) (*Record, *Transaction, error) {
	rec, err := rp.transactions().Get(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if rec.Status != scep.Pending {
		return nil, nil, fmt.Errorf("%w: transaction %q is not pending", ErrDecided, id)
	}
	csr, err := scep.ParseCertificateRequest(rec.CSR)
	if err != nil {
		return nil, nil, err
	}
	tx := &Transaction{ID: id, MessageType: scep.PKCSReq, CSR: csr, Trace: &Trace{TransactionID: id},
		Renewed: &IssuedCertificate{UserID: rec.UserID, DeviceID: rec.DeviceID, ProfileID: rec.ProfileID},
		reqHash: rec.Request, ca: rp.issuingByHash(rec.CAHash, rp.now()), resumed: true}
	if rec.Validator != "" {
		for _, v := range rp.Validators {
			if nv, ok := v.(NamedValidator); ok && nv.Name() == rec.Validator {
				tx.Validator = v
			}
		}
		if tx.Validator == nil {
			return nil, nil, fmt.Errorf("crp: transaction %q was judged by validator %q, which this registration point does not have", id, rec.Validator)
		}
	}
	return rec, tx, nil
}
