package crp

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/scep"
)

// NewServer returns a scep.Server that leaves every decision to rp and signs and
// decrypts as ra: CACerts is the issuing CA's certificate (rp.CACert, or a
// [CAIssuer]'s CA certificate followed by its Chain), SignerCert and Signer are ra's
// signing pair, Recipients ra's encryption pair, and Renewal is on unless
// rp.Renewal.Disabled, Now is rp.Now, and Rollover is rp.Rollover's CA and RA (see
// [Rollover]). With another Issuer whose CA is an intermediate, append the
// certificates above rp.CACert, up to the root devices pin, to the result's CACerts
// yourself: GetCACert then serves the chain (RFC 8894 section 4.2.1.2). The other
// fields keep their zero values (no legacy
// algorithms, no logging): set them on the result before it serves. Call
// [scep.Server.Validate] before serving, as for any Server. A nil rp gives a Server
// without a Responder, which Validate refuses.
func NewServer(rp *RegistrationPoint, ra *catemplate.RA) *scep.Server {
	if rp == nil {
		return &scep.Server{} // Validate names every field missing, ra's included
	}
	srv := &scep.Server{Responder: rp, Renewal: !rp.Renewal.Disabled, Now: rp.Now}
	if ca := rp.firstCACert(); ca != nil {
		srv.CACerts = []*x509.Certificate{ca}
		if iss := issuerCA(rp.Issuer); iss != nil && iss.Certificate != nil && iss.Certificate.Equal(ca) {
			srv.CACerts = append(srv.CACerts, iss.Chain...)
		}
	}
	if ra != nil {
		srv.SignerCert, srv.Signer = ra.SigningCertificate, ra.Signer
		if ra.EncryptionCertificate != nil && ra.Decrypter != nil {
			srv.Recipients = []scep.Recipient{{Certificate: ra.EncryptionCertificate, Key: ra.Decrypter}}
		}
	}
	if rp.Rollover != nil && rp.Rollover.RA != nil {
		srv.Rollover = rp.Rollover.scep(srv.CACerts)
	}
	return srv
}

// Respond implements scep.Responder: PKCSReq and RenewalReq run the flow; CertPoll
// answers from the transaction record; GetCert from the certificate store; GetCRL from
// CRL. Refusals are *Error values wrapped in a scep.FailError with the phase's failInfo.
func (rp *RegistrationPoint) Respond(ctx context.Context, req *scep.Request) (*scep.Response, error) {
	if req == nil {
		return nil, scep.Fail(scep.BadRequest, errNilRequest())
	}
	ctx, end := rp.tel().startRequest(ctx, "crp "+req.MessageType.String(), req.MessageType, req.TransactionID)
	resp, e := rp.respond(ctx, req)
	end(statusOf(resp, e), e)
	if e != nil {
		return nil, scep.Fail(failInfoFor(e), e)
	}
	return resp, nil
}

// statusOf is the status a request's answer carries.
func statusOf(resp *scep.Response, e *Error) scep.PKIStatus {
	if e != nil || resp == nil {
		return scep.Failure
	}
	return resp.Status
}

func failInfoFor(e *Error) scep.FailInfo {
	if e.Reason == ReasonUnknownTransaction {
		return scep.BadCertID
	}
	return e.FailInfo()
}

