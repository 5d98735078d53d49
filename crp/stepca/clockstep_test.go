package stepca_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/challenge"
)

// TestHandlerReplayAfterClockStep: a webhook body is accepted once. Its claim in the
// replay store lasted exactly as long as its timestamp is accepted (MaxSkew): after
// the handler's clock stepped forward two hours, requests meanwhile swept it, and
// once the clock stepped back the same body, within MaxSkew again, was answered a
// second time. The claim now carries challenge.ClaimMargin, as a challenge's does.
func TestHandlerReplayAfterClockStep(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	start := time.Now()
	now := start
	f.h.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	set := func(t time.Time) { mu.Lock(); now = t; mu.Unlock() }
	store := &challenge.MemoryReplayStore{Now: f.h.Now}
	f.h.Replay = store

	ch, _, err := f.env.Challenge("bob@example.com", "bob-phone", 0)
	require.NoError(t, err)
	body := challengeBody(t, newCSR(t, "bob@example.com", ch), ch, "tx-once", start)
	status, resp := post(t, f.srv.URL+"/challenge", body, signed(challengeSecret, body))
	require.Equal(t, http.StatusOK, status)
	require.True(t, resp.Allow, "%+v", resp.Error)

	set(start.Add(2 * time.Hour))
	for i := range 64 * 32 * 4 {
		require.NoError(t, store.Claim(context.Background(), fmt.Sprint("other-", i), start.Add(3*time.Hour)))
	}
	set(start.Add(30 * time.Second))
	status, _ = post(t, f.srv.URL+"/challenge", body, signed(challengeSecret, body))
	require.Equal(t, http.StatusConflict, status, "the same body a second time")
}
