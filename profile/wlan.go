package profile

import (
	"encoding/hex"
	"encoding/xml"
	"strings"
)

// XML namespaces of the Windows WLAN profile and of the EAP configuration inside it.
const (
	nsWLAN    = "http://www.microsoft.com/networking/WLAN/profile/v1"
	nsOneX    = "http://www.microsoft.com/networking/OneX/v1"
	nsEapHost = "http://www.microsoft.com/provisioning/EapHostConfig"
	nsEapComm = "http://www.microsoft.com/provisioning/EapCommon"
	nsBaseEap = "http://www.microsoft.com/provisioning/BaseEapConnectionPropertiesV1"
	nsTLSv1   = "http://www.microsoft.com/provisioning/EapTlsConnectionPropertiesV1"
	nsTLSv2   = "http://www.microsoft.com/provisioning/EapTlsConnectionPropertiesV2"
	nsTLSv3   = "http://www.microsoft.com/provisioning/EapTlsConnectionPropertiesV3"
)

type wlanProfile struct {
	XMLName    xml.Name `xml:"http://www.microsoft.com/networking/WLAN/profile/v1 WLANProfile"`
	Name       string   `xml:"name"`
	SSIDConfig struct {
		SSID struct {
			Hex  string `xml:"hex"`
			Name string `xml:"name"`
		} `xml:"SSID"`
		NonBroadcast bool `xml:"nonBroadcast"`
	} `xml:"SSIDConfig"`
	ConnectionType string `xml:"connectionType"`
	ConnectionMode string `xml:"connectionMode"`
	MSM            struct {
		Security struct {
			AuthEncryption struct {
				Authentication string `xml:"authentication"`
				Encryption     string `xml:"encryption"`
				UseOneX        bool   `xml:"useOneX"`
			} `xml:"authEncryption"`
			OneX oneX `xml:"http://www.microsoft.com/networking/OneX/v1 OneX"`
		} `xml:"security"`
	} `xml:"MSM"`
}

type oneX struct {
	AuthMode  string `xml:"authMode"`
	EAPConfig struct {
		EapHostConfig eapHostConfig `xml:"http://www.microsoft.com/provisioning/EapHostConfig EapHostConfig"`
	} `xml:"EAPConfig"`
}

type eapHostConfig struct {
	EapMethod struct {
		Type       int `xml:"http://www.microsoft.com/provisioning/EapCommon Type"`
		VendorID   int `xml:"http://www.microsoft.com/provisioning/EapCommon VendorId"`
		VendorType int `xml:"http://www.microsoft.com/provisioning/EapCommon VendorType"`
		AuthorID   int `xml:"http://www.microsoft.com/provisioning/EapCommon AuthorId"`
	} `xml:"EapMethod"`
	Config struct {
		Eap struct {
			Type    int        `xml:"Type"`
			EapType eapTLSType `xml:"http://www.microsoft.com/provisioning/EapTlsConnectionPropertiesV1 EapType"`
		} `xml:"http://www.microsoft.com/provisioning/BaseEapConnectionPropertiesV1 Eap"`
	} `xml:"Config"`
}

type eapTLSType struct {
	CredentialsSource struct {
		CertificateStore struct {
			SimpleCertSelection bool `xml:"SimpleCertSelection"`
		} `xml:"CertificateStore"`
	} `xml:"CredentialsSource"`
	ServerValidation struct {
		DisableUserPromptForServerValidation bool   `xml:"DisableUserPromptForServerValidation"`
		ServerNames                          string `xml:"ServerNames"`
		TrustedRootCA                        string `xml:"TrustedRootCA"`
	} `xml:"ServerValidation"`
	DifferentUsername       bool `xml:"DifferentUsername"`
	PerformServerValidation bool `xml:"http://www.microsoft.com/provisioning/EapTlsConnectionPropertiesV2 PerformServerValidation"`
	AcceptServerName        bool `xml:"http://www.microsoft.com/provisioning/EapTlsConnectionPropertiesV2 AcceptServerName"`
	TLSExtensions           struct {
		FilteringInfo struct {
			CAHashList struct {
				Enabled    bool     `xml:"Enabled,attr"`
				IssuerHash []string `xml:"IssuerHash"`
			} `xml:"CAHashList"`
			ClientAuthEKUList struct {
				Enabled bool `xml:"Enabled,attr"`
			} `xml:"ClientAuthEKUList"`
		} `xml:"http://www.microsoft.com/provisioning/EapTlsConnectionPropertiesV3 FilteringInfo"`
	} `xml:"http://www.microsoft.com/provisioning/EapTlsConnectionPropertiesV2 TLSExtensions"`
}

