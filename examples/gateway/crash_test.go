package main

// A gateway under concurrent load is killed with SIGKILL at a random moment and
// restarted on the same state, several times in a row. Devices present fresh
// challenges, and again challenges presented before (with another key, as another
// device would, also across the kills): no challenge ever yields two certificates,
// every certificate a device received is in the inventory, and the store opens
// cleanly.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	mrand "math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/boltstore"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/examples/internal/exectest"
	"github.com/scepkit/scepkit/scep"
)

func TestCrashUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("kills gateway processes under load")
	}
	bin := exectest.Build(t, ".")
	dir := t.TempDir()
	state, jwks := filepath.Join(dir, "state"), filepath.Join(dir, "jwks.json")
	key := newMDMKey(t)
	writeJWKS(t, jwks, key)
	args := []string{"-listen", "127.0.0.1:0", "-state", state, "-identity", "gw.example", "-mdm-issuer", "mdm-t",
		"-jwks", jwks, "-directory", "../directory.json", "-log", "json"}
	keys := make([]*rsa.PrivateKey, 6)
	for i := range keys {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		require.NoError(t, err)
		keys[i] = k
	}
	users := [][2]string{{"alice@example.com", "alice-laptop"}, {"bob@example.com", "bob-phone"}}

	var mu sync.Mutex
	var challenges []string
	cnOf := map[string]string{}
	serials := map[string]map[string]bool{} // challenge -> serials received
	var received []*big.Int

	for round := 0; round < 4; round++ {
		gw := exectest.Start(t, bin, args...)
		client := &scep.Client{URL: gw.Base + "/scep", CAFingerprint: caSHA256(t, gw)}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := 0; w < 6; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					mu.Lock()
					var ch, cn string
					if len(challenges) > 0 && mrand.IntN(3) == 0 {
						ch = challenges[mrand.IntN(len(challenges))]
						cn = cnOf[ch]
					} else {
						u := users[mrand.IntN(len(users))]
						c, _, err := key.issuer.Issue(challenge.Request{UserID: u[0], DeviceID: u[1], ProfileID: "win",
							Audience: "gw.example"})
						if err != nil {
							mu.Unlock()
							t.Error(err)
							return
						}
						ch, cn = c, u[0]
						challenges = append(challenges, ch)
						cnOf[ch] = cn
					}
					mu.Unlock()
					k := keys[mrand.IntN(len(keys))]
					cert, err := enrollWith(ctx, client, k, cn, ch)
					if err != nil {
						continue // refused, or the gateway is gone
					}
					mu.Lock()
					if serials[ch] == nil {
						serials[ch] = map[string]bool{}
					}
					serials[ch][cert.SerialNumber.String()] = true
					received = append(received, cert.SerialNumber)
					mu.Unlock()
				}
			}()
		}
		time.Sleep(time.Duration(300+mrand.IntN(1200)) * time.Millisecond)
		require.NoError(t, gw.Cmd.Process.Kill()) // our own child, by its pid
		gw.Wait(t, 10*time.Second)
		cancel()
		wg.Wait()
		mu.Lock()
		t.Logf("round %d: killed; %d challenges so far, %d certificates received", round, len(challenges), len(received))
		mu.Unlock()
	}

	for ch, got := range serials {
		require.LessOrEqual(t, len(got), 1, "challenge %s… yielded %d certificates", ch[:12], len(got))
	}
	require.NotEmpty(t, received, "no device got a certificate: the test proves nothing")
	s, err := boltstore.Open(filepath.Join(state, boltstore.FileName), nil)
	require.NoError(t, err, "the store must open cleanly after the kills")
	defer s.Close()
	for _, serial := range received {
		_, err := s.Lookup(context.Background(), serial)
		require.NoError(t, err, "a certificate a device received is not in the inventory")
	}
}

// enrollWith enrolls cn with challenge ch and key k.
func enrollWith(ctx context.Context, c *scep.Client, k *rsa.PrivateKey, cn, ch string) (*x509.Certificate, error) {
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, k)
	if err != nil {
		return nil, err
	}
	if csr, err = scep.AddChallengePassword(csr, ch, k, nil); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return c.Enroll(ctx, csr, k)
}
