package crp_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
)

// TestOperatorFaults: what the embedding code gets wrong is an operator fault, not
// the device's. A collaborator left nil, or one that answers neither a value nor an
// error, is refused as ReasonMisconfigured before anything is issued and the
// challenge is released (before, each panicked after the challenge was claimed, so a
// device could not enroll even once the fault was mended); an Issuer that runs out of
// time releases it too. A certificate the Issuer signed with another CA's key is
// withheld (before, the device got it, though it does not chain to the CA it was
// told of). Each case ends with the fault mended and the same challenge enrolling,
// except the last, where the CA did issue.
func TestOperatorFaults(t *testing.T) {
	other, err := catemplate.NewCA(catemplate.CAOptions{KeySize: 2048})
	require.NoError(t, err)
	for _, tc := range []struct {
		name     string
		break_   func(env *crptest.Env)
		reason   crp.Reason
		released bool
	}{
		{"no Templates", func(env *crptest.Env) { env.RP.Templates = nil }, crp.ReasonMisconfigured, true},
		{"no Issuer", func(env *crptest.Env) { env.RP.Issuer = nil }, crp.ReasonMisconfigured, true},
		{"no DeviceRegistry", func(env *crptest.Env) { env.RP.Devices = nil }, crp.ReasonMisconfigured, true},
		{"no UserDirectory", func(env *crptest.Env) { env.RP.Users = nil }, crp.ReasonMisconfigured, true},
		{"user (nil, nil)", func(env *crptest.Env) {
			env.RP.Users = crp.UserDirectoryFunc(func(context.Context, string) (*crp.User, error) { return nil, nil })
		}, crp.ReasonMisconfigured, true},
		{"device (nil, nil)", func(env *crptest.Env) {
			env.RP.Devices = crp.DeviceRegistryFunc(func(context.Context, string) (*crp.Device, error) { return nil, nil })
		}, crp.ReasonMisconfigured, true},
		{"template (nil, nil)", func(env *crptest.Env) {
			env.RP.Templates = catemplate.ResolverFunc(func(context.Context, *catemplate.ResolveRequest) (*catemplate.Template, error) {
				return nil, nil
			})
		}, crp.ReasonMisconfigured, true},
		{"CAIssuer without a CA", func(env *crptest.Env) { env.RP.Issuer = crp.CAIssuer{} }, crp.ReasonCAUnavailable, true},
		{"Issuer out of time", func(env *crptest.Env) {
			env.RP.Issuer = crp.IssuerFunc(func(context.Context, *crp.IssueRequest) (*x509.Certificate, error) {
				return nil, fmt.Errorf("hsm: %w", context.DeadlineExceeded)
			})
		}, crp.ReasonCAUnavailable, true},
		{"CA key unplugged", func(env *crptest.Env) {
			// A token removed or a lost session: the CA's key fails, not the request.
			env.RP.Issuer = crp.CAIssuer{CA: &catemplate.CA{Certificate: env.CA.Certificate,
				Signer: unpluggedSigner{env.CA.Signer}, Chain: env.CA.Chain}}
		}, crp.ReasonCAUnavailable, true},
		{"another CA's certificate", func(env *crptest.Env) {
			env.RP.Issuer = crp.IssuerFunc(func(ctx context.Context, req *crp.IssueRequest) (*x509.Certificate, error) {
				return other.Sign(ctx, req.Template, req.PublicKey)
			})
		}, crp.ReasonCertMismatch, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t)
			users, devices, templates, issuer := env.RP.Users, env.RP.Devices, env.RP.Templates, env.RP.Issuer
			tc.break_(env)
			ch := mint(t, env, "alice@example.com", "alice-laptop")
			req := &crp.EnrollRequest{TransactionID: "t-" + tc.name, CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch}
			res, err := env.RP.Enroll(context.Background(), req)
			var e *crp.Error
			require.True(t, errors.As(err, &e), "%v", err)
			require.Equal(t, tc.reason, e.Reason, "%v", e)
			require.Nil(t, res.Certificate)
			require.Zero(t, env.Issuer.Count())

			env.RP.Users, env.RP.Devices, env.RP.Templates, env.RP.Issuer = users, devices, templates, issuer
			res, err = env.RP.Enroll(context.Background(), req)
			if tc.released {
				require.NoError(t, err, "the challenge was spent on an operator fault")
				require.NotNil(t, res.Certificate)
			} else {
				require.ErrorAs(t, err, &e)
			}
		})
	}
}

// unpluggedSigner fails as a PKCS#11 token does once it is removed.
type unpluggedSigner struct{ crypto.Signer }

func (unpluggedSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("pkcs11: 0x32: CKR_DEVICE_REMOVED")
}

// TestEnrollNeedsTransactionID: Enroll without a transactionID is refused (records
// and resends are keyed by it); before, two such requests shared one record.
func TestEnrollNeedsTransactionID(t *testing.T) {
	env := newEnv(t)
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	_, err := env.RP.Enroll(context.Background(), &crp.EnrollRequest{CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch})
	var e *crp.Error
	require.ErrorAs(t, err, &e)
	require.Zero(t, env.Issuer.Count())
	_, err = env.RP.Enroll(context.Background(), &crp.EnrollRequest{TransactionID: "t", Challenge: ch})
	require.ErrorAs(t, err, &e, "no CSR")
}

