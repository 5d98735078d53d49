package crp

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/scep"
)

// Approve issues a pending request (one whose template needs approval, or that the CA
// queued). Phase 3 and the template are checked again, since time has passed; the
// device's next poll gets the certificate.
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
	done, err := rp.decide(ctx, rec)
	if err != nil {
		return nil, err
	}
	defer func() { done(err != nil && errors.Is(err, ErrUnavailable)) }()
	var e *Error
	if tx.Validator == nil { // an external validator's verdict stands: it judged phases 1-3
		e = rp.runPhase(ctx, tx, PhaseGenuineness, builtin{"user-active", rp.stepUser})
		if e == nil {
			e = rp.runPhase(ctx, tx, PhaseMapping, builtin{"device-mapping", rp.stepDevice}, builtin{"profile-match", rp.stepProfile})
		}
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
	if e = rp.finishRecord(ctx, tx, e, rec.SignerKey, rec.CSR); e != nil {
		return nil, e
	}
	return tx.Certificate, nil
}

// Reject refuses a pending request; the device's next poll gets FAILURE badRequest.
func (rp *RegistrationPoint) Reject(ctx context.Context, transactionID string, why error) (err error) {
	defer func() { rp.tel().decision(ctx, "reject", err) }()
	rec, tx, err := rp.pending(ctx, transactionID)
	if err != nil {
		return err
	}
	done, err := rp.decide(ctx, rec)
	if err != nil {
		return err
	}
	defer done(false)
	rp.finishRecord(ctx, tx, fail(PhaseIssue, ReasonRejected, why), rec.SignerKey, rec.CSR)
	return nil
}

// ErrDecided is returned by Approve and Reject when the pending request is already
// being decided, or was (its record is no longer PENDING): a pending request is
// decided once.
var ErrDecided = errors.New("crp: pending request already decided")

// decide claims the right to decide a pending request, atomically (in the Decisions
// store or the Verifier's replay store, shared by gateways side by side; in this
// process otherwise). The returned func ends the claim: with true it gives the
// decision back (a transient failure), with false it keeps it.
func (rp *RegistrationPoint) decide(ctx context.Context, rec *Record) (func(release bool), error) {
	id := "decide:" + hex.EncodeToString(rec.Request)
	claims := rp.Decisions
	if claims == nil && rp.Verifier != nil {
		claims = rp.Verifier.Replay
	}
	if claims != nil {
		switch err := claims.Claim(ctx, id, rec.Expires); {
		case errors.Is(err, challenge.ErrReplayed):
			return nil, ErrDecided
		case err != nil:
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return func(release bool) {
			if r, ok := claims.(challenge.Releaser); ok && release {
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
		return nil, nil, fmt.Errorf("%w: transaction %q is not pending", ErrDecided, id)
	}
	csr, err := scep.ParseCertificateRequest(rec.CSR)
	if err != nil {
		return nil, nil, err
	}
	tx := &Transaction{ID: id, MessageType: scep.PKCSReq, CSR: csr, Trace: &Trace{TransactionID: id},
		Renewed: &IssuedCertificate{UserID: rec.UserID, DeviceID: rec.DeviceID, ProfileID: rec.ProfileID},
		reqHash: rec.Request, ca: rp.issuingByHash(rec.CAHash, rp.now())}
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
