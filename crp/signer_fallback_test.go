package crp_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// capsWithoutRenewal serves h but answers GetCACaps without Renewal, so that
// scep.Client.Renew sends a PKCSReq signed by the old certificate, as certmonger and
// sscep do whatever the caps say.
func capsWithoutRenewal(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("operation") == "GetCACaps" {
			io.WriteString(w, "POSTPKIOperation\nSHA-256\nAES\n")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// enrolledAlice serves env over h (env.Server when nil) and enrolls alice-laptop with
// a fresh challenge: the client, the certificate and the challenge used.
func enrolledAlice(t *testing.T, env *crptest.Env, h http.Handler) (*scep.Client, *x509.Certificate, string) {
	t.Helper()
	if h == nil {
		h = env.Server
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	client := &scep.Client{URL: ts.URL, CAFingerprint: env.CAFingerprint()}
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	cert, err := client.Enroll(context.Background(), csr(t, deviceKey, "alice@example.com", ch).Raw, deviceKey)
	require.NoError(t, err)
	return client, cert, ch
}

// TestPKCSReqChallengeDecidesForUnrenewableSigner: a PKCSReq signed by a certificate
// of this CA that can no longer renew (revoked here) but carrying a fresh challenge
// is a new enrollment the challenge authorizes (RFC 8894 §2.3, §3.3.1), as with a
// self-signed signer. It was taken for a renewal and refused "signer certificate is
// revoked", so a device whose certificate was revoked could never enroll again with
// a client that signs with the certificate it holds (certmonger, sscep). The
// challenge still decides everything: a used one is refused, and with no challenge
// the revoked certificate does not renew.
func TestPKCSReqChallengeDecidesForUnrenewableSigner(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	client, cert, used := enrolledAlice(t, env, capsWithoutRenewal(env.Server))
	require.NoError(t, env.CA.Revoke(cert.SerialNumber, 1, time.Now()))
	issued := env.Issuer.Count()

	for _, tc := range []struct {
		name      string
		challenge string
		want      crp.Reason // "" issues
	}{
		{"no challenge: a renewal, refused", "", crp.ReasonRenewalSigner},
		{"the challenge already used", used, crp.ReasonReplayed},
		{"a fresh challenge", mint(t, env, "alice@example.com", "alice-laptop"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := env.Issuer.Count()
			got, err := client.Renew(ctx, csr(t, deviceKey, "alice@example.com", tc.challenge).Raw, cert, deviceKey)
			if tc.want == "" {
				require.NoError(t, err)
				require.NotEqual(t, cert.SerialNumber, got.SerialNumber)
				require.Equal(t, before+1, env.Issuer.Count())
				return
			}
			var fe *scep.FailError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, scep.BadRequest, fe.Info)
			require.Equal(t, before, env.Issuer.Count(), "nothing issued")
			n := env.Notifier.Notifications()
			require.Equal(t, tc.want, n[len(n)-1].Reason)
		})
	}
	require.Equal(t, issued+1, env.Issuer.Count())
}

// TestRefusedRenewalRenewsLater: a renewal refused with nothing issued (here a key
// size the profile does not allow) leaves the certificate its one renewal. The claim
// was kept, and the corrected request was refused "already renewed": the device could
// neither renew nor, signing with that certificate, enroll again.
func TestRefusedRenewalRenewsLater(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	client, cert, _ := enrolledAlice(t, env, nil)
	issued := env.Issuer.Count()

	big, err := rsa.GenerateKey(rand.Reader, 3072)
	require.NoError(t, err)
	_, err = client.Renew(ctx, csr(t, big, "alice@example.com", "").Raw, cert, deviceKey)
	var fe *scep.FailError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, issued, env.Issuer.Count())

	renewed, err := client.Renew(ctx, csr(t, deviceKey, "alice@example.com", "").Raw, cert, deviceKey)
	require.NoError(t, err)
	require.Equal(t, issued+1, env.Issuer.Count())

	// The same request again is a resend: the same certificate.
	again, err := client.Renew(ctx, csr(t, deviceKey, "alice@example.com", "").Raw, cert, deviceKey)
	require.NoError(t, err)
	require.Equal(t, renewed.Raw, again.Raw)
	// Once renewed, it renews no more.
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	_, err = client.Renew(ctx, csr(t, other, "alice@example.com", "").Raw, cert, deviceKey)
	require.ErrorAs(t, err, &fe)
	require.Equal(t, issued+1, env.Issuer.Count())
	n := env.Notifier.Notifications()
	require.Equal(t, crp.ReasonRenewalSigner, n[len(n)-1].Reason)
}

// TestNilTraceFailed: Failed on a nil Trace (an embedder's zero Result) is nil, not a
// panic.
func TestNilTraceFailed(t *testing.T) {
	var tr *crp.Trace
	require.Nil(t, tr.Failed())
	require.Nil(t, (&crp.Result{}).Trace.Failed())
}

// TestRenewalAskedOfCAStaysClaimed: a renewal refused once the CA was asked keeps its
// claim, since the CA may have signed: a decision that lapsed (an external CA that
// reports late) and a certificate withheld for not matching the decision. Giving
// those back let one certificate renew again and again.
func TestRenewalAskedOfCAStaysClaimed(t *testing.T) {
	ctx := context.Background()
	t.Run("decision lapsed", func(t *testing.T) {
		env := newEnv(t)
		old := enrollAlice(t, env)
		env.RP.DecisionTTL = 50 * time.Millisecond
		decide := func(id string) error {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			require.NoError(t, err)
			req := csr(t, k, "alice@example.com", "")
			proof, err := crp.SignatureProof(old, req, signCSR(t, deviceKey, req))
			require.NoError(t, err)
			_, err = env.RP.Decide(ctx, &crp.EnrollRequest{TransactionID: id, CSR: req, Proof: proof})
			return err
		}
		require.NoError(t, decide("renew-1"))
		time.Sleep(100 * time.Millisecond)
		require.Equal(t, 1, env.RP.SweepDecisions(ctx))
		var e *crp.Error
		require.ErrorAs(t, decide("renew-2"), &e)
		require.Equal(t, crp.ReasonRenewalSigner, e.Reason, "already renewed")
	})
	t.Run("certificate withheld", func(t *testing.T) {
		env := newEnv(t)
		client, cert, _ := enrolledAlice(t, env, nil)
		var signed atomic.Int32
		env.Issuer.Next = crp.IssuerFunc(func(ctx context.Context, req *crp.IssueRequest) (*x509.Certificate, error) {
			tmpl := *req.Template
			tmpl.RawSubject, tmpl.Subject = nil, pkix.Name{CommonName: "someone-else"}
			signed.Add(1)
			return env.CA.Sign(ctx, &tmpl, req.PublicKey)
		})
		for range 3 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			require.NoError(t, err)
			_, err = client.Renew(ctx, csr(t, k, "alice@example.com", "").Raw, cert, deviceKey)
			require.Error(t, err)
		}
		require.Equal(t, int32(1), signed.Load(), "the CA was asked again for a renewal it may have signed")
	})
}