// TestValidateCAIssuerWithoutCA: Validate refuses a CAIssuer without a CA (before, it
// passed, and the first enrollment panicked after its challenge was claimed).
func TestValidateCAIssuerWithoutCA(t *testing.T) {
	for _, issuer := range []crp.Issuer{crp.CAIssuer{}, &crp.CAIssuer{}, (*crp.CAIssuer)(nil)} {
		env := newEnv(t)
		require.NoError(t, env.RP.Validate())
		env.RP.Issuer = issuer
		require.ErrorContains(t, env.RP.Validate(), "CAIssuer without a CA")
	}
}

// TestValidateRefusesWhatFailsEveryEnrollment: Validate refuses a configuration with
// which every enrollment would fail: a Verifier without Keys or Issuer, with a Leeway
// over the maximum or no algorithm; a CA certificate that has expired; a CACert that
// is not the CAIssuer's CA. Before, each passed Validate.
func TestValidateRefusesWhatFailsEveryEnrollment(t *testing.T) {
	other, err := catemplate.NewCA(catemplate.CAOptions{Subject: pkix.Name{CommonName: "another CA"}})
	require.NoError(t, err)
	for _, c := range []struct {
		name   string
		mangle func(env *crptest.Env)
		want   string
	}{
		{"Verifier without Keys", func(env *crptest.Env) { env.RP.Verifier.Keys = nil }, "needs Keys"},
		{"Verifier without Issuer", func(env *crptest.Env) { env.RP.Verifier.Issuer = "" }, "needs Keys, Issuer"},
		{"Leeway over the maximum", func(env *crptest.Env) { env.RP.Verifier.Leeway = 2 * time.Minute }, "leeway"},
		{"no algorithm", func(env *crptest.Env) { env.RP.Verifier.Algorithms = []string{} }, "empty Algorithms"},
		{"expired CA", func(env *crptest.Env) {
			env.RP.Now = func() time.Time { return env.CA.Certificate.NotAfter.Add(time.Second) }
		}, "expired"},
		{"CACert of another CA than the CAIssuer's", func(env *crptest.Env) { env.RP.CACert = other.Certificate }, "not the certificate of the CAIssuer's CA"},
		{"CA Signer without the certificate's key", func(env *crptest.Env) {
			env.RP.Issuer = crp.CAIssuer{CA: &catemplate.CA{Certificate: env.CA.Certificate, Signer: other.Signer}}
		}, "does not hold the key of its certificate"},
		// These issued, or panicked, with no word from Validate.
		{"RequireNotification without a Notifier", func(env *crptest.Env) {
			env.RP.RequireNotification, env.RP.Notifier = true, nil
		}, "RequireNotification needs a Notifier"},
		{"Check without Func", func(env *crptest.Env) {
			env.RP.Checks = []crp.Check{{Name: "allow-list", Phase: crp.PhaseMapping}}
		}, `Checks[0] ("allow-list") has no Func`},
		{"Check without Name", func(env *crptest.Env) {
			env.RP.Checks = []crp.Check{{Phase: crp.PhaseMapping, Func: func(context.Context, *crp.Transaction) error { return nil }}}
		}, "Checks[0] has no Name"},
		{"Check in no phase", func(env *crptest.Env) {
			env.RP.Checks = []crp.Check{{Name: "rate-limit", Phase: crp.PhaseNotify + 1, Func: func(context.Context, *crp.Transaction) error { return nil }}}
		}, `Checks[0] ("rate-limit") is in no phase`},
		{"Check in PhaseNotify without a Notifier", func(env *crptest.Env) {
			env.RP.Notifier = nil
			env.RP.Checks = []crp.Check{{Name: "audit", Phase: crp.PhaseNotify, Func: func(context.Context, *crp.Transaction) error { return nil }}}
		}, `Checks[0] ("audit") is in PhaseNotify, which runs only with a Notifier`},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := newEnv(t)
			env.RP.Issuer = crp.CAIssuer{CA: env.CA}
			require.NoError(t, env.RP.Validate())
			c.mangle(env)
			require.ErrorContains(t, env.RP.Validate(), c.want)
		})
	}
}

// TestVerifierConfigIsOperatorFault: a Verifier that cannot work (challenge.ErrConfig)
// refuses as an operator fault (ReasonMisconfigured, badCertId), not as the device's
// (it was ReasonInternal, badRequest), and the challenge stays usable once fixed.
func TestVerifierConfigIsOperatorFault(t *testing.T) {
	env := newEnv(t)
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	req := csr(t, deviceKey, "alice@example.com", ch)
	env.RP.Verifier.Leeway = 2 * time.Minute
	_, err := env.RP.Enroll(context.Background(), &crp.EnrollRequest{TransactionID: "cfg-1", CSR: req, Challenge: ch})
	var e *crp.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, crp.ReasonMisconfigured, e.Reason)
	require.Equal(t, scep.BadCertID, e.FailInfo())
	require.ErrorIs(t, err, challenge.ErrConfig)
	require.Zero(t, env.Issuer.Count())

	env.RP.Verifier.Leeway = 0
	res, err := env.RP.Enroll(context.Background(), &crp.EnrollRequest{TransactionID: "cfg-2", CSR: req, Challenge: ch})
	require.NoError(t, err)
	require.Equal(t, scep.Success, res.Status)
}

// TestNilRequests: the entry points refuse a nil request with an error instead of
// panicking.
func TestNilRequests(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	res, err := env.RP.Enroll(ctx, nil)
	require.Error(t, err)
	require.Equal(t, scep.Failure, res.Status)
	_, err = env.RP.Decide(ctx, nil)
	require.Error(t, err)
	require.Error(t, env.RP.Complete(ctx, nil))
	_, err = env.RP.Respond(ctx, nil)
	require.Error(t, err)
	require.Zero(t, env.Issuer.Count())
}
