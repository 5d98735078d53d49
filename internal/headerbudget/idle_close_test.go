package headerbudget

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestIdleBeyondBoundAnnounced: while MaxIdle connections are idle, an answer says
// "Connection: close", so that a client does not send its next request on a
// connection about to be closed (Go's client, for one, does not retry a POST that
// met a closed connection). Before, the connection was closed as it went idle
// without a word.
func TestIdleBeyondBoundAnnounced(t *testing.T) {
	b := &Budget{MaxIdle: 1}
	addr := serve(t, b)
	c, r := dial(t, addr)
	require.Equal(t, http.StatusOK, get(t, c, r, 0))
	require.Eventually(t, func() bool { return b.idle.Load() == 1 }, time.Second*5, time.Millisecond*10)

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr}
	for i := range 3 {
		resp, err := cl.Post("http://"+addr+"/", "text/plain", strings.NewReader("x"))
		require.NoError(t, err, "POST %d", i)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.True(t, resp.Close, "the answer says the connection closes")
	}
}
