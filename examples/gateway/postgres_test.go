package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/examples/internal/exectest"
	"github.com/scepkit/scepkit/internal/pgtest"
	"github.com/scepkit/scepkit/scep"
)

// TestGatewaysSideBySidePostgres: two gateway processes share a state directory (CA
// and RA) and a PostgreSQL database (-postgres): a challenge used at one is refused at
// the other, one renews what the other issued; after both stop, a restarted gateway
// still refuses the challenge as replayed (phase 2).
func TestGatewaysSideBySidePostgres(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.NewDatabase(t)
	bin, args, fp, ch := sideBySide(t, "-postgres", dsn)

	c := exectest.Start(t, bin, args...)
	_, _, err := enroll(t, &scep.Client{URL: c.Base + "/scep", CAFingerprint: fp}, "alice@example.com", ch)
	requireFailure(t, err, scep.BadRequest)
	require.Eventually(t, func() bool { return strings.Contains(c.Stderr.String(), "challenge already used") },
		5*time.Second, 20*time.Millisecond)
	c.Stop(t)

	// An unreachable database is refused at start.
	srv.Stop()
	_, stderr, code := exectest.Run(t, bin, args...)
	require.NotEqual(t, 0, code)
	require.Contains(t, stderr, "-postgres")
}
