package rollover

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"
	"time"
)

func TestCheckValidity(t *testing.T) {
	base := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	cert := &x509.Certificate{Subject: pkix.Name{CommonName: "next RA"}, NotBefore: base, NotAfter: base.Add(24 * time.Hour)}
	for _, tc := range []struct {
		name    string
		at, now time.Time
		ok      bool
	}{
		{"valid at the switch", base.Add(time.Hour), base.Add(-time.Hour), true},
		{"not yet valid at the switch", base.Add(-time.Minute), base.Add(-time.Hour), false},
		{"expired at the switch", base.Add(25 * time.Hour), base, false},
		{"switch past, valid now", base.Add(-time.Hour), base.Add(time.Hour), true},
		{"switch past, expired now", base.Add(time.Hour), base.Add(25 * time.Hour), false},
	} {
		err := CheckValidity("scep", tc.at, tc.now, nil, cert)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
