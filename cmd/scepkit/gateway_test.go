package main

import (
	"context"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/profile"
	"github.com/stretchr/testify/require"
)

// TestProfilesFollowRollover: the built-in profiles name as their root CA the CA that
// issues when they are looked up: the current one before a rollover's switch, the
// next one from it on (the certificates issued then chain to it).
func TestProfilesFollowRollover(t *testing.T) {
	f := newFixture(t)
	save := func(dir, name string) *catemplate.CA {
		ca, err := catemplate.NewCA(catemplate.CAOptions{KeyType: profile.ECDSAP256, Subject: pkix.Name{CommonName: name}})
		require.NoError(t, err)
		ra, err := catemplate.NewRA(ca, catemplate.RAOptions{Subject: pkix.Name{CommonName: name + " RA"}})
		require.NoError(t, err)
		require.NoError(t, os.MkdirAll(dir, 0o700))
		require.NoError(t, catemplate.SaveCA(dir, ca))
		require.NoError(t, catemplate.SaveRA(dir, ra))
		return ca
	}
	current, next := save(f.path("state"), "current CA"), save(f.path("next"), "next CA")
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	cfg := f.config(t, "public_url = \"http://127.0.0.1:8080\"\n",
		fmt.Sprintf("\n[rollover]\nat = %q\ndir = %q\n", at.Format(time.RFC3339), f.path("next")))
	c, err := loadConfig(cfg, func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	g, err := newGateway(context.Background(), c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	defer g.close()

	for _, tc := range []struct {
		name string
		now  time.Time
		want *catemplate.CA
	}{
		{"before the switch", at.Add(-time.Second), current},
		{"at the switch", at, next},
		{"after the switch", at.Add(time.Hour), next},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g.rp.Now = func() time.Time { return tc.now }
			p, err := g.rp.Profiles.LookupProfile(context.Background(), "win")
			require.NoError(t, err)
			require.True(t, p.RootCA.Equal(tc.want.Certificate), "root CA %q", p.RootCA.Subject)
		})
	}
}
