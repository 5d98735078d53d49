package crptest_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp/crptest"
)

// TestDemoUsersNotShared: what one test does to the demo users it was handed reaches
// neither another test's Env nor what the next caller is handed.
func TestDemoUsersNotShared(t *testing.T) {
	mine := crptest.DemoUsers()
	for i := range mine {
		mine[i].Disabled = true
	}
	mine[0].UPN = "eve@example.com"

	env, err := crptest.New(crptest.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { env.Close() })
	cases := []struct {
		upn, device string
		disabled    bool
	}{
		{"alice@example.com", "alice-laptop", false},
		{"bob@example.com", "bob-phone", false},
		{"mallory@example.com", "mallory-tablet", true},
	}
	again := crptest.DemoUsers()
	require.Len(t, again, len(cases))
	for i, tc := range cases {
		t.Run(tc.upn, func(t *testing.T) {
			require.Equal(t, tc.upn, again[i].UPN)
			require.Equal(t, tc.device, again[i].Device)
			require.Equal(t, tc.disabled, again[i].Disabled)
			u, err := env.Users.LookupUser(context.Background(), tc.upn)
			require.NoError(t, err)
			require.Equal(t, tc.disabled, u.Disabled)
			d, err := env.Devices.LookupDevice(context.Background(), tc.device)
			require.NoError(t, err)
			require.Equal(t, tc.upn, d.UserID)
		})
	}
}