func (rp *RegistrationPoint) respond(ctx context.Context, req *scep.Request) (*scep.Response, *Error) {
	if (req.MessageType == scep.GetCert || req.MessageType == scep.GetCRL) && req.IssuerAndSerial == nil {
		return nil, fail(PhaseIssue, ReasonUnknownTransaction, errors.New(req.MessageType.String()+" without an issuer and serial"))
	}
	switch req.MessageType {
	case scep.PKCSReq, scep.RenewalReq:
		return rp.enrollSCEP(ctx, req)
	case scep.CertPoll:
		rec, e := rp.record(ctx, req)
		if e != nil {
			return nil, e
		}
		return rp.answer(ctx, rec)
	case scep.GetCert:
		if !rp.isOurCAName(req.IssuerAndSerial.Issuer) {
			return nil, fail(PhaseIssue, ReasonUnknownTransaction, errors.New("GetCert for another issuer"))
		}
		c, err := rp.certificates().Lookup(ctx, req.IssuerAndSerial.Serial)
		if err != nil {
			return nil, fail(PhaseIssue, ReasonUnknownTransaction, err)
		}
		if c.Withheld {
			// Refused to its requester: not to be fetched by another way. The
			// answer of an unknown serial.
			return nil, fail(PhaseIssue, ReasonUnknownTransaction, errors.New("GetCert for a certificate that was withheld"))
		}
		// A serial is unique per issuer only (RFC 5280 §4.1.2.2): after a rollover
		// both CAs may have issued it, and the request names its certificate by
		// issuer and serial (RFC 8894 §3.3.4).
		if !bytes.Equal(c.Certificate.RawIssuer, req.IssuerAndSerial.Issuer) {
			return nil, fail(PhaseIssue, ReasonUnknownTransaction, errors.New("GetCert: the serial is another issuer's"))
		}
		// GetCert lets a client fetch its own certificate (RFC 8894, "Certificate
		// Access"): the request must be signed with that certificate's key. Anyone
		// else, with a serial read from the CRL say, would get the holder's name
		// and identifiers. The answer is the one an unknown serial gets, so it
		// tells nothing either.
		if !bytes.Equal(keyHash(c.Certificate), keyHash(req.Signer)) {
			return nil, fail(PhaseIssue, ReasonUnknownTransaction, errors.New("GetCert signed by another key than the certificate's"))
		}
		return &scep.Response{Certificate: c.Certificate}, nil
	case scep.GetCRL:
		// The CRL of the CA the request names, whose certificates it lists (RFC
		// 5280 §5): after a rollover, devices ask about either CA's certificates.
		crlOf, ours := rp.crlOf(ctx, req.IssuerAndSerial)
		switch {
		case !ours:
			return nil, fail(PhaseIssue, ReasonUnknownTransaction, errors.New("GetCRL for another issuer"))
		case crlOf == nil:
			return nil, fail(PhaseIssue, ReasonCARefused, errors.New("no CRL configured"))
		}
		crl, err := crlOf(ctx)
		if err != nil {
			return nil, fail(PhaseIssue, ReasonCAUnavailable, err)
		}
		return &scep.Response{CRL: crl}, nil
	}
	return nil, fail(PhaseGateway, ReasonInternal, fmt.Errorf("message type %v", req.MessageType))
}

// record finds the transaction a poll or resend names, and checks that it comes from
// the same signer key as the original request (a poll cannot fetch another device's
// certificate by guessing its transactionID).
func (rp *RegistrationPoint) record(ctx context.Context, req *scep.Request) (*Record, *Error) {
	rec, err := rp.transactions().Get(ctx, req.TransactionID)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, fail(PhaseIssue, ReasonUnknownTransaction, err)
	case err != nil:
		rp.tel().storeError(ctx, "transactions")
		return nil, unavailable(PhaseIssue, err)
	case !bytes.Equal(rec.SignerKey, keyHash(req.Signer)):
		return nil, fail(PhaseGateway, ReasonUnknownTransaction, errors.New("poll signed by another key than the request"))
	}
	return rec, nil
}

// requestedKey reports whether csr, whose signature holds, is for the key rec's
// request was for: its holder is the device rec's certificate was asked for.
func requestedKey(rec *Record, csr *x509.CertificateRequest) bool {
	var spki []byte
	switch {
	case len(rec.CSR) > 0:
		old, err := scep.ParseCertificateRequest(rec.CSR) // as the request was parsed
		if err != nil {
			return false
		}
		spki = old.RawSubjectPublicKeyInfo
	case rec.Certificate != nil:
		spki = rec.Certificate.RawSubjectPublicKeyInfo
	default:
		return false
	}
	return bytes.Equal(spki, csr.RawSubjectPublicKeyInfo) && csrVerifies(csr)
}

