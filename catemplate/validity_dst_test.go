package catemplate

import (
	"testing"
	"time"
	_ "time/tzdata" // Europe/Berlin on a host without zone files

	"github.com/scepkit/scepkit/profile"
	"github.com/stretchr/testify/require"
)

// TestProfileValidityInUTC: a profile's validity in days ends in whole UTC days,
// whatever the process's time zone: a clock in Europe/Berlin across the change to
// summer time made 100 days last 2399 hours, shorter than a template of 2400 hours
// (100 days), which the profile then cut by an hour.
func TestProfileValidityInUTC(t *testing.T) {
	keys(t)
	berlin, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, berlin) // 100 days span the end of March
	ca := testCA(t, 10*365*24*time.Hour)
	p := userProfile()
	p.Validity = profile.ValidityPeriod{Value: 100, Unit: profile.Days}
	r, err := profile.Render(p, profile.User{UserPrincipalName: "jane@contoso.com", Email: "jane@contoso.com"},
		profile.Device{ID: "dev-1", Name: "laptop"}, nil)
	require.NoError(t, err)
	tp := clientTemplate()
	tp.Validity = 2400 * time.Hour
	tmpl, err := Apply(tp, makeCSR(t, r, rsa2048), r, ca.Certificate, now, nil)
	require.NoError(t, err)
	require.Equal(t, now.Add(2400*time.Hour).UTC(), tmpl.NotAfter.UTC())
}
