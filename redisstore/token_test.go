package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/internal/redistest"
)

// A claim whose SET was applied but whose reply was lost is retried by go-redis; the
// retry finds its own token and succeeds instead of calling itself a replay.
func TestClaimRetryFindsOwnToken(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	s := &Store{Client: srv.Client(t)}
	key := s.key("claim:", "jti-1")
	require.NoError(t, s.claim(ctx, s.Client, key, "token-a", time.Minute))
	require.NoError(t, s.claim(ctx, s.Client, key, "token-a", time.Minute), "a retry of the same claim")
	require.ErrorIs(t, s.claim(ctx, s.Client, key, "token-b", time.Minute), challenge.ErrReplayed)
}

func TestKeyBoundsLongIDs(t *testing.T) {
	s := &Store{Prefix: "p:"}
	require.Equal(t, "p:tx:abc", s.key("tx:", "abc"))
	long := string(make([]byte, 10000))
	k := s.key("tx:", long)
	require.Less(t, len(k), 100)
	require.NotEqual(t, k, s.key("tx:", long+"x"))
	require.Equal(t, DefaultPrefix+"claim:x", (&Store{}).key("claim:", "x"))
}
