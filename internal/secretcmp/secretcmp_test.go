package secretcmp

import (
	"crypto/subtle"
	"testing"
)

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

// BenchmarkEqual: the cost of Equal on an admin-token-sized secret, next to the floor
// it replaces (subtle.ConstantTimeCompare of the raw bytes), for a guess of the right
// length and one of another length. The floor answers a guess of another length at
// once (which is the leak); Equal's time does not depend on whether the length is
// right, only, through hashing, on the guess's own length (here both guesses fit in
// one SHA-256 block), which the caller knows anyway.
func BenchmarkEqual(b *testing.B) {
	secret := []byte("s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t")
	sameLength := append([]byte("X"), secret[1:]...)
	shorter := secret[:8]
	for _, guess := range []struct {
		name string
		b    []byte
	}{{"same length", sameLength}, {"shorter", shorter}} {
		b.Run("floor subtle.ConstantTimeCompare/"+guess.name, func(b *testing.B) {
			for b.Loop() {
				subtle.ConstantTimeCompare(guess.b, secret)
			}
		})
		b.Run("Equal/"+guess.name, func(b *testing.B) {
			for b.Loop() {
				Equal(guess.b, secret)
			}
		})
	}
}
