// Package rollover holds what packages scep and crp check alike about a CA and RA
// rollover (RFC 8894 §3.5.2).
package rollover

import (
	"crypto/x509"
	"fmt"
	"time"
)

// CheckValidity reports the first of certs (nil ones skipped) that is not valid at
// the switch at, or at now when that is later (a switch already past): a rollover
// must not switch to certificates that cannot serve. pkg prefixes the error ("scep",
// "crp").
func CheckValidity(pkg string, at, now time.Time, certs ...*x509.Certificate) error {
	when := at
	if now.After(when) {
		when = now
	}
	for _, c := range certs {
		if c != nil && (when.Before(c.NotBefore) || when.After(c.NotAfter)) {
			return fmt.Errorf("%s: Rollover certificate %q is not valid at the rollover (%s): valid %s to %s", pkg,
				c.Subject.String(), when.UTC().Format(time.RFC3339), c.NotBefore.UTC().Format(time.RFC3339),
				c.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	return nil
}
