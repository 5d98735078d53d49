package crp

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"sync"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/profile"
	"github.com/scepkit/scepkit/scep"
)

// User is what a UserDirectory knows of a user.
type User struct {
	profile.User
	// Disabled users are refused in phase 2.
	Disabled bool
}

// UserDirectory finds users by the id a challenge names (its sub claim). LookupUser
// returns an error matching ErrNotFound for an unknown user; any other error is
// treated as the directory being unavailable. It is called concurrently.
type UserDirectory interface {
	LookupUser(ctx context.Context, id string) (*User, error)
}

// UserDirectoryFunc adapts a function to UserDirectory.
type UserDirectoryFunc func(ctx context.Context, id string) (*User, error)

// LookupUser calls f.
func (f UserDirectoryFunc) LookupUser(ctx context.Context, id string) (*User, error) {
	return f(ctx, id)
}

// Device is what a DeviceRegistry knows of a device.
type Device struct {
	profile.Device
	// UserID is the user the device is enrolled to (its primary user).
	UserID string
	// Compliant says the device is in good standing. The zero value is not
	// compliant: a registry must say so explicitly.
	Compliant bool
}

// DeviceRegistry finds devices by the id a challenge names. LookupDevice returns an
// error matching ErrNotFound for an unknown device; any other error is treated as the
// registry being unavailable (the request fails, its challenge is released for a
// retry). It is called concurrently.
type DeviceRegistry interface {
	LookupDevice(ctx context.Context, id string) (*Device, error)
}

// DeviceRegistryFunc adapts a function to DeviceRegistry.
type DeviceRegistryFunc func(ctx context.Context, id string) (*Device, error)

// LookupDevice calls f.
func (f DeviceRegistryFunc) LookupDevice(ctx context.Context, id string) (*Device, error) {
	return f(ctx, id)
}

// ProfileSource finds SCEP profiles by id (the challenge's prof claim). It returns an
// error matching ErrNotFound for an unknown profile.
type ProfileSource interface {
	LookupProfile(ctx context.Context, id string) (*profile.Profile, error)
}

// ProfileSourceFunc adapts a function to ProfileSource.
type ProfileSourceFunc func(ctx context.Context, id string) (*profile.Profile, error)

// LookupProfile calls f.
func (f ProfileSourceFunc) LookupProfile(ctx context.Context, id string) (*profile.Profile, error) {
	return f(ctx, id)
}

// IssueRequest is what an Issuer is asked to sign.
type IssueRequest struct {
	// Template is the certificate to sign, from catemplate.Apply: serial, validity,
	// subject, SANs, key usages are all decided. It is the Issuer's own copy: changing
	// it (to set the CA's serial, or add its extensions) changes nothing the returned
	// certificate is checked against.
	Template *x509.Certificate
	// PublicKey is the requester's key (the CSR's).
	PublicKey crypto.PublicKey
	// CSR is the request, for CAs that want it.
	CSR *x509.CertificateRequest
	// TemplateName names the catemplate.Template applied.
	TemplateName string
	// TransactionID is the request's transactionID, for the CA's own records.
	TransactionID string
	// UserID, DeviceID and ProfileID say whom the certificate is for, as the
	// registration point found them (empty when a request named none), for the
	// CA's own records.
	UserID, DeviceID, ProfileID string
}

// Issuer signs certificates: the built-in CA ([CAIssuer]) or a CA the user already
// runs. Issue returns an error matching ErrPending to queue the request, ErrUnavailable
// (or context.DeadlineExceeded or context.Canceled: the CA did not answer in time, the
// request went away) for a transient failure (the challenge is released so the device
// can retry), and anything else for a definitive refusal (the challenge is spent; the
// registration point's error then matches ErrRefused). Neither a certificate nor an
// error is a bug of the Issuer, refused as ReasonCARefused: the challenge stays spent,
// since the CA may have signed. The certificate it returns
// must carry what req.Template says (see [Matches]: serial and other extensions are the
// CA's); one that differs is withheld from the device and logged for revocation
// (ReasonCertMismatch). It is called concurrently.
type Issuer interface {
	Issue(ctx context.Context, req *IssueRequest) (*x509.Certificate, error)
}

// IssuerFunc adapts a function to Issuer.
type IssuerFunc func(ctx context.Context, req *IssueRequest) (*x509.Certificate, error)

// Issue calls f.
func (f IssuerFunc) Issue(ctx context.Context, req *IssueRequest) (*x509.Certificate, error) {
	return f(ctx, req)
}