// csrVerifies reports whether csr's signature holds, with its key bounded first.
func csrVerifies(csr *x509.CertificateRequest) bool {
	return scep.CheckKeySize(csr.PublicKey) == nil && csr.CheckSignature() == nil
}

// priorRecord looks up the record of tx's transactionID, if any, before a new request
// runs under it. It returns the record when it is of this very request (tx.reqHash):
// a resend gets the recorded answer, never a second certificate. It refuses the
// request (ReasonTransactionConflict) when the record is another requester's.
//
// A transactionID is its requester's: another key cannot take it over and replace the
// record a device will poll or resend for. The requester is the holder of the key that
// signed (signerKey, when there is a signer), or of the key the recorded request was
// for: clients name a transaction by their CSR's key (RFC 8894 §3.2.1.1), so a device
// that rekeyed, signing with its old certificate, signs its next renewal under the same
// transactionID with the new one (certmonger does).
//
// Unless the transactionID is derived from this requester's key and not from the
// recorded one: then it is this requester's, and whoever recorded it first had chosen
// it to squat a device whose public key it knew (its next enrollment would be refused
// for as long as the record lives). The record is then replaced by this request's.
//
// A store that cannot be read fails the request at once (transient, ErrUnavailable):
// without the record, a resend cannot get its answer nor a transactionID be kept its
// requester's.
func (rp *RegistrationPoint) priorRecord(ctx context.Context, tx *Transaction, signerKey []byte) (*Record, *Error) {
	start := rp.now()
	rec, err := rp.transactions().Get(ctx, tx.ID)
	tx.fresh = errors.Is(err, ErrNotFound)
	switch {
	case tx.fresh:
		return nil, nil
	case err != nil:
		rp.tel().storeError(ctx, "transactions")
		e := unavailable(PhaseGateway, fmt.Errorf("reading the transaction's record: %w", err))
		rp.step(ctx, tx, PhaseGateway, "transaction-record", start, e)
		return nil, e
	}
	if bytes.Equal(rec.Request, tx.reqHash) {
		return rec, nil
	}
	if !sameRequester(rec, signerKey, tx.CSR) {
		if !ownsTransactionID(tx.ID, tx.Signer, tx.CSR) {
			e := fail(PhaseGateway, ReasonTransactionConflict, errors.New("transactionID in use by another requester key"))
			rp.step(ctx, tx, PhaseGateway, "transaction-owner", rp.now(), e)
			return nil, e
		}
		rp.log().WarnContext(ctx, "crp: transactionID recorded for another key is derived from this requester's: its record is replaced",
			"transactionID", tx.ID, "recorded_signer", hex.EncodeToString(rec.SignerKey),
			"recorded_user", rec.UserID, "recorded_device", rec.DeviceID, "recorded_status", rec.Status.String())
	}
	return nil, nil
}

// sameRequester reports whether rec was recorded for the requester of a request
// signed by the key whose hash is signerKey (nil: no signer) with csr: the same signer
// key, or the key rec's request was for (see priorRecord).
func sameRequester(rec *Record, signerKey []byte, csr *x509.CertificateRequest) bool {
	return len(signerKey) > 0 && bytes.Equal(rec.SignerKey, signerKey) || requestedKey(rec, csr)
}

// flight is a request this registration point is running: its requester's keys (the
// SHA-256 of its signer's key, its CSR's SubjectPublicKeyInfo; nil when it has none),
// and done, closed once it has ended (its record written, if it makes one).
type flight struct {
	signerKey, csrKey []byte
	done              chan struct{}
}

// sameRequester reports whether a request with signer key hash signerKey and CSR key
// csrKey comes from the requester of f: the same signer key, or the same CSR key.
func (f *flight) sameRequester(signerKey, csrKey []byte) bool {
	return len(signerKey) > 0 && bytes.Equal(f.signerKey, signerKey) || len(csrKey) > 0 && bytes.Equal(f.csrKey, csrKey)
}

