package crp_test

// A nil RevocationChecker used to mean "not checked" while the zero RenewalPolicy
// accepts renewals, and the README tour and the gateway example wired exactly that:
// a revoked certificate renewed itself (reproduced: revoked=true, renewal issued).
// Now a RegistrationPoint that renews checks revocation, through Revocation or an
// Issuer that is a RevocationChecker (the built-in CA), or refuses renewals, unless
// RenewalPolicy.InsecureSkipRevocationCheck says so by name.

import (
	"context"
	"testing"
	"time"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/stretchr/testify/require"
)

func TestRevokedCertificateDoesNotRenewByDefault(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		issuer  func(env *crptest.Env) crp.Issuer
		policy  crp.RenewalPolicy
		valid   bool // Validate passes
		renews  bool // the revoked certificate renews
		refusal crp.Reason
	}{
		// The README's wiring: the built-in CA, no Revocation. The CA answers.
		{"built-in CA", func(env *crptest.Env) crp.Issuer { return crp.CAIssuer{CA: env.CA} }, crp.RenewalPolicy{},
			true, false, crp.ReasonRenewalSigner},
		// Another Issuer, no Revocation: refused, Validate says why.
		{"other issuer, no checker", func(env *crptest.Env) crp.Issuer { return env.Issuer }, crp.RenewalPolicy{},
			false, false, crp.ReasonRenewalRefused},
		// The opt-out, by name.
		{"opt-out", func(env *crptest.Env) crp.Issuer { return env.Issuer },
			crp.RenewalPolicy{InsecureSkipRevocationCheck: true}, true, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t)
			alice := enrollAlice(t, env)
			require.NoError(t, env.CA.Revoke(alice.SerialNumber, 1, time.Now()))
			rp := &crp.RegistrationPoint{Verifier: env.Verifier, Users: env.Users, Devices: env.Devices,
				Profiles: env.Profiles, Templates: env.RP.Templates, Issuer: tc.issuer(env),
				CACert: env.CA.Certificate, Certificates: env.Certificates, Renewal: tc.policy}
			if tc.valid {
				require.NoError(t, rp.Validate())
			} else {
				require.ErrorContains(t, rp.Validate(), "RevocationChecker")
			}
			before := env.Certificates.Len() // every certificate issued is recorded there
			mine := csr(t, deviceKey, "alice@example.com", "")
			proof, err := crp.SignatureProof(alice, mine, signCSR(t, deviceKey, mine))
			require.NoError(t, err)
			res, err := rp.Enroll(ctx, &crp.EnrollRequest{TransactionID: "renew", CSR: mine, Proof: proof})
			if tc.renews {
				require.NoError(t, err)
				require.NotNil(t, res.Certificate)
				return
			}
			var e *crp.Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, tc.refusal, e.Reason)
			require.Nil(t, res.Certificate)
			require.Equal(t, before, env.Certificates.Len(), "no certificate for a revoked signer")
		})
	}
}
