package boltstore_test

// A process writing to the store under concurrent load is killed with SIGKILL at a
// random moment, several times in a row on the same file: the file opens cleanly
// each time, and every write the process saw succeed (and reported, after the call
// returned) is there: claims still refuse a replay, pending requests are still
// pending, certificates are in the inventory.

import (
	"bufio"
	"context"
	"fmt"
	"math/big"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/boltstore"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/storetest"
	"github.com/scepkit/scepkit/scep"
)

const crashEnv = "BOLTSTORE_CRASH_CHILD"

func TestCrash(t *testing.T) {
	if path := os.Getenv(crashEnv); path != "" {
		crashChild(t, path, os.Getenv("BOLTSTORE_CRASH_ROUND"))
		return
	}
	if testing.Short() {
		t.Skip("kills child processes")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	acked := map[string][]string{} // kind -> ids
	for round := 0; round < 5; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrash$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+path, fmt.Sprint("BOLTSTORE_CRASH_ROUND=", round))
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		lines := bufio.NewScanner(out)
		// Wait until the child writes, then kill it at a random moment.
		require.True(t, lines.Scan(), "the child wrote nothing")
		// Sometimes before the first checkpoint (the journal alone holds the writes),
		// sometimes after one or during one (a second, or 256 KiB of journal).
		time.Sleep(time.Duration(50+rand.IntN(1500)) * time.Millisecond)
		require.NoError(t, cmd.Process.Kill()) // our own child, by its pid
		n := 0
		for ok := true; ok; ok = lines.Scan() {
			if kind, id, found := strings.Cut(lines.Text(), " "); found {
				acked[kind] = append(acked[kind], id)
				n++
			}
		}
		cmd.Wait()
		t.Logf("round %d: killed after %d acknowledged writes", round, n)

		s, err := boltstore.Open(path, nil)
		require.NoError(t, err, "the store must open cleanly after SIGKILL")
		for _, id := range acked["claim"] {
			require.ErrorIs(t, s.Claim(ctx, id, time.Now().Add(time.Hour)), challenge.ErrReplayed, "claim %s lost", id)
		}
		pending := map[string]bool{}
		for after := ""; ; {
			page, err := s.Pending(ctx, after, crp.MaxListLimit)
			require.NoError(t, err)
			for _, r := range page {
				pending[r.TransactionID] = true
			}
			if len(page) < crp.MaxListLimit {
				break
			}
			after = page[len(page)-1].TransactionID
		}
		for _, id := range acked["pending"] {
			require.True(t, pending[id], "pending request %s lost", id)
		}
		for _, serial := range acked["cert"] {
			n, _ := new(big.Int).SetString(serial, 10)
			_, err := s.Lookup(ctx, n)
			require.NoError(t, err, "certificate %s lost", serial)
		}
		require.Empty(t, acked["readerr"], "reads failed under the writes")
		require.NoError(t, boltstore.Check(s), "the file's pages and freelist after SIGKILL")
		require.NoError(t, s.Close())
	}
	require.NotEmpty(t, acked["cert"], "the children never wrote: the test proves nothing")
}

// crashChild writes claims, pending records and certificates from 8 goroutines
// until it is killed, printing each after its call returned, while another goroutine
// lists certificates, revocations and pending requests.
func crashChild(t *testing.T, path, round string) {
	s, err := boltstore.Open(path, &boltstore.Options{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	ack := func(kind, id string) {
		mu.Lock()
		fmt.Fprintf(os.Stdout, "%s %s\n", kind, id) // unbuffered: one write each
		mu.Unlock()
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	// Reads alongside the writes: they run in the commit loop too.
	go func() {
		for {
			_, err := s.Certificates(ctx, crp.CertificateQuery{UserID: "u", Limit: 50})
			if err == nil {
				_, err = s.RevokedSince(ctx, time.Time{})
			}
			if err == nil {
				_, err = s.Pending(ctx, "", 20)
			}
			if err != nil {
				ack("readerr", strings.ReplaceAll(err.Error(), " ", "_"))
			}
		}
	}()
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id := fmt.Sprintf("r%s-g%d-%d", round, g, i)
				if s.Claim(ctx, id, time.Now().Add(time.Hour)) == nil {
					ack("claim", id)
				}
				if s.Put(ctx, &crp.Record{TransactionID: id, Status: scep.Pending, CSR: []byte(strings.Repeat(id, 200)),
					Expires: time.Now().Add(time.Hour)}) == nil {
					ack("pending", id)
				}
				r := 0
				fmt.Sscan(round, &r)
				serial := int64(r)<<40 | int64(g)<<32 | int64(i+1)
				c := &crp.IssuedCertificate{Certificate: storetest.Certificate(t, serial, time.Now().Add(time.Hour)),
					UserID: "u", DeviceID: id}
				if s.Add(ctx, c) == nil {
					ack("cert", fmt.Sprint(serial))
				}
			}
		}()
	}
	wg.Wait()
}