// WLANProfile returns the Windows WLAN profile (the WiFi CSP's WlanXml) of the
// bundle's Wi-Fi network: WPA2 with AES and 802.1X (useOneX), connectionMode auto,
// authMode "user" for a user certificate and "machine" for a device certificate, and
// an EapHostConfig for EAP-TLS (type 13) that
//
//   - takes the client certificate from the certificate store (SimpleCertSelection),
//     filtered to those whose chain holds the bundle's root (CAHashList Enabled, its
//     SHA-1 as IssuerHash) and that carry the Client Authentication EKU
//     (ClientAuthEKUList Enabled): the SCEP certificate, not another one the device
//     may hold. AllPurposeEnabled and AnyPurposeEKUList are left out, so Windows does
//     not select a certificate by an any-purpose EKU or one without EKUs
//     (EapTlsConnectionPropertiesV3 FilterInfoParams); [Bundle.Validate] refuses the
//     any-purpose EKUs for a Wi-Fi bundle anyway;
//   - validates the RADIUS server: PerformServerValidation and AcceptServerName true,
//     ServerNames the trusted names joined by ";", TrustedRootCA the root's SHA-1,
//     and DisableUserPromptForServerValidation true, so that a server failing these
//     checks is refused rather than offered to the user. Windows reads each server
//     name as a regular expression, so a wildcard name such as "*.example.com" is
//     written ".*\.example\.com"; names without a wildcard are written as they are.
//
// Element names, order and namespaces follow Microsoft's WLAN_profile,
// EapHostConfig, BaseEapConnectionPropertiesV1 and EapTlsConnectionProperties V1-V3
// schemas. The bundle must have a WiFi.
func (b *Bundle) WLANProfile() ([]byte, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	if b.WiFi == nil {
		return nil, exportErr("the bundle has no Wi-Fi network")
	}
	w := b.WiFi
	var p wlanProfile
	p.Name = w.SSID
	p.SSIDConfig.SSID.Hex = strings.ToUpper(hex.EncodeToString([]byte(w.SSID)))
	p.SSIDConfig.SSID.Name = w.SSID
	p.SSIDConfig.NonBroadcast = w.Hidden
	p.ConnectionType, p.ConnectionMode = "ESS", "auto"
	ae := &p.MSM.Security.AuthEncryption
	ae.Authentication, ae.Encryption, ae.UseOneX = "WPA2", "AES", true
	ox := &p.MSM.Security.OneX
	ox.AuthMode = "user"
	if b.SCEP.Profile.CertificateType == DeviceCertificate {
		ox.AuthMode = "machine"
	}
	eh := &ox.EAPConfig.EapHostConfig
	eh.EapMethod.Type = EAPTLS
	eh.Config.Eap.Type = EAPTLS
	t := &eh.Config.Eap.EapType
	t.CredentialsSource.CertificateStore.SimpleCertSelection = true
	t.ServerValidation.DisableUserPromptForServerValidation = true
	t.ServerValidation.ServerNames = windowsServerNames(w.TrustedServerNames)
	root := b.SCEP.Profile.RootCA
	t.ServerValidation.TrustedRootCA = thumbprint(root, true)
	t.PerformServerValidation, t.AcceptServerName = true, true
	f := &t.TLSExtensions.FilteringInfo
	f.CAHashList.Enabled = true
	f.CAHashList.IssuerHash = []string{thumbprint(root, true)}
	f.ClientAuthEKUList.Enabled = true
	out, err := xml.Marshal(p)
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), out...), nil
}

// windowsServerNames joins names for the ServerNames of a WLAN profile. Windows reads
// each name there as a regular expression (EapTlsConnectionPropertiesV1's
// ServerNames), where "*.example.com", as Apple and the bundle write a wildcard, is no
// valid expression: it is written ".*\.example\.com", the form Microsoft's own example
// uses. Names without a wildcard are written as they are, as Intune writes them.
func windowsServerNames(names []string) string {
	out := make([]string, len(names))
	for i, n := range names {
		if rest, ok := strings.CutPrefix(n, "*."); ok {
			n = `.*\.` + strings.ReplaceAll(rest, ".", `\.`)
		}
		out[i] = n
	}
	return strings.Join(out, ";")
}
