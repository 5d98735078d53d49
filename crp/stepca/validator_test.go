package stepca_test

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/crp/stepca"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// TestValidator: a scepkit gateway asks a service speaking step-ca's SCEPCHALLENGE
// format (here scepkit's own Handler, over real HTTP) to judge its challenges.
func TestValidator(t *testing.T) {
	mdm := newFixture(t) // the service that judges
	gw, err := crptest.New(crptest.Options{Gateway: "other-gateway"})
	require.NoError(t, err)
	tmpl := gw.Templates[crptest.TemplateName]
	tmpl.SubjectFromRequest, tmpl.SANsFromRequest = true, true // the service checked the CSR
	v := &stepca.Validator{URL: mdm.srv.URL + "/challenge", Secret: challengeSecret, BearerToken: "step-ca-token",
		ProvisionerName: "scepkit", Accept: func(string) bool { return true }}
	gw.RP.Validators = []crp.ChallengeValidator{v}
	ctx := context.Background()

	ch, _, err := mdm.env.Challenge("alice@example.com", "alice-laptop", 0)
	require.NoError(t, err)
	csr := newCSR(t, "alice@example.com", ch)
	res, err := gw.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "v-1", CSR: csr, Challenge: ch})
	require.NoError(t, err)
	require.Equal(t, scep.Success, res.Status)
	require.Equal(t, "alice@example.com", res.Certificate.Subject.CommonName)

	// The service refuses (the challenge was used): refused in phase 2, nothing issued.
	_, err = gw.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "v-2", CSR: csr, Challenge: ch})
	var e *crp.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, crp.PhaseGenuineness, e.Phase)
	require.ErrorIs(t, err, stepca.ErrRefused)
	require.NotErrorIs(t, err, crp.ErrUnavailable)

	// A wrong secret: the service answers 401, no verdict.
	v.Secret = []byte("wrong")
	ch2, _, err := mdm.env.Challenge("alice@example.com", "alice-laptop", 0)
	require.NoError(t, err)
	_, err = gw.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "v-3", CSR: newCSR(t, "alice@example.com", ch2), Challenge: ch2})
	require.ErrorIs(t, err, crp.ErrUnavailable)

	// The service is down: no verdict, never a pass.
	v.Secret = challengeSecret
	down := httptest.NewServer(nil)
	down.Close()
	v.URL = down.URL + "/challenge"
	_, err = gw.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "v-4", CSR: newCSR(t, "alice@example.com", ch2), Challenge: ch2})
	require.ErrorIs(t, err, crp.ErrUnavailable)
	require.Equal(t, 1, gw.Issuer.Count())
}
