package main

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/scepkit/scepkit/profile"
	"github.com/stretchr/testify/require"
)

// TestFormatsPerPlatform: a .mobileconfig is for Apple platforms only and SyncML for
// Windows only, but JSON, which carries a profile for an MDM that renders its own
// payloads (profile.JSONProfile, profile.JSONBundle), is served for every platform,
// the one asked for.
func TestFormatsPerPlatform(t *testing.T) {
	w := newWorld(t)
	for _, tc := range []struct {
		format, platform string
		want             int
	}{
		{"json", "windows", http.StatusOK},
		{"json", "ios", http.StatusOK},
		{"json", "macos", http.StatusOK},
		{"mobileconfig", "ios", http.StatusOK},
		{"mobileconfig", "macos", http.StatusOK},
		{"mobileconfig", "windows", http.StatusBadRequest},
		{"syncml", "windows", http.StatusOK},
		{"syncml", "ios", http.StatusBadRequest},
		{"syncml", "macos", http.StatusBadRequest},
		{"json", "android", http.StatusBadRequest},
	} {
		for _, endpoint := range []string{"/profile", "/bundle"} {
			q := endpoint + "?user=alice@example.com&device=alice-laptop&format=" + tc.format + "&platform=" + tc.platform
			code, _, body := get(t, w.mdm.URL+q)
			require.Equal(t, tc.want, code, "%s: %s", q, body)
			if code != http.StatusOK || tc.format != "json" {
				continue
			}
			var p *profile.JSONProfile
			if endpoint == "/profile" {
				require.NoError(t, json.Unmarshal(body, &p))
			} else {
				var b profile.JSONBundle
				require.NoError(t, json.Unmarshal(body, &b))
				p = b.SCEP.Profile
			}
			require.Equal(t, tc.platform, p.Platform, q)
			require.NotEmpty(t, p.Challenge, q)
		}
	}
}