// CAIssuer issues with scepkit's built-in CA. It is also a [RevocationChecker]
// answering from the CA's revocations ([catemplate.CA.Revoke]): a RegistrationPoint
// whose Issuer is a CAIssuer checks renewal signers against it unless Revocation is
// set.
type CAIssuer struct{ CA *catemplate.CA }

// IsRevoked reports whether the CA revoked cert's serial. A nil cert, or one without
// a serial, is an error, as [RevocationChecker] asks.
func (c CAIssuer) IsRevoked(_ context.Context, cert *x509.Certificate) (bool, error) {
	if c.CA == nil || cert == nil || cert.SerialNumber == nil {
		return false, errors.New("crp: CAIssuer without a CA, or no certificate or serial")
	}
	return c.CA.IsRevoked(cert.SerialNumber), nil
}

// Issue signs req.Template with the CA. A failure of the CA's key
// ([catemplate.ErrSigner]) matches [ErrUnavailable]; the CA's other refusals match
// [ErrRefused].
func (c CAIssuer) Issue(ctx context.Context, req *IssueRequest) (*x509.Certificate, error) {
	if c.CA == nil {
		// An operator's fault, not the device's: the challenge is given back.
		return nil, fmt.Errorf("%w: CAIssuer without a CA", ErrUnavailable)
	}
	cert, err := c.CA.Sign(ctx, req.Template, req.PublicKey)
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return nil, err // out of time (a remote signer): not a refusal
	case errors.Is(err, catemplate.ErrSigner):
		// The CA's key failed (a token removed, a lost session, a key that cannot
		// make this signature), not the request: no certificate was made, and the
		// challenge is given back for the device's retry once the key is back.
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return cert, nil
}

// ChallengeValidator judges challenges the registration point cannot check offline:
// an MDM's opaque challenge (Intune's, say) that only the MDM's own service can judge.
//
// Accepts reports, without any network call or side effect, whether the challenge is
// this validator's to judge (by its shape: see challenge.LooksLikeToken to leave
// scepkit's own challenges to the Verifier). It is called for every request that
// carries a challenge, and must be fast and safe for concurrent use.
//
// Validate judges the request (tx.ID, tx.CSR, tx.Challenge) in place of the built-in
// challenge, user, device and profile steps of the gateway and phases 1-3: nil passes
// them all. A refusal is a *Error whose Phase is PhaseGateway, PhaseExpiry (answered
// with badTime), PhaseGenuineness or PhaseMapping (a later phase counts as
// PhaseMapping); any other error refuses in PhaseGenuineness. Wrap ErrUnavailable when
// no verdict could be obtained (the MDM's service cannot be reached), so that the
// outcome is not recorded and the device may retry. Validate may fill tx.Profile (its
// ID then names the profile in records and template resolution), tx.User, tx.Device
// and tx.Rendered; it must not change anything else. Template resolution, user
// Checks, issuance and notification run as for any request; a resolver that sees no
// rendered profile resolves from the CSR's key usage.
type ChallengeValidator interface {
	Accepts(challenge string) bool
	Validate(ctx context.Context, tx *Transaction) error
}

// NamedValidator is a ChallengeValidator with a name, unique among the registration
// point's Validators and stable across restarts. A PENDING request a named validator
// judged is recorded with its name (Record.Validator), so that Approve and Reject
// resume it: the validator's verdict stands (it is not asked again), and the
// decision is notified as that validator's (Notification.Validator), so that the
// MDM is told. A pending request an unnamed validator judged cannot be decided.
type NamedValidator interface {
	ChallengeValidator
	Name() string
}

// NotifiedValidator is a ChallengeValidator whose service must hear of every
// certificate issued on its verdict before the device may have it: Intune's, whose
// rule is that a certificate whose successNotification failed is not issued. For a
// transaction such a validator judged, a failed notification of the issued
// certificate withholds it (FAILURE to the device) as RequireNotification does, set or
// not; RegistrationPoint.Validate refuses such a validator without a Notifier.
type NotifiedValidator interface {
	ChallengeValidator
	RequiresNotification() bool
}

// notificationRequired reports whether v is a NotifiedValidator that requires it.
func notificationRequired(v ChallengeValidator) bool {
	nv, ok := v.(NotifiedValidator)
	return ok && nv.RequiresNotification()
}

// Pinger is a store that can say whether it answers, in one cheap call. Before the CA
// signs, a registration point pings each store it will record the outcome in that is
// not the store its claim went to (a Redis for claims and records beside PostgreSQL for
// the inventory, say): an outage there refuses the request and gives its challenge
// back, instead of having the CA sign certificates that cannot be recorded and are
// withheld. pgstore.Store, redisstore.Store and boltstore.Store are Pingers.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Outcome is how a transaction ended (so far).
type Outcome string

