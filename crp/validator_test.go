package crp_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/profile"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// opaqueValidator judges challenges starting with "opaque:" the way an MDM service
// would: the verdict is scripted by the rest of the challenge.
type opaqueValidator struct {
	calls atomic.Int64
	last  atomic.Pointer[crp.Transaction]
}

func (v *opaqueValidator) Accepts(ch string) bool { return strings.HasPrefix(ch, "opaque:") }

func (v *opaqueValidator) Validate(_ context.Context, tx *crp.Transaction) error {
	v.calls.Add(1)
	v.last.Store(tx)
	switch strings.TrimPrefix(tx.Challenge, "opaque:") {
	case "ok":
		tx.Profile = &profile.Profile{ID: "mdm-profile"}
		return nil
	case "expired":
		return &crp.Error{Phase: crp.PhaseExpiry, Reason: crp.ReasonExpired, Err: errors.New("expired at the MDM")}
	case "mismatch":
		return &crp.Error{Phase: crp.PhaseMapping, Reason: crp.ReasonCSRMismatch, Err: errors.New("subject mismatch")}
	case "gateway":
		return &crp.Error{Phase: crp.PhaseGateway, Reason: crp.ReasonWrongGateway, Err: errors.New("other gateway")}
	case "late":
		return &crp.Error{Phase: crp.PhaseIssue, Reason: crp.ReasonCARefused, Err: errors.New("phase out of range")}
	case "down":
		return fmt.Errorf("%w: MDM service unreachable", crp.ErrUnavailable)
	}
	return errors.New("refused")
}

// externalEnv is a crptest gateway whose registration point also accepts opaque
// challenges, with a template that takes subject and SANs from the (MDM-checked) CSR.
func externalEnv(t *testing.T) (*crptest.Env, *opaqueValidator) {
	t.Helper()
	env := newEnv(t)
	v := &opaqueValidator{}
	env.Templates["mdm"] = &catemplate.Template{Name: "mdm", Validity: 24 * time.Hour,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, MinKeySize: 2048,
		ExtKeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, SubjectFromRequest: true, SANsFromRequest: true,
		Published: true}
	builtin := env.RP.Templates
	env.RP.Templates = resolverFunc(func(ctx context.Context, req *catemplate.ResolveRequest) (*catemplate.Template, error) {
		if req.Rendered == nil {
			return env.Templates.Template(ctx, "mdm")
		}
		return builtin.Resolve(ctx, req)
	})
	env.RP.Validators = []crp.ChallengeValidator{v}
	require.NoError(t, env.RP.Validate())
	return env, v
}

type resolverFunc func(ctx context.Context, req *catemplate.ResolveRequest) (*catemplate.Template, error)

func (f resolverFunc) Resolve(ctx context.Context, req *catemplate.ResolveRequest) (*catemplate.Template, error) {
	return f(ctx, req)
}

func TestValidatorAccepts(t *testing.T) {
	env, v := externalEnv(t)
	ctx := context.Background()
	res, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "ext-1",
		CSR: csr(t, deviceKey, "device-42", "opaque:ok", "device-42.example.com"), Challenge: "opaque:ok"})
	require.NoError(t, err)
	require.Equal(t, scep.Success, res.Status)
	require.Equal(t, "device-42", res.Certificate.Subject.CommonName)
	require.Equal(t, []string{"device-42.example.com"}, res.Certificate.DNSNames)
	require.EqualValues(t, 1, v.calls.Load())

	var steps []string
	for _, s := range res.Trace.Steps {
		steps = append(steps, s.Step)
	}
	require.Equal(t, []string{"csr-signature", "challenge-external", "external-phase1-expiry",
		"external-phase2-genuineness", "external-phase3-mapping", "template", "issue", "notify-issued"}, steps)
	require.Equal(t, challenge.Fingerprint("opaque:ok"), res.Trace.ChallengeFingerprint)

	ns := env.Notifier.Notifications()
	require.Len(t, ns, 1)
	require.Equal(t, crp.OutcomeIssued, ns[0].Outcome)
	require.Equal(t, crp.ChallengeValidator(v), ns[0].Validator)
	require.Equal(t, "mdm-profile", ns[0].ProfileID)

	// The built-in path still serves scepkit's own challenges, with no validator.
	ch := mint(t, env, "bob@example.com", "bob-phone")
	res, err = env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "jwt-1",
		CSR: csr(t, deviceKey, "bob@example.com", ch), Challenge: ch})
	require.NoError(t, err)
	require.Equal(t, scep.Success, res.Status)
	require.EqualValues(t, 1, v.calls.Load())
	require.Nil(t, env.Notifier.Notifications()[1].Validator)
}

