package crp

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/profile"
	"github.com/scepkit/scepkit/scep"
)

// RenewalPolicy says which renewals a RegistrationPoint accepts. A renewal is a
// RenewalReq, or a PKCSReq signed by a certificate this CA issued; it needs no
// challenge, since the old certificate authenticates the device.
type RenewalPolicy struct {
	// Disabled refuses every renewal (RenewalReq, and PKCSReq signed by one of our
	// certificates without a challenge). Over SCEP, a scep.Server whose Renewal is
	// false turns renewal off too (see scep.Server.Renewal); crp.NewServer sets that
	// from Disabled.
	Disabled bool
	// Grace accepts a signer certificate expired by at most Grace. Zero means it must
	// be valid now.
	Grace time.Duration
	// InsecureSkipRevocationCheck accepts renewals with no RevocationChecker: a
	// revoked certificate (a stolen device, a left employee) then renews itself
	// again and again. Without it, a RegistrationPoint that accepts renewals needs
	// RegistrationPoint.Revocation, or an Issuer that is a RevocationChecker (such as
	// [CAIssuer]): Validate reports the configuration and renewals are refused.
	InsecureSkipRevocationCheck bool
}

// Check is a check of the user's own, run before or after the built-in steps of a
// phase (a compliance check, a rate limit, an allow-list). Its error refuses the
// request in Phase; return a *Error to choose the reason.
type Check struct {
	Name  string
	Phase Phase
	// After runs the check after the phase's built-in steps; false runs it before.
	After bool
	Func  func(ctx context.Context, tx *Transaction) error
}

// Transaction is one request on its way through the registration point. Steps read
// and fill it; user checks may read it. A field a step fills is nil (or zero) in the
// steps before it, and stays so when the request is refused before that step.
type Transaction struct {
	// ID is the request's transactionID (RFC 8894 §3.2.1.1), set when the
	// transaction begins: the SCEP message's, or EnrollRequest.TransactionID.
	ID string
	// MessageType is the SCEP message type the request came as, set when the
	// transaction begins: PKCSReq or RenewalReq; PKCSReq for Enroll, Decide,
	// Approve and Reject.
	MessageType scep.MessageType
	// CSR is the certificate request, set when the transaction begins (for Approve
	// and Reject, the one the pending request's record kept).
	CSR *x509.CertificateRequest
	// Challenge is the challenge password as sent. Never log it: use
	// Trace.ChallengeFingerprint.
	Challenge string
	// Signer is the certificate that signed the SCEP message (verified by the
	// scep.Server), or the one an EnrollRequest's Proof proved, if any.
	Signer *x509.Certificate
	// Renewal is set when the transaction begins, when Signer is a certificate we
	// issued and the request renews it rather than enrolls with a challenge (see
	// the package documentation, "# Renewal"). Renewed is that certificate's record
	// in the CertificateStore, set by the gateway step "renewal-signer" once Signer
	// is accepted; Approve and Reject set it too, with only the user, device and
	// profile ids of the pending request's record.
	Renewal bool
	Renewed *IssuedCertificate

	// Claims are the challenge's claims, set by the gateway step "challenge-verify"
	// when Verifier.Check accepts the challenge: every check but one-time use
	// passed (the claim is made at the end of phase 2, step "challenge-unused").
	// Nil when Check refused it, for renewals, and for a challenge an external
	// validator judged.
	Claims *challenge.Claims
	// User is the user the request is for, set in phase 2 (step "user-active") once
	// the UserDirectory finds the user active, or by an external validator.
	User *User
	// Device is set in phase 3 (step "device-mapping") once the DeviceRegistry finds
	// the device enrolled to User and compliant, or by an external validator.
	Device *Device
	// Profile is the SCEP profile the request is for, set in phase 3 (step
	// "profile-match") from the ProfileSource, or by an external validator.
	Profile *profile.Profile
	// Rendered is Profile rendered for User and Device, set by step "profile-match"
	// before the CSR is checked against it (a refusal with ReasonCSRMismatch leaves
	// it set), or by an external validator. Nil otherwise: template resolution then
	// goes by the CSR's key usage.
	Rendered *profile.Rendered
	// Template is the certificate template resolved in the template phase (step
	// "template").
	Template *catemplate.Template
	// CertTemplate is the certificate to sign, made in the same step from
	// Template, the CSR and Rendered (catemplate.ApplyVerified).
	CertTemplate *x509.Certificate
	// Certificate is the certificate the CA issued, set in the issue phase (step
	// "issue"; by Complete after Decide) once it matches CertTemplate. Nil while
	// the request is pending, and when it was refused before.
	Certificate *x509.Certificate
	// Trace is the transaction's trace, made when it begins; every step appends
	// to it.
	Trace *Trace
	// Validator is the external validator that judged the challenge (one of
	// RegistrationPoint.Validators), set before the gateway phase (for Approve and
	// Reject, from the pending record's Validator); nil when the built-in check
	// did, and for renewals.
	Validator ChallengeValidator

	claimID    string                // a replay-store id claimed: the renewal of Signer, or an external challenge
	claimStore challenge.ReplayStore // where claimID was claimed
	reqHash    []byte                // requestHash of the request, computed once
	unrecorded *IssuedCertificate    // Certificate, to be written with the transaction record
	added      *IssuedCertificate    // Certificate, written to the inventory alone (no IssuanceRecorder)
	recordErr  error                 // why the outcome could not be recorded, if it could not
	leaseEnd   time.Time             // when set, a decision's lease: no record is written after it
	checkErr   error                 // what Verifier.Check said, judged phase by phase
	extErr     *Error                // what Validator.Validate said, judged phase by phase
	claimed    bool
	fresh      bool // no record of ID was stored when the request boarded: its first is written with Create
	resumed    bool // a PENDING request being decided (Approve, Reject): its record says PENDING until the decision is recorded
	renewalOff bool // the SCEP server has renewal off (scep.Request.RenewalDisabled)
	// profileChecked: phase 3 checked the CSR against the rendered profile.
	profileChecked bool
	ca             issuingCA // chosen when the transaction began
	// recordedTemplate names the template of a transaction rebuilt from its record
	// (endNotifying), whose Template is nil.
	recordedTemplate string
}