// The outcomes a Notification reports.
const (
	OutcomeIssued  Outcome = "issued"
	OutcomePending Outcome = "pending"
	OutcomeFailed  Outcome = "failed"
)

// Notification tells the MDM how a transaction ended, as Intune's connector reports
// back to Intune.
type Notification struct {
	// TransactionID is the request's transactionID.
	TransactionID string
	// Outcome is how the transaction ended: issued, pending or failed.
	Outcome Outcome
	// UserID, DeviceID and ProfileID are what the request is for, from the
	// challenge, the renewed certificate's record or the external validator's
	// profile; "" when the request was refused before they were known.
	UserID, DeviceID, ProfileID string
	// Phase is where it failed, for OutcomeFailed. For OutcomeIssued and
	// OutcomePending it is the zero value, PhaseGateway, which means nothing then.
	Phase Phase
	// Reason is why it failed, for OutcomeFailed; "" otherwise.
	Reason Reason
	// Err is the detail of the refusal, for OutcomeFailed; never sent to the device.
	Err error
	// Transient is set for an OutcomeFailed that is no verdict on the request: a
	// transient failure (an error matching ErrUnavailable), an operator fault
	// (ReasonMisconfigured) or a panic of a check before the issue phase, before
	// anything was issued. Such an outcome is not recorded and the challenge is given
	// back (see the package documentation, "# One certificate per challenge"), so the
	// same transaction may come again and be issued: a Notifier whose MDM takes
	// "failed" as final (Intune's) tells it nothing.
	Transient bool
	// Certificate, Serial (its serial number), Thumbprint (the SHA-1 of its DER,
	// in upper-case hex) and NotAfter (its expiry) are set for OutcomeIssued only:
	// nil, "" and the zero time otherwise.
	Certificate *x509.Certificate
	Serial      *big.Int
	Thumbprint  string
	NotAfter    time.Time
	// ChallengeFingerprint identifies the challenge (challenge.Fingerprint); ""
	// without one (a renewal).
	ChallengeFingerprint string
	// Template names the certificate template resolved; "" when the request was
	// refused before one was.
	Template string
	// CSR is the request's certificate request.
	CSR *x509.CertificateRequest
	// IssuedAt is set for every outcome: the registration point's time (Now) when
	// the outcome was reached and recorded and the notification made, just after
	// issuance for OutcomeIssued. It is not the certificate's NotBefore, which the template may
	// backdate.
	IssuedAt time.Time
	// Renewal is set when the request renewed a certificate we issued.
	Renewal bool
	// Trace is the transaction's trace so far (the notify step is appended to it after
	// Notify returns).
	Trace *Trace
	// Validator is the external validator that judged the challenge, nil when the
	// built-in check did (or for renewals): a Notifier tells the MDM that minted the
	// challenge, and only that one.
	Validator ChallengeValidator
}

// Notifier tells the MDM. When RegistrationPoint.RequireNotification is set, an error
// from Notify for an issued certificate turns the answer into a FAILURE (the device
// does not get a certificate the MDM was not told about).
//
// Notify is called once the outcome is recorded (its transaction record written, or
// known not to be written), so that the MDM hears the outcome the device gets: a
// certificate withheld because its record could not be written, or because another
// requester's record took its transactionID (another gateway), is notified as that
// failure, never as OutcomeIssued. A required notification of an issued certificate is
// made while its record says FAILURE (ReasonNotifying, the certificate withheld; a poll
// or resend reading it then is answered PENDING), and the record says SUCCESS once
// Notify has returned nil, or ReasonNotifyFailed once it has failed: should the
// SUCCESS write fail, the device gets FAILURE and Notify is called again with the
// failure. Should the gateway stop before either, the poll or resend that reads the
// record once that gateway can no longer write it ends the transaction: Notify is
// called with the failure (OutcomeFailed, PhaseNotify, ReasonNotifyFailed), whether
// or not the MDM heard of the certificate, before the device gets FAILURE. The
// outcome of a pending request being decided (Approve, Reject) that could not be
// recorded is not notified, a certificate the CA signed for it withheld: the request
// stays PENDING, to be decided again.
type Notifier interface {
	Notify(ctx context.Context, n *Notification) error
}

// NotifierFunc adapts a function to Notifier.
type NotifierFunc func(ctx context.Context, n *Notification) error

