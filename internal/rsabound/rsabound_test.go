package rsabound

import (
	"crypto/rsa"
	"math/big"
	"testing"
)

func TestOK(t *testing.T) {
	ones := func(bits uint) *big.Int {
		return new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), bits), big.NewInt(1))
	}
	for _, c := range []struct {
		name string
		k    *rsa.PublicKey
		want bool
	}{
		{"2048 bits, 65537", &rsa.PublicKey{N: ones(2048), E: 65537}, true},
		{"MaxBits", &rsa.PublicKey{N: ones(MaxBits), E: 3}, true},
		{"over MaxBits", &rsa.PublicKey{N: ones(MaxBits + 1), E: 65537}, false},
		{"exponent 2^31-1", &rsa.PublicKey{N: ones(2048), E: 1<<31 - 1}, true},
		{"exponent 2^31", &rsa.PublicKey{N: ones(2048), E: 1 << 31}, false},
		{"exponent 1", &rsa.PublicKey{N: ones(2048), E: 1}, false},
		{"even exponent", &rsa.PublicKey{N: ones(2048), E: 65536}, false},
		{"even modulus", &rsa.PublicKey{N: new(big.Int).Lsh(ones(2047), 1), E: 65537}, false},
		{"no modulus", &rsa.PublicKey{E: 65537}, false},
		{"nil", nil, false},
	} {
		if got := OK(c.k); got != c.want {
			t.Errorf("%s: OK = %v, want %v", c.name, got, c.want)
		}
	}
}