// UserID returns the user the transaction is for (from the challenge, or from the
// renewed certificate's record).
func (tx *Transaction) UserID() string {
	switch {
	case tx.Claims != nil:
		return tx.Claims.UserID
	case tx.Renewed != nil:
		return tx.Renewed.UserID
	}
	return ""
}

// DeviceID returns the device the transaction is for.
func (tx *Transaction) DeviceID() string {
	switch {
	case tx.Claims != nil:
		return tx.Claims.DeviceID
	case tx.Renewed != nil:
		return tx.Renewed.DeviceID
	}
	return ""
}

// ProfileID returns the profile the transaction is for: the challenge's, the renewed
// certificate's, or (for a challenge an external validator judged) the ID of the
// Profile the validator set, if any.
func (tx *Transaction) ProfileID() string {
	switch {
	case tx.Claims != nil:
		return tx.Claims.ProfileID
	case tx.Renewed != nil:
		return tx.Renewed.ProfileID
	case tx.Profile != nil:
		return tx.Profile.ID
	}
	return ""
}

// RegistrationPoint is the Certificate Registration Point: it decides SCEP requests
// (it is a scep.Responder) and can be embedded in any CA front end
// ([RegistrationPoint.Enroll]). For each request it runs the gateway check, phase 1
// (expiry), phase 2 (genuineness), phase 3 (mapping), template resolution, issuance
// and notification, each step traced and logged with the transactionID.
//
// Set the fields, then use it; do not change them while it serves. It is safe for
// concurrent use and holds no global lock on the request path.
type RegistrationPoint struct {
	// Verifier checks challenges. Its Audience is this gateway's identity (step 0:
	// a challenge minted for another gateway is refused) and its Replay store makes
	// challenges one-time. Required unless Validators is set; without it, a
	// challenge no validator accepts is refused in phase 2.
	Verifier *challenge.Verifier
	// Validators judge challenges this registration point cannot check itself (an
	// MDM's opaque challenges, such as Intune's). They are asked in order, before
	// the Verifier; the first whose Accepts reports true judges the request in place
	// of the built-in challenge, user, device and profile steps of the gateway and
	// phases 1-3 (see [ChallengeValidator]). Optional.
	Validators []ChallengeValidator
	// Replay makes a challenge one of the Validators accepted one-time, also across
	// gateways that share it (see [ExternalClaimLifetime]); nil means Verifier.Replay.
	// Required with Validators when there is no Verifier.
	Replay challenge.ReplayStore
	// Users, Devices and Profiles are consulted in phases 2 and 3. Required unless
	// Validators is set; when one is nil, a request that needs it (a renewal, a
	// challenge of the Verifier) is refused as ReasonMisconfigured, and its challenge
	// released. So is a lookup that returns neither a value nor an error.
	Users    UserDirectory
	Devices  DeviceRegistry
	Profiles ProfileSource
	// Templates resolves the certificate template. Required.
	Templates catemplate.Resolver
	// Issuer signs. Required. A certificate it returns must be signed by the CA
	// (CACert's key): unless it is a CAIssuer, whose CA checks its own signatures,
	// the signature is checked, and a certificate that does not verify is withheld
	// (ReasonCertMismatch). An error that matches context.DeadlineExceeded or
	// context.Canceled counts as ErrUnavailable: the challenge is released.
	Issuer Issuer
	// CACert is the issuing CA's certificate: issued certificates never outlive it,
	// renewal signers must chain to it. Nil means the certificate of the CA a
	// [CAIssuer] Issuer signs with; required with any other Issuer.
	CACert *x509.Certificate
	// Rollover, when set, is the CA and RA the registration point switches to at
	// Rollover.At (see [Rollover]); NewServer passes it on to the scep.Server.
	Rollover *Rollover
	// Notifier tells the MDM; nil means nobody is told.
	Notifier Notifier
	// RequireNotification withholds an issued certificate (FAILURE to the device)
	// when Notifier fails. A certificate issued on the verdict of a
	// [NotifiedValidator] (Intune's) is withheld so whether or not it is set. Such a
	// certificate's record is written twice, as withheld before the notification and
	// as issued after it (see [Notifier]): one more write per certificate.
	RequireNotification bool
	// Transactions keeps transaction records; nil means an in-memory store.
	Transactions TransactionStore
	// Decisions makes a pending request decided once (by Approve or Reject), also
	// across gateways that share it: deciding claims "decide:" and the request's
	// hash there for a lease of DecisionTTL (see DecisionTTL), never past the
	// record's expiry. Nil means Verifier.Replay when there is a Verifier, or this
	// process only.
	Decisions challenge.ReplayStore
	// Certificates remembers issued certificates; nil means an in-memory store.
	Certificates CertificateStore
	// Revocation is asked about renewal signers; nil means the Issuer when it is a
	// RevocationChecker (a [CAIssuer] is), and after a CA [Rollover], for
	// certificates the next CA issued, the Rollover's Issuer or CA. With neither,
	// renewals are refused unless Renewal.Disabled or
	// Renewal.InsecureSkipRevocationCheck says otherwise. Set it for both CAs when it
	// is set and a Rollover has a CA.
	Revocation RevocationChecker
	// Renewal is the renewal policy; the zero value accepts renewals of unexpired,
	// unrevoked certificates we issued (and needs a RevocationChecker).
	Renewal RenewalPolicy
	// CRL returns the current CRL of the CA (CACert) for a GetCRL that names it as
	// the issuer; nil refuses GetCRL. A GetCRL naming another issuer is refused with
	// badCertId; after a CA Rollover, one naming the next CA is answered by
	// Rollover.CRL.
	CRL func(ctx context.Context) ([]byte, error)
	// Checks are the user's own checks, placed around the phases.
	Checks []Check
	// RecordTTL is how long transaction records are kept; zero means 24 hours.
	RecordTTL time.Duration
	// DecisionTTL is how long a decision of [RegistrationPoint.Decide] waits for its
	// completion, and the lease an Approve or Reject holds on a pending request in a
	// shared store (Decisions, or the Verifier's Replay): its work is bounded to end
	// within it, and a request whose decider died (a gateway killed mid-approval) can
	// be decided again once it has passed. Zero means DefaultDecisionTTL. The lease
	// ends at the claimant's Now plus DecisionTTL, as the store reads it; the
	// claimant's own work, and whether it may give the lease back, are timed on the
	// monotonic clock, so that its wall clock stepped back does not stretch them.
	// Gateways sharing the store must agree on the time within the margin the work
	// leaves before the lease ends (a quarter of DecisionTTL, 30 s at most): a gateway
	// further ahead takes a lease over while its decider still works.
	DecisionTTL time.Duration
	// MaxOpenDecisions is how many decisions of Decide may wait for their
	// completion at once (each holds its request in memory until it is completed or
	// lapses); zero means DefaultMaxOpenDecisions.
	MaxOpenDecisions int
	// Logger receives one record per step; nil means no logging.
	Logger *slog.Logger
	// MeterProvider receives the registration point's metrics (see MetricEnrollments
	// and the other Metric names); nil means none are recorded. The registration
	// point never uses the global provider.
	MeterProvider metric.MeterProvider
	// TracerProvider receives one span per request, with a child span per phase; the
	// request's span carries the transactionID and the challenge's fingerprint, never
	// the challenge. Nil means no spans (and no cost). It is never the global one.
	TracerProvider trace.TracerProvider
	// Now is the clock; nil means time.Now. Rand is the source of serials; nil means
	// crypto/rand.
	Now  func() time.Time
	Rand io.Reader

	init      sync.Once
	telOnce   sync.Once
	telemetry *telemetry
	memTx     *MemoryTransactions
	memCerts  *MemoryCertificates
	deciding  sync.Map  // pending requests being decided, without a shared replay store
	flights   sync.Map  // transaction ID -> *flight: the requests this process is running
	open      decisions // decisions of Decide waiting for Complete
}