// Notify calls f.
func (f NotifierFunc) Notify(ctx context.Context, n *Notification) error { return f(ctx, n) }

// Record is the state of one transaction, kept so that polls and resends get the same
// answer and never a second certificate.
type Record struct {
	TransactionID string
	// SignerKey is the SHA-256 of the requester's signer public key: polls and resends
	// must come from the same key.
	SignerKey []byte
	// Request identifies the request (SHA-256 of its message type, its signer's key
	// and issuer, and its CSR): a resend with the same transaction id and Request gets
	// the recorded answer.
	Request []byte
	// CSR is the request DER.
	CSR    []byte
	Status scep.PKIStatus
	// Certificate is set when Status is Success, and in the FAILURE record of a
	// certificate withheld while, or after, its required notification was made
	// (Reason [ReasonNotifying], then the failure that withheld it, such as
	// [ReasonNotifyFailed]): the certificate no device is given, for the gateway that
	// ends the transaction and the operator who revokes it. Only a Success answers
	// with it.
	Certificate *x509.Certificate
	// Phase and Reason are set when Status is Failure. For a certificate issued
	// (Success) or a request pending, Phase is the zero value, PhaseGateway, which
	// means nothing then, and Reason is "".
	Phase  Phase
	Reason Reason
	// UserID, DeviceID, ProfileID and Template describe the request, for a pending
	// one to be decided later.
	UserID, DeviceID, ProfileID, Template string
	// Validator is the name of the NamedValidator that judged a pending request ("":
	// the built-in check did).
	Validator string
	// CAHash is the SHA-256 of the certificate of the CA a pending request is to be
	// issued by: the one chosen when the request was received (after a rollover's
	// switch, the previous CA for a device still on the previous RA, which accepts
	// no other). Nil otherwise, and in records stored before it was kept: such a
	// request is issued by the CA in force when it is approved.
	CAHash []byte
	// Expires is when the record may be forgotten.
	Expires time.Time
	// Written is when the registration point wrote the record: the time its Expires
	// counts from (Expires is Written plus the writing gateway's RecordTTL). A record
	// that concludes another of its transaction and keeps its Expires (the outcome of
	// a certificate withheld while the MDM is told, the end of one) keeps its Written
	// too. A gateway reading a notifying record judges from it how long its writer,
	// whose RecordTTL may not be its own, may still record the outcome. Zero in
	// records written by earlier releases and by stores that do not keep it.
	Written time.Time
}

// live reports whether r has not expired at now (a zero Expires never does), as the
// memory stores judge it.
func (r *Record) live(now time.Time) bool { return r.Expires.IsZero() || !now.After(r.Expires) }

// TransactionStore keeps Records by transaction id, so that polls and resends get the
// recorded answer and pending requests can be decided later. Used by the
// RegistrationPoint (RegistrationPoint.Transactions) for every authenticated request.
//
// Get returns the record as Put stored it, every field included (Expires and
// Written to the second at least; a zero Written stays zero). It returns an error
// matching ErrNotFound when there is none, or when the record's Expires has passed
// (even if the store has not deleted it yet); any other error fails the request as
// transient (ErrUnavailable) before anything is claimed, since a resend could not
// get its answer. Put replaces any record with the same id, and returns once the
// record is durable. Every write refuses a nil record with an error, never a panic.
// A store may forget a record after its Expires.
//
// A transaction id is chosen by the client and may be long (hundreds of bytes): a
// store that keys long ids by a digest must keep every id apart, so that an id
// written to look like another's stored key never reads, replaces or lists the
// other's record. Both methods are called concurrently; with several gateways, the
// store is shared (packages pgstore, redisstore), and should also implement
// [TransactionCreator], so that two requesters cannot replace each other's record. The
// conformance suite in package crp/storetest checks these rules.
type TransactionStore interface {
	Get(ctx context.Context, id string) (*Record, error)
	Put(ctx context.Context, r *Record) error
}

// IssuedCertificate is what a CertificateStore remembers of an issued certificate: the
// certificate and what it was issued for.
type IssuedCertificate struct {
	Certificate *x509.Certificate
	// UserID, DeviceID, ProfileID and Template are what the certificate was issued
	// for: the directory's user, the device registry's device, the profile and the
	// template resolved for the request.
	UserID, DeviceID, ProfileID, Template string
	// TransactionID is the SCEP transaction that obtained it ("" if unknown).
	TransactionID string
	// IssuedAt is when the registration point received it from the CA (zero if
	// unknown: records migrated from older layouts).
	IssuedAt time.Time
	// Withheld is set on a certificate the CA issued that the device was not given
	// (it did not match the decision, or its completion came after the decision had
	// ended): it is listed for an operator, or the embedding CA, to revoke, but
	// GetCert does not serve it and no renewal is signed by it.
	Withheld bool
}

