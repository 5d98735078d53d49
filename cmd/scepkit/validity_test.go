package main

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/scepkit/scepkit/internal/scepclienttest"
	"github.com/scepkit/scepkit/profile"
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

// TestCertValidityBoundIsProfiles: cert_validity's bound is profile.MaxValidityDays,
// the bound profile.Validate keeps, exactly (a day count held once, in package
// profile), with its message naming it in hours and days; the setting's doc (a struct
// tag, which cannot name the constant) names the same hours.
func TestCertValidityBoundIsProfiles(t *testing.T) {
	longest := time.Duration(profile.MaxValidityDays) * 24 * time.Hour
	for _, c := range []struct {
		setting time.Duration
		err     string
	}{
		{longest, ""},
		{longest + time.Second, fmt.Sprintf("setting cert_validity (SCEPKIT_CERT_VALIDITY): at most %dh (%d days, the longest validity a profile may carry)",
			profile.MaxValidityDays*24, profile.MaxValidityDays)},
	} {
		t.Run(c.setting.String(), func(t *testing.T) {
			f := newFixture(t)
			_, err := loadConfig(f.config(t, fmt.Sprintf("cert_validity = %q\n", c.setting), ""),
				func(string) (string, bool) { return "", false })
			if c.err == "" {
				require.NoError(t, err)
				return
			}
			require.EqualError(t, err, c.err)
		})
	}
	p := &profile.Profile{Validity: profile.ValidityPeriod{Value: profile.MaxValidityDays + 1, Unit: profile.Days}}
	require.ErrorContains(t, p.Validate(), fmt.Sprintf("at most %d months (%d days, 2 years)", profile.MaxValidityMonths, profile.MaxValidityDays))
	field, ok := reflect.TypeFor[config]().FieldByName("CertValidity")
	require.True(t, ok)
	require.Contains(t, field.Tag.Get("doc"), fmt.Sprintf("at most %dh (%d days", profile.MaxValidityDays*24, profile.MaxValidityDays))
}
