package intune_test

import (
	"context"
	"errors"
	"testing"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/intune"
	"github.com/scepkit/scepkit/crp/intune/intunetest"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// A template that needs approval: Intune validates, the device is answered PENDING
// and Intune hears nothing; Approve issues and sends the successNotification,
// Reject sends a failureNotification. Neither asks Intune to validate again.
func TestPending(t *testing.T) {
	g := newGateway(t, false)
	g.Templates["intune-device"].RequiresApproval = true
	ctx := context.Background()
	enroll := func(tx string) *crp.Result {
		ch := g.Emu.Challenge(intunetest.Verdict{})
		res, err := g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: tx, CSR: csr(t, "device-"+tx, ch), Challenge: ch})
		require.NoError(t, err)
		require.Equal(t, scep.Pending, res.Status)
		require.Nil(t, res.Certificate)
		return res
	}
	enroll("tx-approve")
	enroll("tx-reject")
	require.Len(t, g.Emu.Validations(), 2)
	require.Empty(t, g.Emu.Successes(), "nothing is notified while pending")
	require.Empty(t, g.Emu.Failures())
	require.Equal(t, 0, g.Issuer.Count())

	cert, err := g.RP.Approve(ctx, "tx-approve")
	require.NoError(t, err)
	require.Equal(t, "device-tx-approve", cert.Subject.CommonName)
	s := g.Emu.Successes()
	require.Len(t, s, 1)
	require.Equal(t, "tx-approve", s[0].Notification.TransactionID)
	require.Equal(t, intune.Thumbprint(cert), s[0].Notification.CertificateThumbprint)
	_, err = g.RP.Approve(ctx, "tx-approve")
	require.ErrorContains(t, err, "not pending", "decided once")

	require.NoError(t, g.RP.Reject(ctx, "tx-reject", errors.New("not approved by the PKI team")))
	f := g.Emu.Failures()
	require.Len(t, f, 1)
	require.Equal(t, "tx-reject", f[0].Notification.TransactionID)
	require.Equal(t, int64(-2147024891), f[0].Notification.HResult, "an HRESULT is a signed 32-bit integer on the wire")
	require.Contains(t, f[0].Notification.ErrorDescription, "not approved by the PKI team")

	require.Len(t, g.Emu.Validations(), 2, "the verdict stands: Intune is not asked again")
	require.Equal(t, 1, g.Issuer.Count())
	require.Len(t, g.Notifier.Notifications(), 0, "Intune's transactions are not told to Others")
	require.Empty(t, g.Emu.Violations())
}
