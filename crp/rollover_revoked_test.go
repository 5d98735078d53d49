package crp_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
)

// TestRolloverRenewalOfRevoked: with no Revocation set, renewal signers are checked
// against the revocations of the CA that issued them. After a CA rollover, a
// certificate of the next CA revoked there (Revoke on the next CA) is refused for
// renewal as one of the previous CA revoked there is (before: only the previous CA
// was asked, and the next CA's revoked certificate renewed itself).
func TestRolloverRenewalOfRevoked(t *testing.T) {
	start := time.Now()
	renv := newRolloverEnv(t, crptest.Options{}, start, start.Add(time.Hour))
	env, clock, nextCA, nextIssuer, at := renv.Env, renv.clock, renv.nextCA, renv.nextIssuer, renv.at
	// nextIssuer is not a RevocationChecker itself.
	env.RP.Issuer, env.RP.Revocation = crp.CAIssuer{CA: env.CA}, nil
	oldClient, newClient := renv.serve(t)
	ctx := context.Background()

	enroll := func(c *scep.Client, user, device string) (*x509.Certificate, *rsa.PrivateKey) {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		require.NoError(t, err)
		cert, err := c.Enroll(ctx, csr(t, k, user, mint(t, env, user, device)).Raw, k)
		require.NoError(t, err)
		return cert, k
	}
	prevCert, prevKey := enroll(oldClient, "alice@example.com", "alice-laptop")
	require.NoError(t, env.CA.Revoke(prevCert.SerialNumber, 1, clock.Now()))
	clock.Set(at.Add(time.Minute))
	nextCert, nextKey := enroll(newClient, "bob@example.com", "bob-phone")
	require.NoError(t, nextCert.CheckSignatureFrom(nextCA.Certificate))
	require.NoError(t, nextCA.Revoke(nextCert.SerialNumber, 1, clock.Now()))

	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		key  *rsa.PrivateKey
		user string
	}{
		{"revoked by the previous CA", prevCert, prevKey, "alice@example.com"},
		{"revoked by the next CA", nextCert, nextKey, "bob@example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := nextIssuer.Count()
			renewed, err := newClient.Renew(ctx, csr(t, tc.key, tc.user, "").Raw, tc.cert, tc.key)
			require.ErrorIs(t, err, scep.ErrRefused)
			require.Nil(t, renewed)
			require.Equal(t, before, nextIssuer.Count(), "a revoked certificate was renewed")
		})
	}
}

// TestRolloverCAValidAtSwitch: RegistrationPoint.Validate refuses a Rollover whose CA
// is not valid at its switch time (here, expired by then): from At on every request
// would fail at the template (the CA refuses to sign outside its validity).
func TestRolloverCAValidAtSwitch(t *testing.T) {
	env := newEnv(t)
	short, err := catemplate.NewCA(catemplate.CAOptions{Subject: pkix.Name{CommonName: "short next CA"}, Validity: time.Hour})
	require.NoError(t, err)
	ra, err := catemplate.NewRA(env.CA, catemplate.RAOptions{})
	require.NoError(t, err)
	env.RP.Rollover = &crp.Rollover{At: time.Now().Add(30 * time.Minute), CA: short, RA: ra}
	require.NoError(t, env.RP.Validate())
	env.RP.Rollover.At = time.Now().Add(2 * time.Hour)
	require.ErrorContains(t, env.RP.Validate(), "not valid at the rollover")
}
