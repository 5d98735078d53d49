package intune_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/crp/intune"
	"github.com/scepkit/scepkit/crp/intune/intunetest"
	"github.com/scepkit/scepkit/profile"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// Two tenants in one process, each with its own Entra app, its own Intune (two
// emulators) and its own gateway path, sharing the CA, the RA and the stores: a
// tenant's challenge enrolls at its path only, each tenant hears only of its own
// certificates, and each Client keeps its own tokens and discovery.
func TestTenants(t *testing.T) {
	ctx := context.Background()
	replay := &challenge.MemoryReplayStore{}
	txs := &crp.MemoryTransactions{}
	mux := http.NewServeMux()
	type tenant struct {
		emu  *intunetest.Server
		env  *crptest.Env
		path string
	}
	var first *crptest.Env
	tenants := map[string]*tenant{}
	for _, name := range []string{"contoso", "fabrikam"} {
		emu := intunetest.NewServer()
		t.Cleanup(emu.Close)
		emu.Tenant = name + ".onmicrosoft.com"
		env, err := crptest.New(crptest.Options{Share: first, Replay: replay, Transactions: txs})
		require.NoError(t, err)
		if first == nil {
			first = env
		}
		env.Templates["intune"] = &catemplate.Template{Name: "intune", Validity: 24 * time.Hour,
			KeyUsage: x509.KeyUsageDigitalSignature, MinKeySize: 2048, KeyTypes: []profile.KeyType{profile.RSA},
			SubjectFromRequest: true, Published: true}
		env.RP.Templates = &catemplate.ProfileResolver{ByProfile: map[string]string{"intune": "intune"},
			Fallback: env.RP.Templates, Templates: env.Templates}
		ten := &intune.Tenant{Client: emu.Client("scepkit-test/1.0"), Profile: &profile.Profile{ID: "intune"}}
		_, err = ten.Wire(env.RP)
		require.NoError(t, err)
		require.NoError(t, env.RP.Validate())
		// One registration point judges Intune challenges for one tenant only.
		other := &intune.Tenant{Client: &intune.Client{Tenant: "other.onmicrosoft.com", ClientID: "c", ClientSecret: "s", CallerInfo: "x"}}
		_, err = other.Wire(env.RP)
		require.ErrorIs(t, err, intune.ErrConfig)
		path := "/" + name + "/scep"
		scep.Mount(mux, path, env.Server)
		tenants[name] = &tenant{emu: emu, env: env, path: path}
	}
	ts := httptest.NewServer(mux)
	defer ts.Close()

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	enroll := func(at, from, cn string) (*x509.Certificate, error) {
		ch := tenants[from].emu.Mint(intunetest.Profile{Subject: pkix.Name{CommonName: cn}, KeySize: 2048})
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
		require.NoError(t, err)
		der, err = scep.AddChallengePassword(der, ch, key, nil)
		require.NoError(t, err)
		sc := &scep.Client{URL: ts.URL + tenants[at].path, CAFingerprint: first.CAFingerprint()}
		return sc.Enroll(ctx, der, key)
	}
	c1, err := enroll("contoso", "contoso", "CONTOSO-01")
	require.NoError(t, err)
	c2, err := enroll("fabrikam", "fabrikam", "FABRIKAM-01")
	require.NoError(t, err)
	// A tenant's challenge at another tenant's path: that tenant's Intune did not mint
	// it (ChallengeDecryptionError), nothing is issued.
	issued := first.Issuer.Count() + tenants["fabrikam"].env.Issuer.Count()
	_, err = enroll("contoso", "fabrikam", "FABRIKAM-02")
	var fe *scep.FailError
	require.True(t, errors.As(err, &fe), "%v", err)
	require.Equal(t, issued, first.Issuer.Count()+tenants["fabrikam"].env.Issuer.Count())

	for name, c := range map[string]*x509.Certificate{"contoso": c1, "fabrikam": c2} {
		emu := tenants[name].emu
		s := emu.Successes()
		require.Len(t, s, 1, name)
		require.Equal(t, intune.Thumbprint(c), s[0].Notification.CertificateThumbprint, name)
		require.Empty(t, emu.Violations(), name)
		require.Equal(t, 1, emu.Calls(intunetest.OpDiscovery), "%s: its own discovery, cached", name)
		require.Equal(t, 1, emu.Tokens(emu.IntuneScope()), "%s: its own token, cached", name)
	}
	require.Len(t, tenants["contoso"].emu.Validations(), 2, "contoso's Intune judged the misplaced challenge")
	require.Len(t, tenants["fabrikam"].emu.Validations(), 1)
}

// Two Validators of one tenant on one registration point: Validate refuses (a
// pending request names its validator by name).
func TestDuplicateValidatorName(t *testing.T) {
	env, err := crptest.New(crptest.Options{})
	require.NoError(t, err)
	c := &intune.Client{Tenant: "contoso.onmicrosoft.com", ClientID: "c", ClientSecret: "s", CallerInfo: "x"}
	env.RP.Validators = []crp.ChallengeValidator{&intune.Validator{Client: c}, &intune.Validator{Client: c}}
	require.ErrorContains(t, env.RP.Validate(), `the same name "intune:contoso.onmicrosoft.com"`)
}