// CertificateStore is the issued-certificate inventory: it remembers every certificate
// the registration point obtained, for GetCert, for renewals (which user and device a
// certificate was issued for), for the operator (by serial: Lookup; other queries:
// [CertificateQuerier]) and for Intune's revocations (which serials are ours). Used by
// the RegistrationPoint (RegistrationPoint.Certificates), admin tools and
// intune.CARevoker.
//
// Add returns once the record is durable: the certificate is not sent before (an
// error withholds it). Adding a serial again replaces its record. Add refuses what
// cannot be filed by serial (a nil c, a c without Certificate, a certificate whose
// serial is nil, zero or negative) with an error, never a panic, and records nothing
// of it. Certificates are kept past their NotAfter: they are the inventory.
//
// Lookup returns the IssuedCertificate as Add stored it, every field included
// (IssuedAt to the second at least; Withheld too: a store that drops it would let
// GetCert serve, and a renewal use, a certificate the device was refused), and an error matching ErrNotFound for an unknown
// serial. Both methods are called concurrently. The conformance suite in package
// crp/storetest checks these rules.
type CertificateStore interface {
	Add(ctx context.Context, c *IssuedCertificate) error
	Lookup(ctx context.Context, serial *big.Int) (*IssuedCertificate, error)
}

// IssuanceRecorder is an optional interface of a store that is both a
// RegistrationPoint's Transactions and its Certificates (the same value): RecordIssuance
// writes an issued certificate to the inventory and the transaction record that
// carries it in one durable write, so that an enrollment pays one commit for both
// instead of two. It returns nil once both are durable, and an error when neither was
// written: a c that [CertificateStore.Add] would refuse (a serial of zero, say) fails
// it, and then r is not written either. boltstore and pgstore implement it; a store
// without it gets Add then Put.
type IssuanceRecorder interface {
	RecordIssuance(ctx context.Context, c *IssuedCertificate, r *Record) error
}

// TransactionCreator is an optional interface of a TransactionStore, for stores that
// several gateways share. Create writes r only when no record of r.TransactionID is
// stored (a record whose Expires has passed counts as none), as one atomic step, and
// otherwise returns an error matching [ErrRecordExists] and writes nothing: of
// several Creates of one id at once, from every gateway sharing the store, one
// writes. It returns once r is durable, as Put does.
//
// A RegistrationPoint writes the first record of a transactionID with Create when
// the store has it: two requests from different requesters (different keys), sent at
// the same moment under one transactionID to two gateways, each find no record when
// they begin; with Put the last to finish would replace the other's record, and the
// device whose record was replaced would find its resends and polls refused, or its
// pending request gone. With Create the second is refused
// ([ReasonTransactionConflict]) and a certificate the CA signed for it is withheld
// (listed, [IssuedCertificate].Withheld, for revocation), as it would have been
// refused had it begun after the first's record was written. A request from the same
// requester, or from the holder of the key the transactionID is derived from,
// replaces the record (Put) as before. Every store of this module implements it. A
// type that wraps one of them by embedding it, to change what Put does, must give
// Create the same change: the embedded Create is promoted otherwise, and the first
// record of every transaction bypasses the wrapper's Put.
type TransactionCreator interface {
	Create(ctx context.Context, r *Record) error
}

// IssuanceCreator is to [IssuanceRecorder] what [TransactionCreator] is to Put:
// CreateIssuance writes c and r in one durable write when no record of
// r.TransactionID is stored (or the one stored has expired), and otherwise returns an
// error matching [ErrRecordExists] and writes neither. boltstore and pgstore
// implement it. As for Create, a type that embeds one of them to change what
// RecordIssuance does must give CreateIssuance the same change.
type IssuanceCreator interface {
	CreateIssuance(ctx context.Context, c *IssuedCertificate, r *Record) error
}

