package crp_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/profile"
)

// TestIssuerOutcomes: what an Issuer returns decides the reason, what errors.Is
// matches, and whether the challenge may be used again. Before, an Issuer's own error
// did not match ErrRefused although it is a definitive refusal. An Issuer that returns
// neither a certificate nor an error keeps the challenge spent: the CA was asked and
// may have signed.
func TestIssuerOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cert     *x509.Certificate
		err      error
		reason   crp.Reason
		is       error
		released bool
	}{
		{"its own error", nil, errors.New("policy says no"), crp.ReasonCARefused, crp.ErrRefused, false},
		{"ErrRefused", nil, fmt.Errorf("policy: %w", crp.ErrRefused), crp.ReasonCARefused, crp.ErrRefused, false},
		{"ErrUnavailable", nil, fmt.Errorf("down: %w", crp.ErrUnavailable), crp.ReasonCAUnavailable, crp.ErrUnavailable, true},
		{"deadline", nil, context.DeadlineExceeded, crp.ReasonCAUnavailable, crp.ErrUnavailable, true},
		{"neither", nil, nil, crp.ReasonCARefused, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t)
			ctx := context.Background()
			ca := env.Issuer.Next
			env.Issuer.Next = crp.IssuerFunc(func(context.Context, *crp.IssueRequest) (*x509.Certificate, error) {
				return tc.cert, tc.err
			})
			ch := mint(t, env, "alice@example.com", "alice-laptop")
			req := csr(t, deviceKey, "alice@example.com", ch)
			_, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "first", CSR: req, Challenge: ch})
			var e *crp.Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, tc.reason, e.Reason, "%v", err)
			if tc.is != nil {
				require.ErrorIs(t, err, tc.is)
			}
			require.Equal(t, 1, strings.Count(err.Error(), "refused by the CA")+boolInt(!errors.Is(err, crp.ErrRefused)),
				"said once: %v", err)

			env.Issuer.Next = ca
			_, err = env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "again", CSR: req, Challenge: ch})
			if tc.released {
				require.NoError(t, err, "the challenge was given back")
				return
			}
			require.ErrorAs(t, err, &e)
			require.Equal(t, crp.ReasonReplayed, e.Reason, "%v", err)
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestCAIssuerIsRevoked: a CAIssuer is a RevocationChecker, and keeps its contract: a
// nil certificate, or one without a serial, is an error (with false), never a panic
// and never a plain "not revoked"; a serial the CA revoked is reported.
func TestCAIssuerIsRevoked(t *testing.T) {
	ca, err := catemplate.NewCA(catemplate.CAOptions{KeyType: profile.ECDSAP256})
	require.NoError(t, err)
	require.NoError(t, ca.Revoke(big.NewInt(7), 1, time.Now()))
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		ci      crp.CAIssuer
		cert    *x509.Certificate
		revoked bool
		err     bool
	}{
		{"revoked serial", crp.CAIssuer{CA: ca}, &x509.Certificate{SerialNumber: big.NewInt(7)}, true, false},
		{"other serial", crp.CAIssuer{CA: ca}, &x509.Certificate{SerialNumber: big.NewInt(8)}, false, false},
		{"nil certificate", crp.CAIssuer{CA: ca}, nil, false, true},
		{"no serial", crp.CAIssuer{CA: ca}, &x509.Certificate{}, false, true},
		{"no CA", crp.CAIssuer{}, &x509.Certificate{SerialNumber: big.NewInt(7)}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			revoked, err := tc.ci.IsRevoked(ctx, tc.cert)
			require.Equal(t, tc.revoked, revoked)
			if tc.err {
				require.Error(t, err)
			} else {
				require.NoError(t, err)
			}
		})
	}
}
