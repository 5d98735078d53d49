package redisstore_test

// A transactionID over 128 bytes used to be stored under "sha256:<hex>", and a
// transactionID that is literally that text mapped to the same key: anyone could wipe
// (or read the answer of) another device's record by choosing that id. Hashed and
// literal ids now live in separate namespaces; claims likewise.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/scep"
)

func TestLongTransactionIDCannotBeShadowed(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	expires := time.Now().Add(time.Hour)
	long := strings.Repeat("d", 200) // another device's transactionID
	require.NoError(t, s.Put(ctx, &crp.Record{TransactionID: long, Status: scep.Pending, Expires: expires,
		UserID: "alice@example.com"}))
	sum := sha256.Sum256([]byte(long))
	shadow := "sha256:" + hex.EncodeToString(sum[:]) // 71 bytes: stored as is
	_, err := s.Get(ctx, shadow)
	require.ErrorIs(t, err, crp.ErrNotFound, "the literal id reads nothing of the other device's record")
	require.NoError(t, s.Put(ctx, &crp.Record{TransactionID: shadow, Status: scep.Failure, Expires: expires,
		UserID: "mallory@example.com"}))
	got, err := s.Get(ctx, long)
	require.NoError(t, err)
	require.Equal(t, long, got.TransactionID, "the other device's record was overwritten")
	require.Equal(t, scep.Pending, got.Status)
	require.Equal(t, "alice@example.com", got.UserID)

	// Claims: a long id claimed, the literal form of its hash is another id.
	require.NoError(t, s.Claim(ctx, long, expires))
	require.NoError(t, s.Claim(ctx, shadow, expires))
}