// TransactionReplacer is an optional interface of a TransactionStore, for stores that
// several gateways share: a compare-and-swap of one record. Replace writes r in place
// of old, the record of r.TransactionID as Get returned it, only while the live record
// stored is still old (the same Request, Status, Reason and Expires), as one atomic
// step. Otherwise it writes nothing and returns an error matching [ErrRecordExists]
// when another live record of the id is stored (old was replaced meanwhile), or
// [ErrNotFound] when none is (or it has expired). Of several Replaces of one old at
// once, from every gateway sharing the store, one writes. It returns once r is
// durable, as Put does; r and old must name the same transaction id.
//
// A RegistrationPoint ends with it the record of a certificate whose required
// notification was being sent when the gateway sending it stopped ([ReasonNotifying]):
// the gateway that reads the record once that gateway can no longer end it replaces
// it with the final FAILURE and tells the MDM that failure; with Replace, of several
// gateways reading it at once one does, and the MDM hears the failure once. The
// gateway that sent the notification records its SUCCESS with Replace too (with
// [IssuanceReplacer.ReplaceIssuance] when the store has it), so that a gateway merely
// slow past its time, whose transaction another ended meanwhile, answers FAILURE
// rather than issue a certificate the MDM was told failed. A store without it has the
// record replaced with Put, and each such gateway tells the MDM.
// Every store of this module implements it. As for Create, a type that embeds one of
// them to change what Put does must give Replace the same change.
type TransactionReplacer interface {
	Replace(ctx context.Context, old, r *Record) error
}

// IssuanceReplacer is to [IssuanceRecorder] what [TransactionReplacer] is to Put: a
// compare-and-swap of a transaction record that writes an inventory entry with it.
// ReplaceIssuance writes c and r in one durable write in place of old, the record of
// r.TransactionID as Get returned it, only while the live record stored is still old
// (the same Request, Status, Reason and Expires), as one atomic step. Otherwise it
// writes neither and returns an error matching [ErrRecordExists] or [ErrNotFound],
// as Replace does; a c that [CertificateStore.Add] would refuse fails it, and then
// nothing is written either. It returns once both are durable; r and old must name
// the same transaction id.
//
// A RegistrationPoint whose Transactions and Certificates are one store that
// implements it records with it the SUCCESS of a certificate whose required
// notification was made: the record replaces the held one ([ReasonNotifying]) and the
// inventory's entry, written withheld with the held record, is unmarked
// ([IssuedCertificate].Withheld) in the same write, so that the notification costs
// one commit more than an enrollment without one, not two, and a gateway that stops
// after the record says SUCCESS cannot leave the device's certificate listed as
// withheld (GetCert refusing it, its renewals refused). A store without it has the
// record replaced (Replace) and the entry written again after. boltstore and pgstore
// implement it. As for Create, a type that embeds one of them to change what Replace
// or RecordIssuance does must give ReplaceIssuance the same change.
type IssuanceReplacer interface {
	ReplaceIssuance(ctx context.Context, c *IssuedCertificate, old, r *Record) error
}

// RevocationChecker says whether a certificate we issued was revoked, for renewals
// (RegistrationPoint.Revocation). Every backend's RevocationStore implements it.
//
// IsRevoked reports true when a revocation of cert's serial is on record for cert's
// issuer ([Revocation.For] with cert.RawIssuer: a revocation of another CA's
// certificate with the same serial does not count, one recorded without an issuer
// does), and false otherwise. A nil cert, or one without a serial, is an error (with
// false), never a panic. It is called concurrently. The conformance suite in package
// crp/storetest checks these rules.
type RevocationChecker interface {
	IsRevoked(ctx context.Context, cert *x509.Certificate) (bool, error)
}

// RevocationCheckerFunc adapts a function to RevocationChecker.
type RevocationCheckerFunc func(ctx context.Context, cert *x509.Certificate) (bool, error)

// IsRevoked calls f.
func (f RevocationCheckerFunc) IsRevoked(ctx context.Context, cert *x509.Certificate) (bool, error) {
	return f(ctx, cert)
}

// ---- in-memory implementations, for tests, examples and single-process gateways ----

// MemoryDirectory is a UserDirectory in memory. The zero value is empty and ready.
type MemoryDirectory struct {
	mu    sync.RWMutex
	users map[string]User
}

// Put adds or replaces u (keyed by u.ID).
func (d *MemoryDirectory) Put(u User) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.users == nil {
		d.users = map[string]User{}
	}
	d.users[u.ID] = u
}

// LookupUser implements UserDirectory.
func (d *MemoryDirectory) LookupUser(_ context.Context, id string) (*User, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	u, ok := d.users[id]
	if !ok {
		return nil, fmt.Errorf("%w: user %q", ErrNotFound, id)
	}
	return &u, nil
}

// MemoryRegistry is a DeviceRegistry in memory. The zero value is empty and ready.
type MemoryRegistry struct {
	mu      sync.RWMutex
	devices map[string]Device
}