var _ scep.Responder = (*RegistrationPoint)(nil)

// Validate reports a configuration the registration point cannot work with: a
// required field missing, a Verifier without Audience or Replay store, and the
// profiles of a ProfileSource that can validate them (a Profiles with a Validate()
// error method, as [MemoryProfiles] has).
func (rp *RegistrationPoint) Validate() error {
	var missing []string
	external := len(rp.Validators) > 0
	for name, ok := range map[string]bool{
		"Verifier": external || rp.Verifier != nil, "Users": external || rp.Users != nil,
		"Devices": external || rp.Devices != nil, "Profiles": external || rp.Profiles != nil,
		"Templates": rp.Templates != nil, "Issuer": rp.Issuer != nil, "CACert": rp.caCert() != nil,
	} {
		if !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("crp: RegistrationPoint needs %s", strings.Join(missing, ", "))
	}
	switch ci := rp.Issuer.(type) {
	case CAIssuer:
		if ci.CA == nil {
			return errors.New("crp: the Issuer is a CAIssuer without a CA")
		}
	case *CAIssuer:
		if ci == nil || ci.CA == nil {
			return errors.New("crp: the Issuer is a CAIssuer without a CA")
		}
	}
	if rp.RequireNotification && rp.Notifier == nil {
		return errors.New("crp: RequireNotification needs a Notifier: without one every certificate would go out untold")
	}
	for i, c := range rp.Checks {
		switch {
		case c.Name == "":
			return fmt.Errorf("crp: Checks[%d] has no Name (the trace and the logs name each check)", i)
		case c.Func == nil:
			return fmt.Errorf("crp: Checks[%d] (%q) has no Func", i, c.Name)
		case c.Phase < PhaseGateway || c.Phase > PhaseNotify:
			return fmt.Errorf("crp: Checks[%d] (%q) is in no phase (%d): it would never run", i, c.Name, int(c.Phase))
		case c.Phase == PhaseNotify && rp.Notifier == nil:
			return fmt.Errorf("crp: Checks[%d] (%q) is in PhaseNotify, which runs only with a Notifier: it would never run", i, c.Name)
		}
	}
	names := map[string]int{}
	for i, v := range rp.Validators {
		if v == nil {
			return fmt.Errorf("crp: Validators[%d] is nil", i)
		}
		if rp.Notifier == nil && notificationRequired(v) {
			return fmt.Errorf("crp: Validators[%d] requires its service to hear of each certificate issued on its verdict, and there is no Notifier", i)
		}
		if nv, ok := v.(NamedValidator); ok {
			if j, dup := names[nv.Name()]; dup {
				return fmt.Errorf("crp: Validators[%d] and [%d] have the same name %q: a pending request could not be resumed by the right one", j, i, nv.Name())
			}
			names[nv.Name()] = i
		}
	}
	if v, ok := rp.Profiles.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			return err
		}
	}
	if !rp.Renewal.Disabled && !rp.Renewal.InsecureSkipRevocationCheck && rp.revocation() == nil {
		return errors.New("crp: renewals need a RevocationChecker (Revocation, or an Issuer that is one), " +
			"or Renewal.Disabled, or Renewal.InsecureSkipRevocationCheck")
	}
	if external && rp.externalReplay() == nil {
		return errors.New("crp: Validators need a Replay store (or a Verifier's): a challenge they accept is one-time")
	}
	if rp.Rollover != nil {
		if err := rp.Rollover.validate(rp.now()); err != nil {
			return err
		}
	}
	if ca := issuerCA(rp.Issuer); ca != nil {
		// A CA that fails every Sign (a Signer without its certificate's key, say)
		// fails every enrollment.
		if err := ca.Validate(); err != nil {
			return fmt.Errorf("crp: the CAIssuer's CA: %w", err)
		}
		if rp.CACert != nil && !rp.CACert.Equal(ca.Certificate) {
			return errors.New("crp: CACert is not the certificate of the CAIssuer's CA: devices would be told one CA and issued by another")
		}
	}
	if c := rp.caCert(); c != nil && !rp.now().Before(c.NotAfter) {
		return fmt.Errorf("crp: the CA certificate %q expired at %v", c.Subject, c.NotAfter)
	}
	if rp.Verifier == nil {
		return nil
	}
	if rp.Verifier.Audience == "" {
		return errors.New("crp: the Verifier needs an Audience (this gateway's identity)")
	}
	if rp.Verifier.Replay == nil {
		return errors.New("crp: the Verifier needs a Replay store: challenges are one-time")
	}
	if err := rp.Verifier.Validate(); err != nil {
		return fmt.Errorf("crp: %w", err)
	}
	return nil
}

