package crp_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/scep"
)

// TestUnrecordedApprovalNotNotified: an approval whose certificate the CA signed but
// whose record could not be written leaves the request PENDING (the certificate
// withheld, to be revoked), to be approved again once the lease has passed. The MDM
// is not told it failed: when it is approved next, the MDM hears "issued" only.
// Before, it was told "failed" first, and "issued" after it: an MDM such as Intune
// takes a failure as final.
func TestUnrecordedApprovalNotNotified(t *testing.T) {
	for _, required := range []bool{false, true} {
		t.Run(map[bool]string{false: "notification not required", true: "notification required"}[required], func(t *testing.T) {
			env := newEnv(t)
			env.RP.RequireNotification = required
			env.RP.DecisionTTL = time.Second
			ctx := context.Background()
			enrollPending(t, env)
			flaky := &flakyTransactions{TransactionStore: env.RP.Transactions}
			env.RP.Transactions = flaky
			flaky.down.Store(true)
			_, err := env.RP.Approve(ctx, "wait")
			require.Error(t, err)
			require.Equal(t, 1, env.Issuer.Count(), "the CA signed")
			rec, err := flaky.Get(ctx, "wait")
			require.NoError(t, err)
			require.Equal(t, scep.Pending, rec.Status)
			flaky.down.Store(false)
			time.Sleep(1100 * time.Millisecond) // the lease passes
			cert, err := env.RP.Approve(ctx, "wait")
			require.NoError(t, err)
			require.NotNil(t, cert)
			require.Equal(t, []crp.Outcome{crp.OutcomePending, crp.OutcomeIssued}, outcomesTold(env.Notifier))
		})
	}
}