// board looks for the record of tx's transactionID (priorRecord) and, when there is
// none to answer from, registers tx as running in this process and returns land, to
// be called when tx has ended. When a request under the same transactionID is running
// already:
//   - from the same requester (a device that resent while its first copy was being
//     signed by a slow HSM or CA), tx waits for it to end and looks again: it is
//     answered from that request's record, or, when it left none (a transient
//     failure), boards in its turn, so that of several waiting copies one runs and
//     the others wait for it;
//   - from another requester, tx is refused at once (ReasonTransactionConflict), as it
//     would be once that request's record is written, unless the transactionID is
//     derived from tx's own key: the owner then runs beside it, as it would replace its
//     record. Running beside it, the other requester's request would replace the
//     record of the first; waiting, it could hold the first's resends up in turn.
//
// Several gateways share no flights: there the first record written decides, when the
// store is a TransactionCreator (see finishRecord).
func (rp *RegistrationPoint) board(ctx context.Context, tx *Transaction, signerKey []byte) (land func(), rec *Record, e *Error) {
	var csrKey []byte
	if tx.CSR != nil {
		csrKey = tx.CSR.RawSubjectPublicKeyInfo
	}
	for {
		if rec, e := rp.priorRecord(ctx, tx, signerKey); e != nil || rec != nil {
			return nil, rec, e
		}
		f := &flight{signerKey: signerKey, csrKey: csrKey, done: make(chan struct{})}
		prev, loaded := rp.flights.LoadOrStore(tx.ID, f)
		if !loaded {
			return func() { rp.flights.Delete(tx.ID); close(f.done) }, nil, nil
		}
		other := prev.(*flight)
		if !other.sameRequester(signerKey, csrKey) {
			if ownsTransactionID(tx.ID, tx.Signer, tx.CSR) {
				return func() {}, nil, nil
			}
			e := fail(PhaseGateway, ReasonTransactionConflict, errors.New("transactionID in use by another requester key (a request of its is running)"))
			rp.step(ctx, tx, PhaseGateway, "transaction-owner", rp.now(), e)
			return nil, nil, e
		}
		select {
		case <-other.done:
		case <-ctx.Done():
			e := unavailable(PhaseGateway, fmt.Errorf("waiting for the copy of this request already running: %w", ctx.Err()))
			rp.step(ctx, tx, PhaseGateway, "resend", rp.now(), e)
			return nil, nil, e
		}
	}
}

// wonElsewhere is the record of tx's very request when e refused tx for a challenge
// already used and that request won the race elsewhere (a concurrent resend, another
// gateway): tx is then answered as that transaction was. Nil otherwise.
func (rp *RegistrationPoint) wonElsewhere(ctx context.Context, tx *Transaction, e *Error) *Record {
	if e == nil || e.Reason != ReasonReplayed {
		return nil
	}
	rec, err := rp.transactions().Get(ctx, tx.ID)
	if err != nil || !bytes.Equal(rec.Request, tx.reqHash) || rec.Status == scep.Failure && !notifying(rec) {
		return nil
	}
	return rec
}

// csrKeyRefused bounds a CSR's key (scep.CheckKeySize) before anything verifies a
// signature with it: the requester chooses it, and an RSA operation's cost grows with
// the square of its modulus (seconds for a key of 256 Kbit).
func csrKeyRefused(csr *x509.CertificateRequest) *Error {
	if err := scep.CheckKeySize(csr.PublicKey); err != nil {
		return fail(PhaseGateway, ReasonCSRSignature, err)
	}
	return nil
}

