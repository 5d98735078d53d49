package redistest

import (
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPortHeldWhileDown: while the server is down (Kill), its port stays bound, so
// that no other test's server is given it and Restart finds it free; a client is
// refused as by a server that is down. Before, the port was free for the outage, and
// a full go test ./... once restarted against another package's redis-server.
func TestPortHeldWhileDown(t *testing.T) {
	s := StartWith(t, Options{Durable: true})
	s.Kill()

	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer syscall.Close(fd)
	err = syscall.Bind(fd, &syscall.SockaddrInet4{Port: s.Port, Addr: [4]byte{127, 0, 0, 1}})
	require.ErrorIs(t, err, syscall.EADDRINUSE, "the port of a server that is down is held")

	_, err = net.Dial("tcp", s.Addr)
	require.ErrorIs(t, err, syscall.ECONNREFUSED, "a client is refused, as by a server that is down")

	s.Restart()
	require.True(t, s.Running())
	require.NoError(t, s.Client(t).Ping(t.Context()).Err())
}