// TestPKCSReqChallengeDecidesForRenewedSigner: a certificate that already renewed
// signs a PKCSReq with a fresh challenge (a client that kept the old certificate):
// the challenge decides, one step judging the signer once. It was refused "already
// renewed" without the challenge being looked at.
//
// As a RenewalReq too: scepclient sends one whenever it holds a certificate, and was
// refused the same way.
func TestPKCSReqChallengeDecidesForRenewedSigner(t *testing.T) {
	for name, strip := range map[string]bool{"PKCSReq": true, "RenewalReq": false} {
		t.Run(name, func(t *testing.T) { challengeDecidesForRenewedSigner(t, strip) })
	}
}

func challengeDecidesForRenewedSigner(t *testing.T, stripRenewal bool) {
	env := newEnv(t)
	ctx := context.Background()
	var h http.Handler = env.Server
	if stripRenewal {
		h = capsWithoutRenewal(env.Server)
	}
	client, cert, _ := enrolledAlice(t, env, h)
	k1, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	_, err = client.Renew(ctx, csr(t, k1, "alice@example.com", "").Raw, cert, deviceKey) // its one renewal
	require.NoError(t, err)
	issued := env.Issuer.Count()

	k2, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	_, err = client.Renew(ctx, csr(t, k2, "alice@example.com", "").Raw, cert, deviceKey)
	require.Error(t, err, "no second renewal")
	k3, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	got, err := client.Renew(ctx, csr(t, k3, "alice@example.com", mint(t, env, "alice@example.com", "alice-laptop")).Raw, cert, deviceKey)
	require.NoError(t, err, "a fresh challenge decides")
	require.NotNil(t, got)
	require.Equal(t, issued+1, env.Issuer.Count())
	n := env.Notifier.Notifications()
	steps := n[len(n)-1].Trace.Steps
	require.Equal(t, "renewal-signer-or-challenge", steps[1].Step)
	require.True(t, steps[1].OK)
	require.Nil(t, n[len(n)-1].Trace.Failed())
}
