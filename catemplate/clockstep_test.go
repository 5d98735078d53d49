package catemplate

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestFreshCABackdated: a CA and RA made on a gateway's first start are backdated as
// far as a template may backdate (an hour), as certificates and CRLs are for
// relying parties whose clocks are behind. They were backdated a minute: for the first
// minutes of the CA's life every certificate's NotBefore was clamped to the CA's
// (the template's five minutes cut to one), so a device a few minutes behind held a
// certificate, a CA and an RA not yet valid by its clock; and a gateway whose clock
// stepped back more than a minute after making its CA (an NTP correction of a clock
// that ran ahead at first start) refused every enrollment as ErrCAExpired until the
// clock caught up.
func TestFreshCABackdated(t *testing.T) {
	keys(t)
	r := render(t)
	csr := makeCSR(t, r, rsa2048)
	ca := testCA(t, 0) // made at testNow
	ra, err := NewRA(ca, RAOptions{})
	require.NoError(t, err)
	for _, c := range []struct {
		name string
		at   time.Duration // issuance, from the CA's making
	}{
		{"a minute after the CA was made", time.Minute},
		{"at the CA's making", 0},
		{"clock stepped back 10 min after making the CA", -10 * time.Minute},
		{"clock stepped back 55 min after making the CA", -55 * time.Minute},
	} {
		t.Run(c.name, func(t *testing.T) {
			tp := clientTemplate()
			tp.Backdate = 5 * time.Minute
			now := testNow.Add(c.at)
			tmpl, err := Apply(tp, csr, r, ca.Certificate, now, nil)
			require.NoError(t, err)
			require.Equal(t, now.Add(-5*time.Minute), tmpl.NotBefore, "the template's backdate is not cut short")
			for _, cert := range []*struct {
				name string
				nb   time.Time
			}{{"CA", ca.Certificate.NotBefore},
				{"RA signing", ra.SigningCertificate.NotBefore}, {"RA encryption", ra.EncryptionCertificate.NotBefore}} {
				require.False(t, cert.nb.After(tmpl.NotBefore), "%s valid wherever the certificate is", cert.name)
			}
		})
	}
	_, err = Apply(clientTemplate(), csr, r, ca.Certificate, testNow.Add(-61*time.Minute), nil)
	require.ErrorIs(t, err, ErrCAExpired, "before the CA's backdated NotBefore")
}
