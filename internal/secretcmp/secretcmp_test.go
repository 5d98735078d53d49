package secretcmp

import "testing"

// TestEqual: the secret itself is accepted; wrong guesses of the same length, shorter
// (a prefix, empty) and longer (an extension) are refused, as strings and as bytes.
func TestEqual(t *testing.T) {
	const secret = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t"
	for _, tc := range []struct {
		name, got string
		want      bool
	}{
		{"the secret", secret, true},
		{"same length, last byte differs", secret[:len(secret)-1] + "X", false},
		{"same length, first byte differs", "X" + secret[1:], false},
		{"a prefix", secret[:len(secret)-1], false},
		{"empty", "", false},
		{"an extension", secret + "-", false},
		{"much longer", secret + secret + secret, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Equal(tc.got, secret); got != tc.want {
				t.Errorf("Equal(%q, secret) = %v, want %v", tc.got, got, tc.want)
			}
			if got := Equal([]byte(tc.got), []byte(secret)); got != tc.want {
				t.Errorf("Equal([]byte(%q), secret) = %v, want %v", tc.got, got, tc.want)
			}
		})
	}
	if !Equal("", "") {
		t.Error(`Equal("", "") = false`)
	}
}
