package crp_test

// The lifecycle of a decision of Decide: completions that come late or twice,
// decisions that race on one transactionID, completions for another CSR.

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"testing"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// TestDecideRaceLoser: of two requests decided at the same time under one
// transactionID, the one that finds the other's decision open when it is done is
// refused without consequences: its challenge is released (a fresh transaction uses
// it), nothing is recorded or notified under the winner's transactionID, and the
// winner completes normally. The race is made deterministic by a user check that
// decides the winner while the loser is between its checks and its decision.
func TestDecideRaceLoser(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	chLoser := mint(t, env, "alice@example.com", "alice-laptop")
	chWinner := mint(t, env, "alice@example.com", "alice-laptop")
	reqLoser := csr(t, deviceKey, "alice@example.com", chLoser)
	reqWinner := csr(t, deviceKey, "alice@example.com", chWinner)
	var winner *crp.Decision
	var once sync.Once
	env.RP.Checks = []crp.Check{{Name: "meanwhile", Phase: crp.PhaseTemplate, After: true,
		Func: func(ctx context.Context, tx *crp.Transaction) error {
			if tx.Challenge == chLoser {
				once.Do(func() {
					var err error
					winner, err = env.RP.Decide(ctx, &crp.EnrollRequest{TransactionID: "race", CSR: reqWinner, Challenge: chWinner})
					require.NoError(t, err)
				})
			}
			return nil
		}}}

	_, err := env.RP.Decide(ctx, &crp.EnrollRequest{TransactionID: "race", CSR: reqLoser, Challenge: chLoser})
	var e *crp.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, crp.ReasonTransactionConflict, e.Reason)
	require.NotNil(t, winner)
	_, err = env.RP.Transactions.Get(ctx, "race")
	require.ErrorIs(t, err, crp.ErrNotFound, "the loser wrote a record under the winner's open decision")
	require.Empty(t, env.Notifier.Notifications(), "the loser's failure was notified under the winner's transactionID")

	cert, err := env.CA.Sign(ctx, winner.Template, reqWinner.PublicKey)
	require.NoError(t, err)
	require.NoError(t, env.RP.Complete(ctx, &crp.Completion{TransactionID: "race", CSR: reqWinner, Certificate: cert}))
	rec, err := env.RP.Transactions.Get(ctx, "race")
	require.NoError(t, err)
	require.Equal(t, scep.Success, rec.Status)
	require.Equal(t, cert.Raw, rec.Certificate.Raw)

	env.RP.Checks = nil
	_, err = env.RP.Decide(ctx, &crp.EnrollRequest{TransactionID: "fresh", CSR: reqLoser, Challenge: chLoser})
	require.NoError(t, err, "the loser's challenge was burnt")
}

// TestDecideRaceOneTransaction: many requests with their own challenges decided
// concurrently under one transactionID: one decision is made, and every other
// challenge is still usable.
func TestDecideRaceOneTransaction(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	const n = 8
	chs := make([]string, n)
	reqs := make([]*x509.CertificateRequest, n)
	for i := range chs {
		chs[i] = mint(t, env, "alice@example.com", "alice-laptop")
		reqs[i] = csr(t, deviceKey, "alice@example.com", chs[i])
	}
	won := make([]bool, n)
	var wg sync.WaitGroup
	for i := range chs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := env.RP.Decide(ctx, &crp.EnrollRequest{TransactionID: "one", CSR: reqs[i], Challenge: chs[i]})
			won[i] = err == nil
		}(i)
	}
	wg.Wait()
	winners := 0
	for i := range chs {
		if won[i] {
			winners++
			continue
		}
		_, err := env.RP.Decide(ctx, &crp.EnrollRequest{TransactionID: fmt.Sprintf("again-%d", i), CSR: reqs[i], Challenge: chs[i]})
		require.NoError(t, err, "the challenge of request %d was burnt by a lost race", i)
	}
	require.Equal(t, 1, winners)
	_, err := env.RP.Transactions.Get(ctx, "one")
	require.ErrorIs(t, err, crp.ErrNotFound)
}

// TestMatchesExtKeyUsageAsSets: extended key usages, known and unknown, compare as
// sets: order and repetition do not matter, a missing or extra one does.
func TestMatchesExtKeyUsageAsSets(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	d, req, _ := decideAlice(t, env, "eku")
	decided := *d.Template
	oid := func(a ...int) asn1.ObjectIdentifier { return a }
	decided.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageEmailProtection}
	decided.UnknownExtKeyUsage = []asn1.ObjectIdentifier{oid(1, 3, 6, 1, 4, 1, 311, 20, 2, 2), oid(1, 3, 6, 1, 4, 1, 99999, 1)}
	cases := []struct {
		name    string
		eku     []x509.ExtKeyUsage
		unknown []asn1.ObjectIdentifier
		match   bool
	}{
		{"same order", decided.ExtKeyUsage, decided.UnknownExtKeyUsage, true},
		{"reordered", []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection, x509.ExtKeyUsageClientAuth},
			[]asn1.ObjectIdentifier{decided.UnknownExtKeyUsage[1], decided.UnknownExtKeyUsage[0]}, true},
		{"repeated", append([]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, decided.ExtKeyUsage...),
			decided.UnknownExtKeyUsage, true},
		{"one missing", decided.ExtKeyUsage[:1], decided.UnknownExtKeyUsage, false},
		{"unknown one missing", decided.ExtKeyUsage, decided.UnknownExtKeyUsage[:1], false},
		{"unknown one extra", decided.ExtKeyUsage, append(slices.Clone(decided.UnknownExtKeyUsage), oid(1, 2, 3)), false},
		{"another", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageEmailProtection},
			decided.UnknownExtKeyUsage, false},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tmpl := decided
			tmpl.SerialNumber = big.NewInt(int64(500 + i))
			tmpl.ExtKeyUsage, tmpl.UnknownExtKeyUsage = c.eku, c.unknown
			cert, err := env.CA.Sign(ctx, &tmpl, req.PublicKey)
			require.NoError(t, err)
			err = crp.Matches(&decided, cert)
			if c.match {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, "extKeyUsage")
			}
		})
	}
}
