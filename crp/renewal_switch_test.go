package crp_test

// scep.Server.Renewal = false stopped listing Renewal in the caps, yet a PKCSReq
// signed by a certificate the CA issued, with no challenge, was still renewed by the
// registration point (RFC 8894 §3.3.1.2 allows renewing with a PKCSReq). The switch
// now holds for both message types.

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

func TestServerRenewalOffRefusesPKCSReqRenewal(t *testing.T) {
	env := newEnv(t)
	require.False(t, env.RP.Renewal.Disabled, "the registration point would renew")
	env.Server.Renewal = false
	ts := httptest.NewServer(env.Server)
	defer ts.Close()
	ctx := context.Background()
	client := &scep.Client{URL: ts.URL, CAFingerprint: env.CAFingerprint()}
	caps, err := client.GetCACaps(ctx)
	require.NoError(t, err)
	require.False(t, caps.Has(scep.CapRenewal))

	ch := mint(t, env, "alice@example.com", "alice-laptop")
	cert, err := client.Enroll(ctx, csr(t, deviceKey, "alice@example.com", ch).Raw, deviceKey)
	require.NoError(t, err)
	issued := env.Issuer.Count()

	// Without Renewal in the caps, Renew sends a PKCSReq signed by cert, no challenge.
	renewed, err := client.Renew(ctx, csr(t, deviceKey, "alice@example.com", "").Raw, cert, deviceKey)
	var fe *scep.FailError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, scep.BadRequest, fe.Info)
	require.Nil(t, renewed)
	require.Equal(t, issued, env.Issuer.Count(), "renewal is off: nothing issued")

	// Signed by cert but with a fresh challenge: an enrollment like any other.
	ch = mint(t, env, "alice@example.com", "alice-laptop")
	again, err := client.Renew(ctx, csr(t, deviceKey, "alice@example.com", ch).Raw, cert, deviceKey)
	require.NoError(t, err)
	require.NotNil(t, again)
	require.Equal(t, issued+1, env.Issuer.Count())
}
