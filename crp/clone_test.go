package crp_test

import (
	"context"
	"crypto/x509"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/scep"
)

// TestIssuerChangingTheTemplateInPlace: a CA wrapper that edits the template it is
// given (to set its serial, or its own policy) before signing it cannot make the
// registration point accept a certificate that differs from the decision. Before, the
// Issuer and Decision.Template were the registration point's own template, so each
// edit below reached the device.
func TestIssuerChangingTheTemplateInPlace(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*x509.Certificate)
	}{
		{"subject", func(c *x509.Certificate) { c.RawSubject = mustName(t, "CN=admin@example.com") }},
		{"subject bytes in place", func(c *x509.Certificate) { c.RawSubject[len(c.RawSubject)-1] ^= 1 }},
		{"validity", func(c *x509.Certificate) { c.NotAfter = c.NotAfter.Add(time.Hour) }},
		{"extended key usage", func(c *x509.Certificate) { c.ExtKeyUsage = append(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth) }},
		{"extended key usage in place", func(c *x509.Certificate) { c.ExtKeyUsage[0] = x509.ExtKeyUsageServerAuth }},
		{"key usage", func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign }},
	} {
		t.Run("Enroll/"+tc.name, func(t *testing.T) {
			env := newEnv(t)
			env.Issuer.Next = crp.IssuerFunc(func(ctx context.Context, r *crp.IssueRequest) (*x509.Certificate, error) {
				require.Equal(t, "alice@example.com", r.UserID)
				require.Equal(t, "alice-laptop", r.DeviceID)
				r.Template.SerialNumber = big.NewInt(4242) // the CA's own serial: fine
				tc.change(r.Template)
				return env.CA.Sign(ctx, r.Template, r.PublicKey)
			})
			ch := mint(t, env, "alice@example.com", "alice-laptop")
			res, err := env.RP.Enroll(context.Background(), &crp.EnrollRequest{TransactionID: "edit",
				CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch})
			var e *crp.Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, crp.ReasonCertMismatch, e.Reason, "%v", err)
			require.Nil(t, res.Certificate)
			require.Equal(t, scep.Failure, res.Status)
		})
		t.Run("Complete/"+tc.name, func(t *testing.T) {
			env := newEnv(t)
			ctx := context.Background()
			ch := mint(t, env, "alice@example.com", "alice-laptop")
			req := csr(t, deviceKey, "alice@example.com", ch)
			d, err := env.RP.Decide(ctx, &crp.EnrollRequest{TransactionID: "edit", CSR: req, Challenge: ch})
			require.NoError(t, err)
			tc.change(d.Template)
			cert, err := env.CA.Sign(ctx, d.Template, req.PublicKey)
			require.NoError(t, err)
			err = env.RP.Complete(ctx, &crp.Completion{TransactionID: "edit", CSR: req, Certificate: cert})
			var e *crp.Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, crp.ReasonCertMismatch, e.Reason, "%v", err)
		})
	}
}
