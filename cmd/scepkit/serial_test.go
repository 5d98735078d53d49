package main

import (
	"math/big"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestParseSerial: the admin API and scepkit admin take a serial as tools print it,
// colons between the octets included (openssl x509 -text); before, "0a:3f" was 400.
func TestParseSerial(t *testing.T) {
	cases := []struct {
		in   string
		want int64 // 0: refused
	}{
		{"0a3f", 0x0a3f},
		{"a3f", 0x0a3f},
		{"0x0A3F", 0x0a3f},
		{"0a:3f", 0x0a3f},
		{"0A:3F", 0x0a3f},
		{"a:3f", 0x0a3f},
		{"0a3:f", 0},
		{"0a::3f", 0},
		{"0a:3f:", 0},
		{":0a", 0},
		{"0", 0},
		{"-1", 0},
		{"zz", 0},
		{"", 0},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			n, ok := parseSerial(tc.in)
			if tc.want == 0 {
				require.False(t, ok, "%v", n)
				return
			}
			require.True(t, ok)
			require.Equal(t, 0, n.Cmp(big.NewInt(tc.want)))
		})
	}
	_, ok := parseSerial("01:" + "00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00")
	require.False(t, ok, "more than 20 octets")
}
