package intune_test

// One Intune challenge, presented twice with two keys and two transactionIDs (a
// stolen challenge racing the device, or a device replaying it): Intune's
// validateRequest accepts it both times, so the gateway itself must make it one-time,
// as it does scepkit's own challenges, at one gateway and across gateways that share
// the replay store; a transient failure gives it back.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"testing"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/intune/intunetest"
	"github.com/stretchr/testify/require"
)

func requireReplayed(t *testing.T, res *crp.Result, err error) {
	t.Helper()
	var e *crp.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, crp.PhaseGenuineness, e.Phase)
	require.Equal(t, crp.ReasonReplayed, e.Reason)
	require.Nil(t, res.Certificate)
}

func TestExternalChallengeIsOneTime(t *testing.T) {
	ctx := context.Background()
	attacker, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)

	t.Run("one gateway", func(t *testing.T) {
		g := newGateway(t, false)
		ch := g.Emu.Challenge(intunetest.Verdict{})
		res, err := g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "device", CSR: csr(t, "device-1", ch), Challenge: ch})
		require.NoError(t, err)
		require.NotNil(t, res.Certificate)
		res, err = g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "attacker", CSR: request{cn: "device-1", key: attacker}.csr(t, ch), Challenge: ch})
		requireReplayed(t, res, err)
		require.Equal(t, 1, g.Issuer.Count(), "one challenge, one certificate")
		require.Len(t, g.Emu.Validations(), 2, "Intune accepted it twice: the claim is the gateway's")
		require.NotContains(t, err.Error(), ch)
	})

	t.Run("two gateways, one replay store", func(t *testing.T) {
		g := newGateway(t, false)
		// A second gateway beside the first: its own transaction records, the same
		// replay store (Redis, in production).
		g2 := &crp.RegistrationPoint{Validators: g.RP.Validators, Templates: g.RP.Templates, Issuer: g.Issuer,
			CACert: g.CA.Certificate, Replay: g.Verifier.Replay, Revocation: g.RP.Revocation, Notifier: g.RP.Notifier}
		require.NoError(t, g2.Validate())
		ch := g.Emu.Challenge(intunetest.Verdict{})
		res, err := g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "device", CSR: csr(t, "device-1", ch), Challenge: ch})
		require.NoError(t, err)
		require.NotNil(t, res.Certificate)
		res, err = g2.Enroll(ctx, &crp.EnrollRequest{TransactionID: "attacker", CSR: request{cn: "device-1", key: attacker}.csr(t, ch), Challenge: ch})
		requireReplayed(t, res, err)
		require.Equal(t, 1, g.Issuer.Count())
	})

	t.Run("released after a transient failure", func(t *testing.T) {
		g := newGateway(t, false)
		next := g.Issuer.Next
		g.Issuer.Next = crp.IssuerFunc(func(context.Context, *crp.IssueRequest) (*x509.Certificate, error) {
			return nil, fmt.Errorf("%w: CA unreachable", crp.ErrUnavailable)
		})
		ch := g.Emu.Challenge(intunetest.Verdict{})
		res, err := g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "device", CSR: csr(t, "device-1", ch), Challenge: ch})
		require.ErrorIs(t, err, crp.ErrUnavailable)
		require.Nil(t, res.Certificate)
		g.Issuer.Next = next
		res, err = g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "device", CSR: csr(t, "device-1", ch), Challenge: ch})
		require.NoError(t, err, "the device retries with the same challenge")
		require.NotNil(t, res.Certificate)
		require.Equal(t, 1, g.Issuer.Count())
	})

	t.Run("burnt by a definitive refusal after validation", func(t *testing.T) {
		g := newGateway(t, false)
		g.Issuer.Next = crp.IssuerFunc(func(context.Context, *crp.IssueRequest) (*x509.Certificate, error) {
			return nil, fmt.Errorf("%w: policy", crp.ErrRefused)
		})
		ch := g.Emu.Challenge(intunetest.Verdict{})
		_, err := g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "device", CSR: csr(t, "device-1", ch), Challenge: ch})
		require.Error(t, err)
		require.False(t, errors.Is(err, crp.ErrUnavailable))
		res, err := g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "other", CSR: request{cn: "device-1", key: attacker}.csr(t, ch), Challenge: ch})
		requireReplayed(t, res, err)
		require.Equal(t, 0, g.Issuer.Count())
	})
}
