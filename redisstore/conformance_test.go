package redisstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/scep"

	"github.com/scepkit/scepkit/crp/storetest"
	"github.com/scepkit/scepkit/internal/redistest"
	"github.com/scepkit/scepkit/redisstore"
)

// The Redis store keeps claims, transaction records and the pending index; the
// suite's other parts do not apply.
func TestConformance(t *testing.T) {
	srv := redistest.Start(t)
	n := 0
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		n++ // a prefix of its own per case: a fresh, empty store
		s := &redisstore.Store{Client: srv.Client(t), Prefix: fmt.Sprintf("conf%d:", n)}
		return storetest.Backend{Claims: s, Transactions: s, Pending: s}
	})
}

// TestCreateOverRecordExpiredByItsClock: a record Redis still holds (its TTL was set
// by a writer whose clock is behind) but whose Expires this Store's clock has passed
// counts as none, as Get says: Create replaces it. A live one it does not.
func TestCreateOverRecordExpiredByItsClock(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	c := srv.Client(t)
	behind := &redisstore.Store{Client: c}
	ahead := &redisstore.Store{Client: c, Now: func() time.Time { return time.Now().Add(2 * time.Hour) }}
	require.NoError(t, behind.Put(ctx, &crp.Record{TransactionID: "tx", Status: scep.Pending, UserID: "alice",
		Expires: time.Now().Add(time.Hour)}))
	err := behind.Create(ctx, &crp.Record{TransactionID: "tx", Status: scep.Pending, UserID: "bob",
		Expires: time.Now().Add(time.Hour)})
	require.ErrorIs(t, err, crp.ErrRecordExists, "a live record")
	_, err = ahead.Get(ctx, "tx")
	require.ErrorIs(t, err, crp.ErrNotFound, "expired by the clock ahead")
	require.NoError(t, ahead.Create(ctx, &crp.Record{TransactionID: "tx", Status: scep.Pending, UserID: "carol",
		Expires: time.Now().Add(3 * time.Hour)}))
	got, err := behind.Get(ctx, "tx")
	require.NoError(t, err)
	require.Equal(t, "carol", got.UserID)
}
