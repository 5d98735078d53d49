package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/internal/pgtest"
	"github.com/scepkit/scepkit/internal/redistest"
	"github.com/scepkit/scepkit/internal/scepclienttest"
)

// TestPostgresOutageWithRedisSignsNothing: with Redis for claims and records and
// PostgreSQL for the inventory, a PostgreSQL outage refuses enrollments before the CA
// signs, and gives their challenges back. Before, the claim in Redis succeeded, the CA
// signed, the inventory write failed and the certificate was withheld ("revoke it"):
// 913 signed certificates and as many spent challenges in an 11 s outage under load.
func TestPostgresOutageWithRedisSignsNothing(t *testing.T) {
	pg := pgtest.Start(t)
	rs := redistest.Start(t)
	f := newFixture(t)
	r := start(t, f.config(t, "", fmt.Sprintf("[redis]\naddr = %q\n[postgres]\ndsn = %q\n", rs.Addr, pg.NewDatabase(t))))
	out, err := scepclienttest.NewDevice(t).Enroll(r.base+"/scep", "alice@example.com", f.challenge(t, "alice@example.com", "alice-laptop"))
	require.NoError(t, err, out)

	pg.Stop()
	ch := f.challenge(t, "bob@example.com", "bob-phone")
	dev := scepclienttest.NewDevice(t)
	out, err = dev.Enroll(r.base+"/scep", "bob@example.com", ch)
	require.Error(t, err, "PostgreSQL is down: %s", out)
	require.NotContains(t, r.Logs(), "withheld", "the CA signed nothing it could not record")

	pg.Restart()
	require.Eventually(t, func() bool {
		out, err = scepclienttest.NewDevice(t).Enroll(r.base+"/scep", "bob@example.com", ch)
		return err == nil
	}, 30*time.Second, time.Second, "the challenge was given back: %s", out)
	r.stop(t)
}