// answer is the recorded answer of a transaction, for a resend or a poll: never a
// certificate revoked since, which the client would install as a dead credential
// without a word (ReasonRevoked).
func (rp *RegistrationPoint) answer(ctx context.Context, rec *Record) (*scep.Response, *Error) {
	if notifying(rec) {
		// A certificate the MDM is being told of (finishNotified): PENDING while the
		// gateway telling it may still record it as issued, so that a poll or a
		// resend read meanwhile (at another gateway, by a device polling an approved
		// request) does not end the transaction with a FAILURE; the poll after
		// gets the outcome. A gateway that stopped before recording it leaves the
		// certificate withheld, which the MDM may have been told of: this read ends
		// the transaction.
		if rp.notifyingStill(rec) {
			return &scep.Response{Status: scep.Pending}, nil
		}
		return rp.endNotifying(ctx, rec)
	}
	if rec.Status == scep.Success && rec.Certificate != nil {
		if rc := rp.revocation(); rc != nil {
			switch revoked, err := rc.IsRevoked(ctx, rec.Certificate); {
			case err != nil:
				rp.tel().storeError(ctx, "revocations")
				return nil, unavailable(PhaseIssue, err)
			case revoked:
				return nil, fail(PhaseIssue, ReasonRevoked,
					fmt.Errorf("the certificate answered before, serial %x, has been revoked since", rec.Certificate.SerialNumber))
			}
		}
	}
	return answer(rec)
}

// notifying reports whether rec is the record of a certificate whose required
// notification is being sent ([ReasonNotifying]).
func notifying(rec *Record) bool {
	return rec.Status == scep.Failure && rec.Reason == ReasonNotifying
}

// notifyingStill reports whether the gateway that wrote rec, a notifying record, may
// still record the outcome of its notification: for two finishTimeouts from when it
// wrote it (finishNotified bounds its work after the write by one). The record says
// when (Written), whatever the writer's RecordTTL; one that does not (written by an
// earlier release, or kept by a store that drops it) was written, as far as this
// gateway can tell, at its Expires less this gateway's RecordTTL, which is right
// only when the writer's is the same.
func (rp *RegistrationPoint) notifyingStill(rec *Record) bool {
	written := rec.Written
	if written.IsZero() {
		written = rec.Expires.Add(-rp.ttl())
	}
	return rp.now().Before(written.Add(2 * finishTimeout))
}

// errNotifyUnrecorded is the refusal of a transaction whose record endNotifying ends.
var errNotifyUnrecorded = errors.New("the gateway that notified the MDM of the certificate stopped before recording the outcome: the certificate is withheld")

// endNotifying ends the transaction of rec, a notifying record that the gateway that
// wrote it can no longer end (it stopped while, or after, the MDM was told of the
// certificate): the record is replaced by the final FAILURE (ReasonNotifyFailed, the
// certificate kept in it, withheld), with the store's compare-and-swap when it has
// one (TransactionReplacer), so that of several gateways reading it at once one ends
// it; the inventory lists the certificate withheld; the MDM is told the failure, with
// what the record keeps of the transaction; and the device is answered that
// FAILURE. A record replaced meanwhile (its outcome recorded late, or ended by another
// gateway) is answered as it says now. A record that cannot be replaced fails the
// request as transient: the next poll or resend ends it. A notification that fails is
// logged and not made again: the record says FAILURE already, as after any other
// notification that fails.
//
// It runs with ctx's values but not its end, bounded by finishTimeout (as
// finishRecord): a device that hangs up once the record is replaced must not leave the
// MDM untold.
func (rp *RegistrationPoint) endNotifying(parent context.Context, rec *Record) (*scep.Response, *Error) {
	ctx, cancel := detached(parent, time.Time{})
	defer cancel()
	e := fail(PhaseNotify, ReasonNotifyFailed, errNotifyUnrecorded)
	// The held record concluded: its Expires and Written stay (Written is when its
	// transaction's record was written, which Expires counts from, not when it ended).
	final := *rec
	final.Reason = ReasonNotifyFailed
	var err error
	if r, ok := rp.transactions().(TransactionReplacer); ok {
		err = r.Replace(ctx, rec, &final)
	} else {
		err = rp.transactions().Put(ctx, &final)
	}
	switch {
	case errors.Is(err, ErrRecordExists) || errors.Is(err, ErrNotFound):
		// Ended by another gateway, or its outcome recorded late: answered as the
		// record says now.
		cur, gerr := rp.transactions().Get(ctx, rec.TransactionID)
		switch {
		case gerr != nil && !errors.Is(gerr, ErrNotFound):
			rp.tel().storeError(ctx, "transactions")
			return nil, unavailable(PhaseIssue, gerr)
		case gerr != nil || !bytes.Equal(cur.Request, rec.Request):
			return nil, e // gone, or another request's now
		case notifying(cur) && rp.notifyingStill(cur):
			return &scep.Response{Status: scep.Pending}, nil
		case notifying(cur):
			return nil, e // (never ended twice in one read)
		}
		return rp.answer(ctx, cur)
	case err != nil:
		rp.tel().storeError(ctx, "transactions")
		rp.log().ErrorContext(ctx, "crp: recording transaction", "transactionID", rec.TransactionID, "err", err)
		// A write whose reply was lost may have applied: a record that says the
		// final FAILURE now is taken for this read's, and the MDM told (twice, should
		// another gateway have ended it at that moment), rather than never.
		cur, gerr := rp.transactions().Get(ctx, rec.TransactionID)
		if gerr != nil || !sameVersion(cur, &final) {
			return nil, unavailable(PhaseIssue, fmt.Errorf("recording the failure of the MDM's notification: %w", err))
		}
	}
	tx := rp.notifiedTransaction(ctx, rec)
	if rec.Certificate != nil {
		rp.withheld(ctx, rec.TransactionID, rec.Certificate, string(e.Reason), errNotifyUnrecorded)
		rp.inventoryWithheld(ctx, rec)
	}
	rp.notify(ctx, tx, e)
	return nil, e
}

