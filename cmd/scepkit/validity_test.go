package main

import (
	"testing"
	"time"

	"github.com/scepkit/scepkit/internal/scepclienttest"
	"github.com/stretchr/testify/require"
)

// TestCertValidityDecides: an issued certificate is valid for cert_validity, also
// beyond a year. Before, the built-in profiles carried one year and the shorter of
// profile and template won, so "9600h" gave one-year certificates without a word;
// longer than a profile may carry (730 days) is refused at start.
func TestCertValidityDecides(t *testing.T) {
	for _, c := range []struct {
		setting string
		want    time.Duration
	}{
		{"2h", 2 * time.Hour},
		{"9600h", 9600 * time.Hour}, // 400 days: more than the profiles carried, within the CA's life
	} {
		t.Run(c.setting, func(t *testing.T) {
			p := startInProcess(t, newFixture(t), "cert_validity = \""+c.setting+"\"\n", "")
			dev := scepclienttest.NewDevice(t)
			out, err := dev.Enroll(p.public.URL+"/scep", "bob@example.com", p.f.challenge(t, "bob@example.com", "bob-phone"))
			require.NoError(t, err, "%s", out)
			cert, err := dev.Certificate()
			require.NoError(t, err)
			require.WithinDuration(t, time.Now().Add(c.want), cert.NotAfter, 2*time.Minute)
		})
	}
}
