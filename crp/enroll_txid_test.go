package crp_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/internal/testserver"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// TestEnrollTransactionIDs: through Enroll and Decide a transactionID is what it is
// through SCEP. Before, Enroll looked at no record: the same request sent again got
// "challenge already used" instead of its certificate; another requester (bob, his own
// key and challenge) under alice's transactionID was issued and his record replaced
// hers; with approval required, bob's request replaced alice's pending one, and
// Approve then issued bob's certificate while alice's request vanished.
func TestEnrollTransactionIDs(t *testing.T) {
	keys(t)
	bobKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	ctx := context.Background()
	aliceReq := func(env *crptest.Env, tid string) *crp.EnrollRequest {
		ch := mint(t, env, "alice@example.com", "alice-laptop")
		return &crp.EnrollRequest{TransactionID: tid, CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch}
	}
	bobReq := func(env *crptest.Env, tid string) *crp.EnrollRequest {
		ch := mint(t, env, "bob@example.com", "bob-phone")
		return &crp.EnrollRequest{TransactionID: tid, CSR: csr(t, bobKey, "bob@example.com", ch), Challenge: ch}
	}
	conflict := func(t *testing.T, err error) {
		t.Helper()
		var ce *crp.Error
		require.ErrorAs(t, err, &ce)
		require.Equal(t, crp.ReasonTransactionConflict, ce.Reason, "%v", err)
	}

	t.Run("the same request again gets its certificate", func(t *testing.T) {
		env := newEnv(t)
		req := aliceReq(env, "t1")
		first, err := env.RP.Enroll(ctx, req)
		require.NoError(t, err)
		again, err := env.RP.Enroll(ctx, req)
		require.NoError(t, err)
		require.Equal(t, scep.Success, again.Status)
		require.Equal(t, first.Certificate.Raw, again.Certificate.Raw)
		require.Equal(t, 1, env.Issuer.Count())
	})

	t.Run("another requester cannot take a transactionID over", func(t *testing.T) {
		env := newEnv(t)
		first, err := env.RP.Enroll(ctx, aliceReq(env, "t1"))
		require.NoError(t, err)
		_, err = env.RP.Enroll(ctx, bobReq(env, "t1"))
		conflict(t, err)
		require.Equal(t, 1, env.Issuer.Count(), "nothing issued to bob")
		rec, err := env.RP.Transactions.Get(ctx, "t1")
		require.NoError(t, err)
		require.Equal(t, first.Certificate.Raw, rec.Certificate.Raw, "alice's record kept")
		_, err = env.RP.Decide(ctx, bobReq(env, "t1"))
		conflict(t, err)
	})

	t.Run("a pending request stays its requester's", func(t *testing.T) {
		env := newEnv(t)
		env.Templates[crptest.TemplateName].RequiresApproval = true
		res, err := env.RP.Enroll(ctx, aliceReq(env, "t2"))
		require.NoError(t, err)
		require.Equal(t, scep.Pending, res.Status)
		_, err = env.RP.Enroll(ctx, bobReq(env, "t2"))
		conflict(t, err)
		cert, err := env.RP.Approve(ctx, "t2")
		require.NoError(t, err)
		require.Equal(t, "alice@example.com", cert.Subject.CommonName)
		require.True(t, cert.PublicKey.(*rsa.PublicKey).Equal(deviceKey.Public()))
		require.Equal(t, 1, env.Issuer.Count())
	})

	t.Run("a decided request is not decided twice", func(t *testing.T) {
		env := newEnv(t)
		req := aliceReq(env, "t3")
		_, err := env.RP.Enroll(ctx, req)
		require.NoError(t, err)
		_, err = env.RP.Decide(ctx, req)
		conflict(t, err)
		require.Equal(t, 1, env.Issuer.Count())
	})
}

// unreadableTransactions fails every Get, as a store that does not answer.
type unreadableTransactions struct {
	crp.TransactionStore
	gets atomic.Int32
}

func (u *unreadableTransactions) Get(context.Context, string) (*crp.Record, error) {
	u.gets.Add(1)
	return nil, errors.New("transactions store: i/o timeout")
}

// TestTransactionStoreUnreadable: a transaction store that cannot be read fails the
// request at once as transient, its challenge unclaimed, logged as the step
// transaction-record. Before, the error was ignored: the request went on as if new
// (a resend could not get its answer, a transactionID could be taken over), and a
// PostgreSQL that stopped answering held the device for two store timeouts instead of
// one, the first one logged nowhere.
func TestTransactionStoreUnreadable(t *testing.T) {
	keys(t)
	logs := &testserver.Output{}
	env, err := crptest.New(crptest.Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	require.NoError(t, err)
	store := &unreadableTransactions{TransactionStore: env.RP.Transactions}
	env.RP.Transactions = store
	ctx := context.Background()
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	req := &crp.EnrollRequest{TransactionID: "t1", CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch}
	_, err = env.RP.Enroll(ctx, req)
	require.ErrorIs(t, err, crp.ErrUnavailable)
	require.Equal(t, int32(1), store.gets.Load())
	require.Zero(t, env.Issuer.Count())
	require.Contains(t, logs.String(), `"step":"transaction-record"`)

	env.RP.Transactions = store.TransactionStore
	res, err := env.RP.Enroll(ctx, req)
	require.NoError(t, err, "the challenge was not claimed")
	require.Equal(t, scep.Success, res.Status)
}