// revocation is what renewal signers are checked against: Revocation, else the
// Issuer if it is a RevocationChecker (with a CA Rollover, the one of the CA that
// issued the signer: see Rollover.revocation), else nil.
func (rp *RegistrationPoint) revocation() RevocationChecker {
	if rp.Revocation != nil {
		return rp.Revocation
	}
	rc, ok := rp.Issuer.(RevocationChecker)
	if !ok {
		return nil
	}
	if r := rp.Rollover; r != nil && r.CA != nil {
		return r.revocation(rc)
	}
	return rc
}

// externalReplay is where challenges the Validators accept are claimed.
func (rp *RegistrationPoint) externalReplay() challenge.ReplayStore {
	if rp.Replay != nil {
		return rp.Replay
	}
	if rp.Verifier != nil {
		return rp.Verifier.Replay
	}
	return nil
}

// caCert is the issuing CA's certificate at now: the Rollover's CA after its switch,
// else firstCACert.
func (rp *RegistrationPoint) caCert() *x509.Certificate {
	if rp.rolledOver(rp.now()) {
		return rp.Rollover.CA.Certificate
	}
	return rp.firstCACert()
}

// firstCACert is CACert, or the certificate of a CAIssuer's CA.
func (rp *RegistrationPoint) firstCACert() *x509.Certificate {
	if rp.CACert != nil {
		return rp.CACert
	}
	if ca := issuerCA(rp.Issuer); ca != nil {
		return ca.Certificate
	}
	return nil
}

