package crp_test

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

func TestMemoryTransactions(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	m := &crp.MemoryTransactions{Now: func() time.Time { return now }}
	ctx := context.Background()
	_, err := m.Get(ctx, "nope")
	require.ErrorIs(t, err, crp.ErrNotFound)
	require.NoError(t, m.Put(ctx, &crp.Record{TransactionID: "a", Status: scep.Pending, Expires: now.Add(time.Hour)}))
	r, err := m.Get(ctx, "a")
	require.NoError(t, err)
	require.Equal(t, scep.Pending, r.Status)
	r.Status = scep.Success // a copy: the store is not changed
	r2, _ := m.Get(ctx, "a")
	require.Equal(t, scep.Pending, r2.Status)
	now = now.Add(2 * time.Hour)
	_, err = m.Get(ctx, "a")
	require.True(t, errors.Is(err, crp.ErrNotFound), "expired records are not returned")
	for i := 0; i < 5000; i++ { // sweeps happen along the way
		require.NoError(t, m.Put(ctx, &crp.Record{TransactionID: fmt.Sprint(i), Expires: now.Add(time.Minute)}))
	}
	_, err = m.Get(ctx, "4999")
	require.NoError(t, err)
}

func TestMemoryCertificatesAndDirectory(t *testing.T) {
	ctx := context.Background()
	var c crp.MemoryCertificates
	_, err := c.Lookup(ctx, big.NewInt(1))
	require.ErrorIs(t, err, crp.ErrNotFound)
	var d crp.MemoryDirectory
	_, err = d.LookupUser(ctx, "x")
	require.ErrorIs(t, err, crp.ErrNotFound)
	var r crp.MemoryRegistry
	_, err = r.LookupDevice(ctx, "x")
	require.ErrorIs(t, err, crp.ErrNotFound)
	_, err = crp.MemoryProfiles{}.LookupProfile(ctx, "x")
	require.ErrorIs(t, err, crp.ErrNotFound)
}
