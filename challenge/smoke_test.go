package challenge

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRoundTrip(t *testing.T) {
	iss := testIssuer(edKey)
	ch, c, err := iss.Issue(stdRequest)
	require.NoError(t, err)
	t.Logf("len=%d %s", len(ch), ch)
	v := testVerifier(t, edKey)
	v.Replay = new(MemoryReplayStore)
	got, err := v.Verify(context.Background(), ch)
	require.NoError(t, err)
	require.Equal(t, c, got)
	_, err = v.Verify(context.Background(), ch)
	requireOnly(t, err, ErrReplayed)
}
