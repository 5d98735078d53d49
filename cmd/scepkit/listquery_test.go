package main

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAdminListQueryStrict: a list call's query is read strictly. Before, a pair that
// did not parse was dropped, with its filter: withheld=%zz or withheld=true; listed
// every certificate with 200 (to an operator revoking what the list holds), as did a
// misspelt parameter; a parameter given twice took its first value.
func TestAdminListQueryStrict(t *testing.T) {
	p := startInProcess(t, newFixture(t), "", "")
	p.addIssued(t, 2, "alice@example.com", "alice-laptop")
	p.addIssuedAs(t, 1, "bob@example.com", "bob-phone", true)
	for _, tc := range []struct {
		query string
		ok    bool
	}{
		{"withheld=true", true},
		{"user=alice@example.com&expiring_within=720h", true},
		{"withheld=%zz", false},
		{"withheld=true;", false},
		{"user=bob@example.com;x=1", false},
		{"expiring_within=1ns;", false},
		{"expiring-within=1ns", false},
		{"withheld=true&withheld=false", false},
		{"user=alice@example.com&user=bob@example.com", false},
		{"after=1-1&after=2-2", false},
	} {
		t.Run(tc.query, func(t *testing.T) {
			code, body := p.call(t, http.MethodGet, "/v1/certificates?"+tc.query, nil)
			if tc.ok {
				require.Equal(t, http.StatusOK, code, body)
				return
			}
			require.Equal(t, http.StatusBadRequest, code, body)
			require.NotContains(t, body, "serial", "no certificate listed")
		})
	}
	code, body := p.call(t, http.MethodGet, "/v1/pending?after=x&after=y", nil)
	require.Equal(t, http.StatusBadRequest, code, body)
	code, body = p.call(t, http.MethodGet, "/v1/pending?befor=x", nil)
	require.Equal(t, http.StatusBadRequest, code, body)
}
