package profile

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSIDVariableInDeviceCertificates: {{OnPremisesSecurityIdentifier}} renders the
// user's SID in a user certificate and the device's in a device certificate, as
// Intune does for hybrid-joined Windows devices whose SID is synced from on-premises
// Active Directory. Before, it was a user variable, refused in device certificates.
func TestSIDVariableInDeviceCertificates(t *testing.T) {
	d := testDevice()
	d.OnPremSecurityIdentifier = "S-1-5-21-1-2-3-5001"
	for _, c := range []struct {
		ct     CertificateType
		device Device
		want   string
		err    error
	}{
		{UserCertificate, d, sidURIPrefix + "S-1-5-21-1-2-3-1001", nil},
		{DeviceCertificate, d, sidURIPrefix + "S-1-5-21-1-2-3-5001", nil},
		{DeviceCertificate, testDevice(), "", ErrEmptyVariable}, // not hybrid-joined
	} {
		t.Run(c.ct.String(), func(t *testing.T) {
			p := testProfile()
			p.CertificateType = c.ct
			p.SubjectNameFormat = "CN={{DeviceName}}"
			p.SubjectAlternativeNames = []SAN{{Type: SANURI, Value: "{{OnPremisesSecurityIdentifier}}"}}
			require.NoError(t, p.Validate())
			r, err := Render(p, testUser(), c.device, nil)
			if c.err != nil {
				require.True(t, errors.Is(err, c.err), "%v", err)
				return
			}
			require.NoError(t, err)
			require.Len(t, r.URIs, 1)
			require.Equal(t, c.want, r.URIs[0].String())
		})
	}
}