// notifiedTransaction is the transaction of rec, a notifying record, as far as rec
// keeps it, for its failure's notification: its user, device, profile and template,
// its CSR and the fingerprint of the challenge the CSR carries, and the validator that
// judged it (one of rp.Validators, by name).
func (rp *RegistrationPoint) notifiedTransaction(ctx context.Context, rec *Record) *Transaction {
	tx := &Transaction{ID: rec.TransactionID, MessageType: scep.PKCSReq, Trace: &Trace{TransactionID: rec.TransactionID},
		Renewed: &IssuedCertificate{UserID: rec.UserID, DeviceID: rec.DeviceID, ProfileID: rec.ProfileID},
		reqHash: rec.Request, recordedTemplate: rec.Template}
	if csr, err := scep.ParseCertificateRequest(rec.CSR); err == nil {
		tx.CSR = csr
		if ch, err := scep.ChallengePassword(csr); err == nil && ch != "" {
			tx.Trace.ChallengeFingerprint = challenge.Fingerprint(ch)
		}
	}
	if rec.Validator != "" {
		for _, v := range rp.Validators {
			if nv, ok := v.(NamedValidator); ok && nv.Name() == rec.Validator {
				tx.Validator = v
			}
		}
		if tx.Validator == nil {
			rp.log().ErrorContext(ctx, "crp: the validator that judged the transaction is not this registration point's: its MDM is not told the failure",
				"transactionID", rec.TransactionID, "validator", rec.Validator)
		}
	}
	return tx
}

