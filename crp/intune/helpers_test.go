package intune_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"sync"
	"testing"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/crp/intune"
	"github.com/scepkit/scepkit/crp/intune/intunetest"
	"github.com/scepkit/scepkit/profile"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

var (
	keyOnce   sync.Once
	deviceKey *rsa.PrivateKey
)

func key(t testing.TB) *rsa.PrivateKey {
	keyOnce.Do(func() {
		var err error
		if deviceKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return deviceKey
}

// gateway is a crptest gateway wired for Intune against an emulator: Intune's
// challenges go to the intune.Validator, scepkit's own to the built-in Verifier.
type gateway struct {
	*crptest.Env
	Emu    *intunetest.Server
	Client *intune.Client
}

const intuneProfile = "intune-scep"

func newGateway(t *testing.T, legacy bool) *gateway {
	t.Helper()
	env, err := crptest.New(crptest.Options{Legacy: legacy})
	require.NoError(t, err)
	emu := intunetest.NewServer()
	t.Cleanup(emu.Close)
	c := emu.Client("scepkit-test/1.0")
	require.NoError(t, c.Validate())
	env.Templates["intune-device"] = &catemplate.Template{Name: "intune-device", Validity: 365 * 24 * time.Hour,
		Backdate: 5 * time.Minute, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, MinKeySize: 2048,
		KeyTypes:           []profile.KeyType{profile.RSA, profile.ECDSAP256},
		SubjectFromRequest: true, SANsFromRequest: true, Published: true}
	env.RP.Templates = &catemplate.ProfileResolver{ByProfile: map[string]string{intuneProfile: "intune-device"},
		Fallback: env.RP.Templates, Templates: env.Templates}
	env.RP.Validators = []crp.ChallengeValidator{&intune.Validator{Client: c, Profile: &profile.Profile{ID: intuneProfile}}}
	env.RP.Notifier = &intune.Notifier{Client: c, Others: env.Notifier}
	env.RP.RequireNotification = true
	require.NoError(t, env.RP.Validate())
	return &gateway{Env: env, Emu: emu, Client: c}
}

// csr builds a DER CSR for CN cn carrying ch.
func csrDER(t testing.TB, cn, ch string) []byte {
	t.Helper()
	k := key(t)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, k)
	require.NoError(t, err)
	if ch != "" {
		der, err = scep.AddChallengePassword(der, ch, k, nil)
		require.NoError(t, err)
	}
	return der
}

func csr(t testing.TB, cn, ch string) *x509.CertificateRequest {
	t.Helper()
	c, err := x509.ParseCertificateRequest(csrDER(t, cn, ch))
	require.NoError(t, err)
	return c
}