// Put adds or replaces d (keyed by d.ID).
func (r *MemoryRegistry) Put(d Device) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.devices == nil {
		r.devices = map[string]Device{}
	}
	r.devices[d.ID] = d
}

// LookupDevice implements DeviceRegistry.
func (r *MemoryRegistry) LookupDevice(_ context.Context, id string) (*Device, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	d, ok := r.devices[id]
	if !ok {
		return nil, fmt.Errorf("%w: device %q", ErrNotFound, id)
	}
	return &d, nil
}

// MemoryProfiles is a ProfileSource over a map, keyed by profile id. It must not be
// modified while in use.
type MemoryProfiles map[string]*profile.Profile

// LookupProfile implements ProfileSource.
func (m MemoryProfiles) LookupProfile(_ context.Context, id string) (*profile.Profile, error) {
	p, ok := m[id]
	if !ok {
		return nil, fmt.Errorf("%w: profile %q", ErrNotFound, id)
	}
	return p, nil
}

// Validate reports every profile that cannot be used: nil, filed under another id
// than its own, or failing [profile.Profile.Validate] (an ECDSA key on a platform
// other than Android, say). [RegistrationPoint.Validate] calls it, so that a bad
// profile stops the gateway at start instead of refusing every device.
func (m MemoryProfiles) Validate() error {
	ids := slices.Sorted(maps.Keys(m))
	var errs []error
	for _, id := range ids {
		switch p := m[id]; {
		case p == nil:
			errs = append(errs, fmt.Errorf("crp: MemoryProfiles[%q] is nil", id))
		case p.ID != id:
			errs = append(errs, fmt.Errorf("crp: MemoryProfiles[%q] holds profile %q", id, p.ID))
		default:
			if err := p.Validate(); err != nil {
				errs = append(errs, fmt.Errorf("crp: MemoryProfiles[%q]: %w", id, err))
			}
		}
	}
	return errors.Join(errs...)
}

// MemoryNotifier records the latest Notifications, for tests and demos: memory stays
// bounded under sustained load. The zero value is ready.
type MemoryNotifier struct {
	// Keep is how many of the latest notifications are kept; zero means
	// DefaultNotificationsKept. (Each holds its certificate, CSR and trace: several
	// kilobytes.)
	Keep int

	mu  sync.Mutex
	all []Notification
}

// DefaultNotificationsKept is how many notifications a MemoryNotifier keeps when its
// Keep is zero.
const DefaultNotificationsKept = 1024

func (m *MemoryNotifier) keep() int {
	if m.Keep > 0 {
		return m.Keep
	}
	return DefaultNotificationsKept
}

// Notify implements Notifier.
func (m *MemoryNotifier) Notify(_ context.Context, n *Notification) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.all = append(m.all, *n)
	// Trim once twice the bound is reached: amortized O(1) per notification.
	if k := m.keep(); len(m.all) >= 2*k {
		m.all = append([]Notification(nil), m.all[len(m.all)-k:]...)
	}
	return nil
}

// Notifications returns a copy of the latest notifications (at most Keep), oldest
// first.
func (m *MemoryNotifier) Notifications() []Notification {
	m.mu.Lock()
	defer m.mu.Unlock()
	all := m.all
	if k := m.keep(); len(all) > k {
		all = all[len(all)-k:]
	}
	return append([]Notification(nil), all...)
}

// MemoryTransactions is a TransactionStore in memory, sharded so that concurrent
// transactions rarely share a lock. Expired records are never returned, and are swept
// from a shard after enough writes to it (amortized). The zero value is ready.
type MemoryTransactions struct {
	shards [32]struct {
		sync.Mutex
		m      map[string]*Record
		writes int // since the last sweep of expired records
	}
	// Now is the clock for expiry; nil means time.Now.
	Now func() time.Time
}

func shardOf(id string) int {
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h = (h ^ uint32(id[i])) * 16777619
	}
	return int(h % 32)
}

func (m *MemoryTransactions) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Get implements TransactionStore.
func (m *MemoryTransactions) Get(_ context.Context, id string) (*Record, error) {
	s := &m.shards[shardOf(id)]
	s.Lock()
	defer s.Unlock()
	r, ok := s.m[id]
	if !ok || !r.live(m.now()) {
		return nil, fmt.Errorf("%w: transaction %q", ErrNotFound, id)
	}
	c := *r
	return &c, nil
}

// Put implements TransactionStore.
func (m *MemoryTransactions) Put(_ context.Context, r *Record) error {
	if r == nil {
		return errNilRecord
	}
	m.put(r, false)
	return nil
}

