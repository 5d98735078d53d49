package crp_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
)

// TestRenewalClaimSurvivesClockStep: a certificate renews once, through a claim in
// the replay store that lasted until the certificate's NotAfter plus the grace, as
// long as a renewal signed by it is accepted. A device renews in the last minutes of
// its certificate; the gateway's clock steps forward two hours (past that end) and
// enrollments in the meantime sweep the claims that are over by it; the clock steps
// back. The same certificate then renewed a second time: two certificates for one.
// Renewal claims now carry challenge.ClaimMargin, as challenge claims do.
func TestRenewalClaimSurvivesClockStep(t *testing.T) {
	keys(t)
	clk := &testClock{now: time.Now()}
	env, err := crptest.New(crptest.Options{Now: clk.Now})
	require.NoError(t, err)
	ts := httptest.NewServer(env.Server)
	defer ts.Close()
	ctx := context.Background()
	client := &scep.Client{URL: ts.URL, CAFingerprint: env.CAFingerprint(), Now: clk.Now}
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	cert, err := client.Enroll(ctx, csr(t, deviceKey, "alice@example.com", ch).Raw, deviceKey)
	require.NoError(t, err)

	clk.Set(cert.NotAfter.Add(-10 * time.Minute))
	_, err = client.Renew(ctx, csr(t, deviceKey, "alice@example.com", "").Raw, cert, deviceKey)
	require.NoError(t, err)
	require.Equal(t, 2, env.Issuer.Count())

	// Two hours ahead: the claims that are over by this clock are swept by later ones.
	clk.Set(cert.NotAfter.Add(2 * time.Hour))
	for i := range 64 * 32 * 4 {
		require.NoError(t, env.Verifier.Replay.Claim(ctx, fmt.Sprint("other-", i), clk.Now().Add(time.Hour)))
	}

	// Back: the certificate is within its validity again, and renewed already.
	clk.Set(cert.NotAfter.Add(-5 * time.Minute))
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	_, err = client.Renew(ctx, csr(t, other, "alice@example.com", "").Raw, cert, deviceKey)
	var fe *scep.FailError
	require.ErrorAs(t, err, &fe, "a second renewal by one certificate")
	require.Equal(t, 2, env.Issuer.Count())
}