// inventoryWithheld lists rec's certificate in the inventory as withheld: the
// inventory's entry marked, or, missing, written. A failure is logged: the withheld
// log line says to revoke it.
func (rp *RegistrationPoint) inventoryWithheld(ctx context.Context, rec *Record) {
	ic, err := rp.certificates().Lookup(ctx, rec.Certificate.SerialNumber)
	switch {
	case errors.Is(err, ErrNotFound):
		ic = &IssuedCertificate{Certificate: rec.Certificate, UserID: rec.UserID, DeviceID: rec.DeviceID,
			ProfileID: rec.ProfileID, Template: rec.Template, TransactionID: rec.TransactionID}
	case err != nil:
		rp.tel().storeError(ctx, "certificates")
		rp.log().ErrorContext(ctx, "crp: marking a withheld certificate in the inventory", "transactionID", rec.TransactionID,
			"serial", fmt.Sprintf("%x", rec.Certificate.SerialNumber), "err", err)
		return
	case ic.Withheld:
		return
	}
	marked := *ic // a store may return the entry it holds (MemoryCertificates)
	marked.Withheld = true
	if err := rp.certificates().Add(ctx, &marked); err != nil {
		rp.tel().storeError(ctx, "certificates")
		rp.log().ErrorContext(ctx, "crp: marking a withheld certificate in the inventory", "transactionID", rec.TransactionID,
			"serial", fmt.Sprintf("%x", rec.Certificate.SerialNumber), "err", err)
	}
}

func answer(rec *Record) (*scep.Response, *Error) {
	switch rec.Status {
	case scep.Success:
		return &scep.Response{Certificate: rec.Certificate}, nil
	case scep.Pending:
		return &scep.Response{Status: scep.Pending}, nil
	}
	return nil, fail(rec.Phase, rec.Reason, errors.New("as answered before"))
}

func (rp *RegistrationPoint) enrollSCEP(ctx context.Context, req *scep.Request) (resp *scep.Response, e *Error) {
	renewal := req.MessageType == scep.RenewalReq
	defer func() { rp.tel().enrollment(ctx, renewal, statusOf(resp, e), e) }()
	resp, e = rp.enrollMessage(ctx, req, &renewal)
	return resp, e
}

func (rp *RegistrationPoint) enrollMessage(ctx context.Context, req *scep.Request, renewal *bool) (*scep.Response, *Error) {
	if req.CSR == nil {
		return nil, fail(PhaseGateway, ReasonCSRSignature, errors.New("no CSR"))
	}
	signerKey := keyHash(req.Signer)
	tx := &Transaction{ID: req.TransactionID, MessageType: req.MessageType, CSR: req.CSR,
		Challenge: req.ChallengePassword, Signer: req.Signer, Trace: &Trace{TransactionID: req.TransactionID},
		reqHash: requestHash(req.MessageType, req.Signer, req.CSR.Raw), renewalOff: req.RenewalDisabled,
		ca: rp.issuingFor(req.CACert, rp.now())}
	if e := csrKeyRefused(req.CSR); e != nil {
		rp.step(ctx, tx, PhaseGateway, "csr-signature", rp.now(), e)
		return nil, e
	}
	land, rec, e := rp.board(ctx, tx, signerKey)
	switch {
	case e != nil:
		return nil, e
	case rec != nil:
		return rp.answer(ctx, rec)
	}
	defer land()
	ours := rp.issuedBy(req.Signer)
	switch {
	case req.MessageType == scep.RenewalReq && !ours:
		e := fail(PhaseGateway, ReasonRenewalSigner, errors.New("RenewalReq not signed by a certificate of this CA"))
		rp.step(ctx, tx, PhaseGateway, "renewal-signer", rp.now(), e)
		return nil, e
	case ours && rp.validatorFor(req.ChallengePassword) != nil:
		// A PKCSReq or RenewalReq signed by one of our certificates but carrying a
		// challenge an external validator accepts is a new enrollment: the MDM judges
		// it (Intune renews with a fresh challenge), as Enroll does.
	case ours && (req.MessageType == scep.RenewalReq || !rp.renewalDisabled(tx) || req.ChallengePassword == ""):
		tx.Renewal = true
	}
	defer func() { *renewal = tx.Renewal }() // as decided: the challenge may decide instead (verify)
	if e := rp.run(ctx, tx, req.CSR.Raw, signerKey); e != nil {
		if rec := rp.wonElsewhere(ctx, tx, e); rec != nil {
			return rp.answer(ctx, rec)
		}
		return nil, e
	}
	if tx.Certificate == nil {
		return &scep.Response{Status: scep.Pending}, nil
	}
	return &scep.Response{Certificate: tx.Certificate}, nil
}
