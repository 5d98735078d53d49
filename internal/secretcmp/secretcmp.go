// Package secretcmp compares a secret a caller presented with the one expected.
//
// [crypto/subtle.ConstantTimeCompare] returns at once when the lengths differ, so a
// caller timing the answers to guesses of every length learns the secret's length.
// Equal compares SHA-256 digests instead: both are 32 bytes whatever was presented,
// and the comparison of the digests takes the same time for every guess.
package secretcmp

import (
	"crypto/sha256"
	"crypto/subtle"
)

// Equal reports whether got and want are equal. Its time depends on the lengths of
// got and want (each is hashed once) but not on their contents, and not on whether
// their lengths are equal: a wrong guess of the right length and one of another
// length are refused alike.
func Equal[T ~string | ~[]byte](got, want T) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}
