package redistest_test

import (
	"context"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/internal/redistest"
)

func TestStartStopRestart(t *testing.T) {
	ctx := context.Background()
	s := redistest.Start(t)
	require.NotZero(t, s.PID())
	c := s.Client(t)
	require.NoError(t, c.Set(ctx, "k", "v", 0).Err())
	require.Equal(t, "v", c.Get(ctx, "k").Val())

	// A killed server is gone (its pid no longer exists) and refuses connections.
	pid := s.PID()
	s.Kill()
	require.False(t, s.Running())
	require.Error(t, c.Ping(ctx).Err())
	p, _ := os.FindProcess(pid)
	require.Error(t, p.Signal(syscall.Signal(0)), "redis-server still alive after Kill")

	// Restarted on the same port, empty (persistence is off), and the same client
	// reconnects.
	s.Restart()
	require.NoError(t, c.Ping(ctx).Err())
	require.Equal(t, int64(0), c.Exists(ctx, "k").Val())

	s.Stop()
	s.Stop() // idempotent
	require.Zero(t, s.PID())
}

func TestTwoServersTwoPorts(t *testing.T) {
	a, b := redistest.Start(t), redistest.Start(t)
	require.NotEqual(t, a.Addr, b.Addr)
}

func TestDurableSurvivesKill(t *testing.T) {
	ctx := context.Background()
	s := redistest.StartWith(t, redistest.Options{Durable: true})
	c := s.Client(t)
	require.NoError(t, c.Set(ctx, "k", "v", 0).Err())
	s.Kill()
	s.Restart()
	require.Equal(t, "v", c.Get(ctx, "k").Val())
}
