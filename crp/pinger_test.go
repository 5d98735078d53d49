package crp_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp"
)

// pingedCerts is an inventory in memory that can be down, and counts its pings.
type pingedCerts struct {
	crp.MemoryCertificates
	down  atomic.Bool
	pings atomic.Int64
}

func (p *pingedCerts) Ping(context.Context) error {
	p.pings.Add(1)
	if p.down.Load() {
		return errors.New("connection refused")
	}
	return nil
}

func (p *pingedCerts) Add(ctx context.Context, c *crp.IssuedCertificate) error {
	if p.down.Load() {
		return errors.New("connection refused")
	}
	return p.MemoryCertificates.Add(ctx, c)
}

// TestInventoryDownSignsNothing: an inventory in another store than the challenge
// claims is pinged before the CA signs; down, the request is refused as unavailable
// (the challenge given back) and the CA signs nothing. Before, the CA signed and the
// certificate was withheld, the challenge spent. A store that holds the claims too is
// not pinged: the claim has just shown that it answers.
func TestInventoryDownSignsNothing(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	certs := &pingedCerts{}
	env.RP.Certificates = certs
	issuer := env.Issuer

	certs.down.Store(true)
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	req := &crp.EnrollRequest{TransactionID: "alice", CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch}
	_, err := env.RP.Enroll(ctx, req)
	require.ErrorIs(t, err, crp.ErrUnavailable)
	require.Equal(t, 0, issuer.Count(), "nothing signed")
	require.EqualValues(t, 1, certs.pings.Load())

	certs.down.Store(false)
	res, err := env.RP.Enroll(ctx, req)
	require.NoError(t, err, "the challenge was given back")
	require.NotNil(t, res.Certificate)
	require.Equal(t, 1, issuer.Count())
	_, err = certs.Lookup(ctx, res.Certificate.SerialNumber)
	require.NoError(t, err)
}

// pingedStore is a whole store in memory that counts its pings.
type pingedStore struct {
	crp.MemoryStore
	pings atomic.Int64
}

func (p *pingedStore) Ping(context.Context) error { p.pings.Add(1); return nil }

// TestOneStoreIsNotPinged: when the inventory and the records are the store the
// challenge was claimed in, nothing is pinged (no round trip for boltstore or a
// PostgreSQL-only gateway).
func TestOneStoreIsNotPinged(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	st := &pingedStore{}
	env.Verifier.Replay = st
	env.RP.Certificates, env.RP.Transactions = st, st
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	_, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "alice", CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch})
	require.NoError(t, err)
	require.Zero(t, st.pings.Load())
}

// hangupCerts is an inventory in memory whose Add sees the device hang up first.
type hangupCerts struct {
	crp.MemoryCertificates
	hangup context.CancelFunc
}

func (h *hangupCerts) Add(ctx context.Context, c *crp.IssuedCertificate) error {
	h.hangup()
	if err := ctx.Err(); err != nil {
		return err
	}
	return h.MemoryCertificates.Add(ctx, c)
}

// TestHangupDuringInventoryWrite: a device that hangs up while its certificate is
// being recorded in an inventory of its own does not cut the write: the write ends
// as it would have (recorded), as finishRecord's do. Before, it ran under the
// request's context: "context canceled", a certificate withheld, and sometimes in the
// inventory all the same (the write had reached PostgreSQL), so that the operator
// could not tell which revocation it needed.
func TestHangupDuringInventoryWrite(t *testing.T) {
	env := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	certs := &hangupCerts{hangup: cancel}
	env.RP.Certificates = certs
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	res, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "alice", CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch})
	require.NoError(t, err)
	_, err = certs.Lookup(context.Background(), res.Certificate.SerialNumber)
	require.NoError(t, err, "recorded")
}
