package crp_test

import (
	"context"
	"errors"
	"testing"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/profile"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// TestTemplateRefusesProfileKey: a template that refuses the key the profile asks for
// (here at least 4096 bits where the profile wants 2048) is a configuration no device
// can satisfy. The device followed its profile, so its challenge is given back
// (ReasonMisconfigured) and works once the template is mended. It was
// ReasonKeyRefused and the challenge was spent.
func TestTemplateRefusesProfileKey(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	req := csr(t, deviceKey, "alice@example.com", ch)

	for _, mangle := range []struct {
		name   string
		set    func(*catemplate.Template)
		sentry error
	}{
		{"minimum key size over the profile's", func(tp *catemplate.Template) { tp.MinKeySize = 4096 }, catemplate.ErrKeyTooSmall},
		{"key type the profile does not use", func(tp *catemplate.Template) { tp.KeyTypes = []profile.KeyType{profile.ECDSAP256} }, catemplate.ErrKeyType},
	} {
		t.Run(mangle.name, func(t *testing.T) {
			saved := *env.Templates[crptest.TemplateName]
			defer func() { *env.Templates[crptest.TemplateName] = saved }()
			mangle.set(env.Templates[crptest.TemplateName])
			_, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "key-" + mangle.name, CSR: req, Challenge: ch})
			var e *crp.Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, crp.ReasonMisconfigured, e.Reason)
			require.Equal(t, scep.BadCertID, e.FailInfo())
			require.True(t, errors.Is(err, mangle.sentry), "%v", err)
			require.Zero(t, env.Issuer.Count())
		})
	}
	res, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "key-mended", CSR: req, Challenge: ch})
	require.NoError(t, err, "the challenge was given back")
	require.Equal(t, scep.Success, res.Status)
}
