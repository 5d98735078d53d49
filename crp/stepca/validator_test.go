package stepca_test

import (
	"context"
	"net"
	"net/http"
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

// TestValidatorRefusesPlainHTTP: the webhook's answer is not signed, so over plain
// http anyone on the path could answer {"allow": true} for any challenge. A Validator
// asks only over https, or plain http on a loopback host, and follows no redirect to
// plain http. Here a service reached as http://mdm.example (dialled to a loopback
// server that allows everything, as a man in the middle would answer) is not asked:
// the request is refused in phase 2 and nothing is issued.
func TestValidatorRefusesPlainHTTP(t *testing.T) {
	asked := 0
	allowAll := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked++
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"allow": true}`))
	}))
	defer allowAll.Close()
	toLoopback := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, allowAll.Listener.Addr().String())
	}}}
	redirect := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://mdm.example/challenge", http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()
	viaRedirect := redirect.Client()
	viaRedirect.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == "mdm.example:80" {
			addr = allowAll.Listener.Addr().String()
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	for _, v := range []*stepca.Validator{
		{URL: "http://mdm.example/challenge", Client: toLoopback},
		{URL: redirect.URL + "/challenge", Client: viaRedirect},
	} {
		t.Run(v.URL, func(t *testing.T) {
			gw, err := crptest.New(crptest.Options{Gateway: "other-gateway"})
			require.NoError(t, err)
			v.Secret, v.Accept = challengeSecret, func(string) bool { return true }
			gw.RP.Validators = []crp.ChallengeValidator{v}
			_, err = gw.RP.Enroll(context.Background(), &crp.EnrollRequest{TransactionID: "plain-1",
				CSR: newCSR(t, "alice@example.com", "forged"), Challenge: "forged"})
			var e *crp.Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, crp.PhaseGenuineness, e.Phase)
			require.Zero(t, gw.Issuer.Count(), "issued on a plain-http verdict")
		})
	}
	require.Zero(t, asked, "the plain-http service was asked")
}
