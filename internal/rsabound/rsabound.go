// Package rsabound holds the one bound on RSA public keys a requester or a peer
// chooses, which scep and catemplate both apply before any operation with such a key.
package rsabound

import "crypto/rsa"

// MaxBits is the largest RSA modulus accepted, as crypto/tls bounds it: an RSA
// operation's cost grows with the square of the modulus.
const MaxBits = 8192

// OK reports whether k has an odd modulus of at most MaxBits and an exponent crypto/rsa
// accepts (odd, 3 to 2^31-1): crypto/rsa refuses an even modulus or exponent in every
// operation, so such a key is refused here too, as an algorithm the server does not
// take, not as a signature that failed.
func OK(k *rsa.PublicKey) bool {
	return k != nil && k.N != nil && k.N.Bit(0) == 1 && k.N.BitLen() <= MaxBits &&
		k.E >= 3 && k.E&1 == 1 && int64(k.E) <= 1<<31-1
}
