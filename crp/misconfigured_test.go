package crp_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/profile"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// A profile that cannot be used stops Validate, with the real cause.
func TestValidateProfiles(t *testing.T) {
	env := newEnv(t)
	macECDSA := *env.Profile
	macECDSA.Platform, macECDSA.KeyType, macECDSA.KeySize = profile.MacOS, profile.ECDSAP256, 0
	for _, tc := range []struct {
		name     string
		profiles crp.MemoryProfiles
		want     string
	}{
		{"ECDSA on macOS", crp.MemoryProfiles{crptest.ProfileID: &macECDSA}, `crp: MemoryProfiles["demo-profile"]: profile: KeyType = "ecdsa-p256": ECDSA keys are supported on Android only`},
		{"nil", crp.MemoryProfiles{"p": nil}, `crp: MemoryProfiles["p"] is nil`},
		{"under another id", crp.MemoryProfiles{"other": env.Profile}, `crp: MemoryProfiles["other"] holds profile "demo-profile"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rp := &crp.RegistrationPoint{Verifier: env.Verifier, Users: env.Users, Devices: env.Devices,
				Profiles: tc.profiles, Templates: env.RP.Templates, Issuer: env.Issuer, CACert: env.CA.Certificate}
			err := rp.Validate()
			require.ErrorContains(t, err, tc.want)
		})
	}
	rp := &crp.RegistrationPoint{Verifier: env.Verifier, Users: env.Users, Devices: env.Devices,
		Profiles: crp.MemoryProfiles{crptest.ProfileID: &macECDSA}, Templates: env.RP.Templates,
		Issuer: env.Issuer, CACert: env.CA.Certificate}
	require.ErrorIs(t, rp.Validate(), profile.ErrInvalidProfile)
	require.NoError(t, env.Profiles.Validate())
}

// An operator fault (a profile or template the gateway cannot use) is refused with
// its own reason and failInfo, issues nothing, and does not burn the challenge: once
// the configuration is fixed, the device's retry with the same challenge succeeds.
func TestMisconfiguredKeepsChallenge(t *testing.T) {
	for _, tc := range []struct {
		name    string
		phase   crp.Phase
		breakIt func(env *crptest.Env) (restore func())
	}{
		{"profile invalid (ECDSA on macOS)", crp.PhaseMapping, func(env *crptest.Env) func() {
			bad := *env.Profile
			bad.Platform, bad.KeyType, bad.KeySize = profile.MacOS, profile.ECDSAP256, 0
			env.Profiles[crptest.ProfileID] = &bad
			return func() { env.Profiles[crptest.ProfileID] = env.Profile }
		}},
		{"profile variable the directory lacks", crp.PhaseMapping, func(env *crptest.Env) func() {
			bad := *env.Profile
			bad.SubjectNameFormat = "CN={{OnPremisesSamAccountName}}"
			env.Profiles[crptest.ProfileID] = &bad
			return func() { env.Profiles[crptest.ProfileID] = env.Profile }
		}},
		{"template invalid", crp.PhaseTemplate, func(env *crptest.Env) func() {
			good := env.Templates[crptest.TemplateName]
			bad := *good
			bad.Validity = 0
			env.Templates[crptest.TemplateName] = &bad
			return func() { env.Templates[crptest.TemplateName] = good }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t)
			ts := httptest.NewServer(env.Server)
			defer ts.Close()
			ctx := context.Background()
			ch := mint(t, env, "alice@example.com", "alice-laptop")
			req := csr(t, deviceKey, "alice@example.com", ch)
			restore := tc.breakIt(env)

			_, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "embedded", CSR: req, Challenge: ch})
			var ce *crp.Error
			require.ErrorAs(t, err, &ce)
			require.Equal(t, tc.phase, ce.Phase, "%v", err)
			require.Equal(t, crp.ReasonMisconfigured, ce.Reason, "%v", err)
			require.Equal(t, scep.BadCertID, ce.FailInfo())

			// On the wire too, and still nothing issued.
			_, err = (&scep.Client{URL: ts.URL, CAFingerprint: env.CAFingerprint()}).Enroll(ctx, req.Raw, deviceKey)
			var fe *scep.FailError
			require.True(t, errors.As(err, &fe), "%v", err)
			require.Equal(t, scep.BadCertID, fe.Info)
			require.Zero(t, env.Issuer.Count(), "no certificate issued")
			last := env.Notifier.Notifications()
			require.Equal(t, crp.ReasonMisconfigured, last[len(last)-1].Reason)

			restore()
			res, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "retry", CSR: req, Challenge: ch})
			require.NoError(t, err, "the challenge was not burned")
			require.Equal(t, scep.Success, res.Status)
			require.Equal(t, 1, env.Issuer.Count())
		})
	}
}

// A refusal reads "crp: <phase>: <reason>: <cause>", its package named once.
func TestErrorText(t *testing.T) {
	for _, tc := range []struct {
		err  *crp.Error
		want string
	}{
		{&crp.Error{Phase: crp.PhaseIssue, Reason: crp.ReasonCAUnavailable, Err: fmt.Errorf("%w: dial tcp: refused", crp.ErrUnavailable)},
			"crp: issue: CA unavailable: unavailable: dial tcp: refused"},
		{&crp.Error{Phase: crp.PhaseGenuineness, Reason: crp.ReasonUserUnknown, Err: crp.ErrNotFound},
			"crp: phase2-genuineness: user unknown: not found"},
		{&crp.Error{Phase: crp.PhaseExpiry, Reason: crp.ReasonExpired}, "crp: phase1-expiry: challenge expired"},
	} {
		require.EqualError(t, tc.err, tc.want)
	}
	// Wrapped by the SCEP server's FailError, each package is named once too.
	require.EqualError(t, scep.Fail(scep.BadRequest, &crp.Error{Phase: crp.PhaseGenuineness, Reason: crp.ReasonReplayed}),
		"scep: badRequest: crp: phase2-genuineness: challenge already used")
}
