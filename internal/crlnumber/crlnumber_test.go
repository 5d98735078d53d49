package crlnumber

import (
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestNext(t *testing.T) {
	now := time.Unix(1_800_000_000, 123_456_789)
	micro := big.NewInt(now.UnixMicro())
	for _, c := range []struct {
		name string
		last *big.Int
		want *big.Int
	}{
		{"first", nil, micro},
		{"after an older one", big.NewInt(5), micro},
		{"same microsecond", micro, new(big.Int).Add(micro, big.NewInt(1))},
		{"clock stepped back", big.NewInt(now.UnixMicro() + 1000), big.NewInt(now.UnixMicro() + 1001)},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Next(now, c.last)
			require.Zero(t, c.want.Cmp(got), "got %v", got)
			require.LessOrEqual(t, got.BitLen(), 159)
		})
	}
	last := big.NewInt(7)
	Next(now, last)
	require.EqualValues(t, 7, last.Int64(), "last is not changed")
}
