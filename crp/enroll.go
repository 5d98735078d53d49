package crp

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"

	"github.com/scepkit/scepkit/scep"
)

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
	// CSR is the request; its signature must verify (proof of possession); required.
	CSR *x509.CertificateRequest
	// Challenge is the challenge password (from the CSR, or sent beside it).
	Challenge string
	// Proof, when it proves a certificate this CA issued, makes the request a
	// renewal, which needs no challenge. Build it with [TLSProof] or
	// [SignatureProof]: a certificate the client merely sent proves nothing.
	Proof *Proof
}

// Enroll runs the whole flow for one request without SCEP, for a CA with its own
// front end (ACME, EST, REST). On refusal it returns a *Error and a Result that still
// carries the Trace.
//
// Its transactionID is treated as a SCEP one is: the same request sent again gets the
// recorded answer (the same certificate, PENDING, or the same refusal), never a second
// certificate; a request from another requester under a recorded transactionID is
// refused ([ReasonTransactionConflict]), unless the transactionID is derived from its
// own key (then the record is replaced: see the package documentation). The
// requester is the holder of the CSR's key, or of the certificate req.Proof proves.
func (rp *RegistrationPoint) Enroll(ctx context.Context, req *EnrollRequest) (*Result, error) {
	if req == nil {
		return &Result{Status: scep.Failure, Trace: &Trace{}}, errNilRequest()
	}
	ctx, end := rp.tel().startRequest(ctx, "crp Enroll", scep.PKCSReq, req.TransactionID)
	res, e := rp.enroll(ctx, req)
	end(res.Status, e)
	if e != nil {
		return res, e
	}
	return res, nil
}

func (rp *RegistrationPoint) enroll(ctx context.Context, req *EnrollRequest) (*Result, *Error) {
	tx, e := rp.enrollTx(req)
	if e == nil {
		signerKey := keyHash(tx.Signer)
		land, rec, be := rp.board(ctx, tx, signerKey)
		switch {
		case rec != nil:
			return rp.recordedResult(ctx, tx, rec)
		case be != nil:
			e = be
		default:
			defer land()
			e = rp.run(ctx, tx, csrRaw(req.CSR), signerKey)
			if rec := rp.wonElsewhere(ctx, tx, e); rec != nil {
				return rp.recordedResult(ctx, tx, rec)
			}
		}
	}
	if e != nil {
		rp.tel().enrollment(ctx, tx.Renewal, scep.Failure, e)
		return &Result{Status: scep.Failure, Trace: tx.Trace}, e
	}
	res := &Result{Status: scep.Pending, Trace: tx.Trace, Certificate: tx.Certificate}
	if tx.Certificate != nil {
		res.Status = scep.Success
	}
	rp.tel().enrollment(ctx, tx.Renewal, res.Status, nil)
	return res, nil
}

// recordedResult is the recorded answer of rec, for a resend of the request it
// records.
func (rp *RegistrationPoint) recordedResult(ctx context.Context, tx *Transaction, rec *Record) (*Result, *Error) {
	resp, e := rp.answer(ctx, rec)
	if e != nil {
		rp.tel().enrollment(ctx, tx.Renewal, scep.Failure, e)
		return &Result{Status: scep.Failure, Trace: tx.Trace}, e
	}
	res := &Result{Status: scep.Success, Certificate: resp.Certificate, Trace: tx.Trace}
	if resp.Status == scep.Pending {
		res = &Result{Status: scep.Pending, Trace: tx.Trace}
	}
	rp.tel().enrollment(ctx, tx.Renewal, res.Status, nil)
	return res, nil
}

// enrollTx makes the transaction of req. Its Signer is the certificate req.Proof
// proves, if any: a Proof for another CSR is refused. The CSR's key is bounded
// (scep.CheckKeySize) before anything verifies a signature with it.
func (rp *RegistrationPoint) enrollTx(req *EnrollRequest) (*Transaction, *Error) {
	tx := &Transaction{ID: req.TransactionID, MessageType: scep.PKCSReq, CSR: req.CSR, Challenge: req.Challenge,
		Trace: &Trace{TransactionID: req.TransactionID}, ca: rp.issuingAt(rp.now())}
	switch {
	case req.TransactionID == "":
		// Records, polls and resends are keyed by it: two requests without one would
		// share a record.
		return tx, fail(PhaseGateway, ReasonRejected, errors.New("no transactionID"))
	case req.CSR == nil:
		return tx, fail(PhaseGateway, ReasonCSRSignature, errors.New("no CSR"))
	}
	if e := csrKeyRefused(req.CSR); e != nil {
		return tx, e
	}
	signer, err := req.Proof.signerFor(req.CSR)
	if err != nil {
		return tx, fail(PhaseGateway, ReasonRenewalSigner, err)
	}
	tx.Signer = signer
	tx.reqHash = requestHash(tx.MessageType, signer, csrRaw(req.CSR))
	tx.Renewal = rp.issuedBy(signer) && rp.validatorFor(req.Challenge) == nil
	return tx, nil
}

// run is Decide, the Issuer, then Complete, without keeping the decision open in
// between: the same steps in the same order.
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
