package redisstore_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/internal/redistest"
	"github.com/scepkit/scepkit/scep"
)

// TestSameRequestAtBothGateways: a device whose first try timed out resends the very
// same request (same key, same CSR, same transactionID) and the load balancer sends the
// two to different gateways at once. One certificate at most; the loser is refused as
// replayed or gets the recorded certificate. A later resend gets the same certificate,
// never a second one and never a FAILURE: crp does not record the loser's "replayed"
// refusal over the winner's record.
func TestSameRequestAtBothGateways(t *testing.T) {
	srv := redistest.Start(t)
	gws, hc := twoGateways(t, srv)
	keys := deviceKeys(t)
	ctx := context.Background()
	const rounds = 10
	for i := range rounds {
		u := demoUsers[i%2]
		ch, _, err := gws[0].env.Challenge(u[0], u[1], 0)
		require.NoError(t, err)
		k := keys[i%keyPool]
		req := csrFor(t, k, u[0], ch)
		before := gws[0].env.Issuer.Count() + gws[1].env.Issuer.Count()
		var wg sync.WaitGroup
		rs := [2]*request{{gw: 0, key: k, csr: req}, {gw: 1, key: k, csr: req}}
		gate := make(chan struct{})
		for _, r := range rs {
			wg.Go(func() { <-gate; r.send(ctx, gws, hc) })
		}
		close(gate)
		wg.Wait()
		var cert []byte
		for _, r := range rs {
			if r.err == nil {
				require.True(t, cert == nil || string(cert) == string(r.cert.Raw), "two different certificates")
				cert = r.cert.Raw
			} else {
				require.Equal(t, scep.BadRequest, scep.FailInfoOf(r.err))
			}
		}
		require.NotNil(t, cert)
		require.Equal(t, before+1, gws[0].env.Issuer.Count()+gws[1].env.Issuer.Count())

		// The device resends once more, at either gateway.
		again := &request{gw: i % 2, key: k, csr: req}
		again.send(ctx, gws, hc)
		require.Equal(t, before+1, gws[0].env.Issuer.Count()+gws[1].env.Issuer.Count())
		require.NoError(t, again.err, "the resend of an issued request gets its certificate")
		require.Equal(t, cert, again.cert.Raw)
	}
}
