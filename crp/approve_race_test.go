package crp_test

// Concurrent Approve calls for one pending transaction (an admin double-click, a
// retried admin API call, two operators) issue one certificate: the decision is claimed
// atomically. (Found in review: each read PENDING and issued.)

import (
	"context"
	"crypto/x509/pkix"
	"sync"
	"testing"

	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

func TestConcurrentApproveIssuesOnce(t *testing.T) {
	env := newEnv(t)
	env.Templates[crptest.TemplateName].RequiresApproval = true
	ctx := context.Background()
	tid := transactionIDOf(t, deviceKey)
	self, err := scep.SelfSigned(deviceKey, pkix.Name{CommonName: "alice@example.com"}, nil)
	require.NoError(t, err)
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	resp, err := env.RP.Respond(ctx, &scep.Request{MessageType: scep.PKCSReq, TransactionID: tid,
		CSR: csr(t, deviceKey, "alice@example.com", ch), ChallengePassword: ch, Signer: self})
	require.NoError(t, err)
	require.Equal(t, scep.Pending, resp.Status)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); env.RP.Approve(ctx, tid) }()
	}
	wg.Wait()
	t.Logf("certificates issued for one pending request: %d", env.Issuer.Count())
	require.Equal(t, 1, env.Issuer.Count())
}