func TestValidatorRefusals(t *testing.T) {
	env, v := externalEnv(t)
	ctx := context.Background()
	for _, c := range []struct {
		challenge string
		phase     crp.Phase
		reason    crp.Reason
		info      scep.FailInfo
	}{
		{"opaque:expired", crp.PhaseExpiry, crp.ReasonExpired, scep.BadTime},
		{"opaque:mismatch", crp.PhaseMapping, crp.ReasonCSRMismatch, scep.BadRequest},
		{"opaque:gateway", crp.PhaseGateway, crp.ReasonWrongGateway, scep.BadRequest},
		{"opaque:late", crp.PhaseMapping, crp.ReasonCARefused, scep.BadRequest},
		{"opaque:other", crp.PhaseGenuineness, crp.ReasonCheckFailed, scep.BadRequest},
		{"opaque:down", crp.PhaseGenuineness, crp.ReasonCheckFailed, scep.BadRequest},
	} {
		t.Run(c.challenge, func(t *testing.T) {
			before := env.Issuer.Count()
			_, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "tx-" + c.challenge,
				CSR: csr(t, deviceKey, "device-42", c.challenge), Challenge: c.challenge})
			var e *crp.Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, c.phase, e.Phase)
			require.Equal(t, c.reason, e.Reason)
			require.Equal(t, c.info, e.FailInfo())
			require.Equal(t, before, env.Issuer.Count())
		})
	}
	// A transient failure is not recorded: the same transaction asks again.
	calls := v.calls.Load()
	req := &scep.Request{MessageType: scep.PKCSReq, TransactionID: "tx-down-scep",
		CSR: csr(t, deviceKey, "device-42", "opaque:down"), ChallengePassword: "opaque:down"}
	for range 2 {
		_, err := env.RP.Respond(ctx, req)
		require.Error(t, err)
	}
	require.Equal(t, calls+2, v.calls.Load())
}

// A PKCSReq signed by a certificate we issued but carrying a challenge a validator
// accepts is judged by the validator, not taken for a renewal.
func TestValidatorNotRenewal(t *testing.T) {
	env, v := externalEnv(t)
	ctx := context.Background()
	res, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "first",
		CSR: csr(t, deviceKey, "device-42", "opaque:ok"), Challenge: "opaque:ok"})
	require.NoError(t, err)
	_, err = env.RP.Respond(ctx, &scep.Request{MessageType: scep.PKCSReq, TransactionID: "second",
		CSR: csr(t, deviceKey, "device-42", "opaque:expired"), ChallengePassword: "opaque:expired",
		Signer: res.Certificate})
	var e *crp.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, crp.PhaseExpiry, e.Phase)
	require.EqualValues(t, 2, v.calls.Load())
}

// A registration point with validators only: no Verifier, directory, registry or
// profiles, but a replay store. Other challenges and renewals are refused, never issued.
func TestValidatorsOnly(t *testing.T) {
	env, _ := externalEnv(t)
	rp := &crp.RegistrationPoint{Validators: env.RP.Validators, Templates: env.RP.Templates,
		Issuer: env.Issuer, CACert: env.CA.Certificate, Revocation: env.RP.Revocation}
	require.ErrorContains(t, rp.Validate(), "Replay", "an accepted challenge must be claimed somewhere")
	rp.Replay = &challenge.MemoryReplayStore{}
	require.NoError(t, rp.Validate())
	require.ErrorContains(t, (&crp.RegistrationPoint{Templates: env.RP.Templates, Issuer: env.Issuer,
		CACert: env.CA.Certificate}).Validate(), "Devices, Profiles, Users, Verifier")
	require.Error(t, (&crp.RegistrationPoint{Validators: []crp.ChallengeValidator{nil}, Templates: env.RP.Templates,
		Issuer: env.Issuer, CACert: env.CA.Certificate}).Validate())
	ctx := context.Background()

	res, err := rp.Enroll(ctx, &crp.EnrollRequest{TransactionID: "a",
		CSR: csr(t, deviceKey, "device-42", "opaque:ok"), Challenge: "opaque:ok"})
	require.NoError(t, err)
	require.Equal(t, scep.Success, res.Status)

	ch := mint(t, env, "bob@example.com", "bob-phone")
	_, err = rp.Enroll(ctx, &crp.EnrollRequest{TransactionID: "b",
		CSR: csr(t, deviceKey, "bob@example.com", ch), Challenge: ch})
	var e *crp.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, crp.PhaseGenuineness, e.Phase)

	// A renewal needs a replay store (one renewal per certificate) and a user
	// directory: without them it is refused.
	renewal := csr(t, deviceKey, "device-42", "")
	proof, err := crp.SignatureProof(res.Certificate, renewal, signCSR(t, deviceKey, renewal))
	require.NoError(t, err)
	_, err = rp.Enroll(ctx, &crp.EnrollRequest{TransactionID: "c", CSR: renewal, Proof: proof})
	require.ErrorAs(t, err, &e)
	require.Equal(t, crp.PhaseGateway, e.Phase)
	require.Equal(t, crp.ReasonRenewalRefused, e.Reason)
}