// Create implements TransactionCreator.
func (m *MemoryTransactions) Create(_ context.Context, r *Record) error {
	if r == nil {
		return errNilRecord
	}
	if !m.put(r, true) {
		return fmt.Errorf("%w: transaction %q", ErrRecordExists, r.TransactionID)
	}
	return nil
}

// Replace implements TransactionReplacer.
func (m *MemoryTransactions) Replace(_ context.Context, old, r *Record) error {
	if old == nil || r == nil {
		return errNilRecord
	}
	if old.TransactionID != r.TransactionID {
		return fmt.Errorf("crp: replacing the record of transaction %q with one of %q", old.TransactionID, r.TransactionID)
	}
	return m.putIf(r, func(cur *Record) error {
		switch {
		case cur == nil || !cur.live(m.now()):
			return fmt.Errorf("%w: transaction %q", ErrNotFound, r.TransactionID)
		case !sameVersion(cur, old):
			return fmt.Errorf("%w: transaction %q was replaced meanwhile", ErrRecordExists, r.TransactionID)
		}
		return nil
	})
}

// errNilRecord refuses a nil record given to a memory store's write.
var errNilRecord = errors.New("crp: nil transaction record")

// sameVersion reports whether a and b are the same version of a transaction's record,
// as [TransactionReplacer] compares them: the same Request, Status, Reason and Expires.
func sameVersion(a, b *Record) bool {
	return bytes.Equal(a.Request, b.Request) && a.Status == b.Status && a.Reason == b.Reason && a.Expires.Equal(b.Expires)
}

// put stores a copy of r; with create, only when no live record of its id is stored,
// and it reports whether it stored it.
func (m *MemoryTransactions) put(r *Record, create bool) bool {
	var cond func(*Record) error
	if create {
		cond = func(cur *Record) error {
			if cur != nil && cur.live(m.now()) {
				return ErrRecordExists
			}
			return nil
		}
	}
	return m.putIf(r, cond) == nil
}

// putIf stores a copy of r when cond, given the record of r's id stored (nil: none),
// returns nil (a nil cond: always), and returns what cond returned.
func (m *MemoryTransactions) putIf(r *Record, cond func(cur *Record) error) error {
	s := &m.shards[shardOf(r.TransactionID)]
	s.Lock()
	defer s.Unlock()
	if cond != nil {
		if err := cond(s.m[r.TransactionID]); err != nil {
			return err
		}
	}
	if s.m == nil {
		s.m = map[string]*Record{}
	}
	// Sweep expired records once the shard has taken writes to half its size: the
	// sweep's cost is spread over those writes (amortized O(1) per Put).
	s.writes++
	if s.writes >= 64 && s.writes >= len(s.m)/2 {
		now := m.now()
		for k, v := range s.m {
			if !v.live(now) {
				delete(s.m, k)
			}
		}
		s.writes = 0
	}
	c := *r
	s.m[r.TransactionID] = &c
	return nil
}

// Len returns how many records the store holds, expired ones not yet swept included
// (for tests and memory bounds).
func (m *MemoryTransactions) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.Lock()
		n += len(s.m)
		s.Unlock()
	}
	return n
}

// checkIssued refuses what no store can record: no certificate, or one without a
// positive serial (the key every store files it under).
func checkIssued(c *IssuedCertificate) error {
	if c == nil || c.Certificate == nil || c.Certificate.SerialNumber == nil || c.Certificate.SerialNumber.Sign() <= 0 {
		return errors.New("crp: a certificate with a positive serial is needed")
	}
	return nil
}

// MemoryCertificates is a CertificateStore in memory, without a global lock (a
// sync.Map keyed by serial). The zero value is ready.
type MemoryCertificates struct {
	m sync.Map // serial (decimal string) -> *IssuedCertificate
}

// Add implements CertificateStore.
func (m *MemoryCertificates) Add(_ context.Context, c *IssuedCertificate) error {
	if err := checkIssued(c); err != nil {
		return err
	}
	m.m.Store(c.Certificate.SerialNumber.String(), c)
	return nil
}

// Lookup implements CertificateStore.
func (m *MemoryCertificates) Lookup(_ context.Context, serial *big.Int) (*IssuedCertificate, error) {
	c, ok := m.m.Load(serial.String())
	if !ok {
		return nil, fmt.Errorf("%w: certificate %x", ErrNotFound, serial)
	}
	return c.(*IssuedCertificate), nil
}

// Len returns how many certificates are stored.
func (m *MemoryCertificates) Len() int {
	n := 0
	m.m.Range(func(any, any) bool { n++; return true })
	return n
}
