package redistest

import (
	"context"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRestartPortTakenMeanwhile: while a server is down (Kill), another test's
// redis-server takes its port (go test ./... runs packages side by side, each
// starting servers on ports free a moment ago). Restart must not take that server's
// PONG for its own: ours cannot bind and exits, and a test would go on against the
// other, empty server, its data (kept in the AOF) gone. It did: TestRedisOutageUnderLoad
// failed once in a full run with "challenge 0 has a certificate but no claim".
func TestRestartPortTakenMeanwhile(t *testing.T) {
	ctx := context.Background()
	s := StartWith(t, Options{Durable: true})
	c := s.Client(t)
	require.NoError(t, c.Set(ctx, "k", "v", 0).Err())
	s.Kill()

	other := exec.Command(s.bin, "--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", t.TempDir(), "--loglevel", "warning")
	require.NoError(t, other.Start())
	t.Cleanup(func() { other.Process.Kill(); other.Wait() })
	deadline := time.Now().Add(StartTimeout)
	for ping(s.Addr, other.Process.Pid) != nil {
		require.True(t, time.Now().Before(deadline), "the other redis-server did not come up")
		time.Sleep(20 * time.Millisecond)
	}

	err := s.srv.Start()
	require.Error(t, err, "restarted against another server (the key is there: %d)", c.Exists(ctx, "k").Val())
	require.False(t, s.Running())
}