// issuerCA is the built-in CA an Issuer signs with, if it is a CAIssuer.
func issuerCA(iss Issuer) *catemplate.CA {
	switch i := iss.(type) {
	case CAIssuer:
		return i.CA
	case *CAIssuer:
		if i != nil {
			return i.CA
		}
	}
	return nil
}

func (rp *RegistrationPoint) now() time.Time {
	if rp.Now != nil {
		return rp.Now()
	}
	return time.Now()
}

func (rp *RegistrationPoint) log() *slog.Logger {
	if rp.Logger != nil {
		return rp.Logger
	}
	return discard
}

var discard = slog.New(slog.DiscardHandler)

func (rp *RegistrationPoint) transactions() TransactionStore {
	if rp.Transactions != nil {
		return rp.Transactions
	}
	rp.init.Do(rp.initMemory)
	return rp.memTx
}

func (rp *RegistrationPoint) certificates() CertificateStore {
	if rp.Certificates != nil {
		return rp.Certificates
	}
	rp.init.Do(rp.initMemory)
	return rp.memCerts
}

// issuanceRecorder returns the store that writes an issued certificate and its
// transaction record in one commit: rp.Transactions when it is also rp.Certificates
// and implements IssuanceRecorder; nil otherwise.
func (rp *RegistrationPoint) issuanceRecorder() IssuanceRecorder {
	r, ok := rp.Transactions.(IssuanceRecorder)
	if !ok || !sameStore(rp.Certificates, rp.Transactions) {
		return nil
	}
	return r
}

func (rp *RegistrationPoint) initMemory() {
	rp.memTx = &MemoryTransactions{Now: rp.Now}
	rp.memCerts = &MemoryCertificates{}
}

func (rp *RegistrationPoint) ttl() time.Duration {
	if rp.RecordTTL > 0 {
		return rp.RecordTTL
	}
	return 24 * time.Hour
}
