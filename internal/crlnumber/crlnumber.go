// Package crlnumber numbers CRLs so that the number grows from one CRL of a CA to the
// next (RFC 5280 section 5.2.3), across restarts too, without keeping state: the
// signing time in microseconds since 1970, or one more than the last number when that
// is not smaller (CRLs signed within one microsecond, a clock stepped back). Signers
// of one CA on machines whose clocks are synchronised grow together. The number fits
// in 8 octets, far below the 20-octet limit.
package crlnumber

import (
	"math/big"
	"time"
)

// Next is the number of a CRL signed at now, after one numbered last (nil: none).
func Next(now time.Time, last *big.Int) *big.Int {
	num := big.NewInt(now.UnixMicro())
	if last != nil && num.Cmp(last) <= 0 {
		num.Add(last, big.NewInt(1))
	}
	return num
}
