package crp_test

import (
	"context"
	"crypto/x509"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
)

// TestPanickingStep: code of the user's that panics (a directory, a registry, a check,
// the Issuer, the notifier) fails its request as an internal error instead of ending
// the caller's goroutine: the failure is notified and recorded, and the challenge is
// given back when the panic came before the CA was asked, kept once it was (the CA may
// have signed). Before, the panic went through Enroll (over SCEP the server recovered
// it as a bare FAILURE), leaving the challenge claimed, nothing recorded, nobody told.
func TestPanickingStep(t *testing.T) {
	for _, tc := range []struct {
		name     string
		phase    crp.Phase
		released bool
		breakIt  func(env *crptest.Env) (restore func())
	}{
		{"directory", crp.PhaseGenuineness, true, func(env *crptest.Env) func() {
			users := env.RP.Users
			env.RP.Users = crp.UserDirectoryFunc(func(context.Context, string) (*crp.User, error) { panic("directory bug") })
			return func() { env.RP.Users = users }
		}},
		{"registry", crp.PhaseMapping, true, func(env *crptest.Env) func() {
			devices := env.RP.Devices
			env.RP.Devices = crp.DeviceRegistryFunc(func(context.Context, string) (*crp.Device, error) { panic("registry bug") })
			return func() { env.RP.Devices = devices }
		}},
		{"check", crp.PhaseExpiry, true, func(env *crptest.Env) func() {
			env.RP.Checks = []crp.Check{{Name: "rate-limit", Phase: crp.PhaseExpiry,
				Func: func(context.Context, *crp.Transaction) error { panic("check bug") }}}
			return func() { env.RP.Checks = nil }
		}},
		{"issuer", crp.PhaseIssue, false, func(env *crptest.Env) func() {
			ca := env.Issuer.Next
			env.Issuer.Next = crp.IssuerFunc(func(context.Context, *crp.IssueRequest) (*x509.Certificate, error) { panic("CA bug") })
			return func() { env.Issuer.Next = ca }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t)
			ctx := context.Background()
			ch := mint(t, env, "alice@example.com", "alice-laptop")
			req := csr(t, deviceKey, "alice@example.com", ch)
			restore := tc.breakIt(env)
			var res *crp.Result
			var err error
			require.NotPanics(t, func() {
				res, err = env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "panic", CSR: req, Challenge: ch})
			})
			var e *crp.Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, crp.ReasonInternal, e.Reason, "%v", err)
			require.Equal(t, tc.phase, e.Phase, "%v", err)
			require.ErrorContains(t, err, "panicked")
			require.Equal(t, scep.Failure, res.Status)
			last := env.Notifier.Notifications()
			require.NotEmpty(t, last, "the failure is notified")
			require.Equal(t, crp.ReasonInternal, last[len(last)-1].Reason)
			require.Zero(t, env.Certificates.Len(), "nothing issued")

			restore()
			_, err = env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "retry", CSR: req, Challenge: ch})
			if tc.released {
				require.NoError(t, err, "the challenge was given back")
				return
			}
			require.ErrorAs(t, err, &e)
			require.Equal(t, crp.ReasonReplayed, e.Reason, "the challenge stays spent: %v", err)
		})
	}
}

// TestPanickingNotifier: a notifier that panics told nobody. With RequireNotification
// the certificate is withheld, as when Notify fails; without it the device still gets
// its certificate. Before, the recovered panic counted as a notification sent, and a
// required notification was skipped without a word.
func TestPanickingNotifier(t *testing.T) {
	for _, required := range []bool{true, false} {
		t.Run(map[bool]string{true: "required", false: "optional"}[required], func(t *testing.T) {
			env := newEnv(t)
			env.RP.RequireNotification = required
			env.RP.Notifier = crp.NotifierFunc(func(context.Context, *crp.Notification) error { panic("MDM client bug") })
			ch := mint(t, env, "alice@example.com", "alice-laptop")
			res, err := env.RP.Enroll(context.Background(), &crp.EnrollRequest{TransactionID: "notify-panic",
				CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch})
			if !required {
				require.NoError(t, err)
				require.NotNil(t, res.Certificate)
				return
			}
			var e *crp.Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, crp.ReasonNotifyFailed, e.Reason, "%v", err)
			require.Nil(t, res.Certificate, "withheld")
		})
	}
}
