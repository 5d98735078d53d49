package profile

import (
	"bytes"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// bundleChain reads the fixed root and intermediate of testdata/bundle-chain.pem, so
// the golden bundles do not change from run to run.
func bundleChain(t testing.TB) (root, intermediate *x509.Certificate) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "bundle-chain.pem"))
	require.NoError(t, err)
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		require.NoError(t, err)
		certs = append(certs, c)
	}
	require.Len(t, certs, 2)
	return certs[0], certs[1]
}

func testBundle(t testing.TB, platform Platform) *Bundle {
	t.Helper()
	root, intermediate := bundleChain(t)
	p := testProfile()
	p.Platform = platform
	p.CAFingerprint = nil
	p.RootCA = root
	r, err := Render(p, testUser(), testDevice(), nil)
	require.NoError(t, err)
	return &Bundle{
		SCEP: r, DeviceID: testDevice().ID, Intermediates: []*x509.Certificate{intermediate},
		WiFi: &WiFi{SSID: `Contoso <Corp> & "Guests"`, TrustedServerNames: []string{"radius.contoso.com", "*.nps.contoso.com"}},
		VPN:  &VPN{Name: "Contoso VPN", RemoteAddress: "vpn.contoso.com", ServerCertificateIssuerCommonName: "Contoso Issuing CA 1"},
	}
}

var bundleOpts = ExportOptions{Challenge: "eyJhbGciOi.challenge-token", Organization: "Contoso & Co"}

type plistRefs struct {
	UUID       string            `json:"uuid"`
	Identifier string            `json:"identifier"`
	TopKeys    map[string]string `json:"topKeys"`
	Payloads   []struct {
		Keys               map[string]string `json:"keys"`
		Type               string            `json:"type"`
		Identifier         string            `json:"identifier"`
		UUID               string            `json:"uuid"`
		Certificate        string            `json:"certificate"`
		CertificateUUID    string            `json:"certificateUuid"`
		URL                string            `json:"url"`
		Challenge          string            `json:"challenge"`
		CAFingerprint      string            `json:"caFingerprint"`
		SSID               string            `json:"ssid"`
		Encryption         string            `json:"encryption"`
		EAPTypes           []int             `json:"eapTypes"`
		TrustedServerNames []string          `json:"trustedServerNames"`
		Anchors            []string          `json:"anchors"`
		AnchorUUIDs        []string          `json:"anchorUuids"`
		VPNType            string            `json:"vpnType"`
		AuthMethod         string            `json:"authenticationMethod"`
		RemoteAddress      string            `json:"remoteAddress"`
		LocalIdentifier    string            `json:"localIdentifier"`
	} `json:"payloads"`
}

// readMobileConfig parses b with Python's plistlib (testdata/mobileconfig_refs.py),
// which fails on a repeated UUID or identifier and on a reference to nothing.
func readMobileConfig(t *testing.T, b []byte) *plistRefs {
	t.Helper()
	py := python3(t)
	f := filepath.Join(t.TempDir(), "bundle.mobileconfig")
	require.NoError(t, os.WriteFile(f, b, 0o644))
	out, err := exec.Command(py, filepath.Join("testdata", "mobileconfig_refs.py"), f).Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Fatalf("plistlib: %s", ee.Stderr)
	}
	require.NoError(t, err)
	var refs plistRefs
	require.NoError(t, json.Unmarshal(out, &refs))
	return &refs
}

// TestBundleMobileConfig: the golden Apple bundle, read back by plistlib, holds the
// root, the intermediate, the SCEP payload, the Wi-Fi and the VPN; the Wi-Fi's client
// certificate is the SCEP payload and its anchor the root payload; the VPN's
// certificate is the SCEP payload.
func TestBundleMobileConfig(t *testing.T) {
	b := testBundle(t, IOS)
	out, err := b.MobileConfig(bundleOpts)
	require.NoError(t, err)
	golden(t, "bundle.mobileconfig", out)

	root, intermediate := bundleChain(t)
	refs := readMobileConfig(t, out)
	require.Equal(t, "com.scepkit.bundle.prof-1", refs.Identifier)
	types := []string{}
	byType := map[string]int{}
	for i, p := range refs.Payloads {
		types = append(types, p.Type)
		byType[p.Type] = i
	}
	require.Equal(t, []string{"com.apple.security.root", "com.apple.security.pkcs1", "com.apple.security.scep",
		"com.apple.wifi.managed", "com.apple.vpn.managed"}, types)
	rootP := refs.Payloads[byType["com.apple.security.root"]]
	require.Equal(t, base64.StdEncoding.EncodeToString(root.Raw), rootP.Certificate)
	require.Equal(t, base64.StdEncoding.EncodeToString(intermediate.Raw), refs.Payloads[1].Certificate)
	scepP := refs.Payloads[byType["com.apple.security.scep"]]
	fp := sha1.Sum(root.Raw)
	require.Equal(t, hex.EncodeToString(fp[:]), scepP.CAFingerprint, "the SCEP payload pins the root it installs")
	require.Equal(t, bundleOpts.Challenge, scepP.Challenge)

	wifi := refs.Payloads[byType["com.apple.wifi.managed"]]
	require.Equal(t, b.WiFi.SSID, wifi.SSID, "the SSID reads back as one value")
	require.Equal(t, []int{EAPTLS}, wifi.EAPTypes)
	require.Equal(t, "WPA2", wifi.Encryption)
	require.Equal(t, scepP.UUID, wifi.CertificateUUID)
	require.Equal(t, []string{rootP.UUID}, wifi.AnchorUUIDs)
	require.Equal(t, []string{"com.apple.security.root"}, wifi.Anchors)
	require.Equal(t, b.WiFi.TrustedServerNames, wifi.TrustedServerNames)

	vpn := refs.Payloads[byType["com.apple.vpn.managed"]]
	require.Equal(t, "IKEv2", vpn.VPNType)
	require.Equal(t, "Certificate", vpn.AuthMethod)
	require.Equal(t, scepP.UUID, vpn.CertificateUUID)
	require.Equal(t, "com.apple.security.scep", vpn.Certificate)
	require.Equal(t, "jane@contoso.com", vpn.LocalIdentifier, "the UPN of the certificate by default")
}

// appleSchema lists, per payload type, every key the bundle writes and its plist type,
// as Apple's device-management schema (github.com/apple/device-management,
// mdm/profiles/) gives them: CommonPayloadKeys.yaml for the Payload* keys,
// TopLevel.yaml for the profile's own, and the file named after each payload type.
var appleSchema = map[string]map[string]string{
	"Configuration": {"PayloadDisplayName": "string", "PayloadIdentifier": "string", "PayloadOrganization": "string",
		"PayloadRemovalDisallowed": "boolean", "PayloadScope": "string", "PayloadType": "string", "PayloadUUID": "string",
		"PayloadVersion": "integer", "PayloadDescription": "string"},
	"com.apple.security.root":  {"PayloadCertificateFileName": "string", "PayloadContent": "data"},
	"com.apple.security.pkcs1": {"PayloadCertificateFileName": "string", "PayloadContent": "data"},
	"com.apple.security.scep": {"PayloadContent": "dictionary", "PayloadContent.URL": "string",
		"PayloadContent.Name": "string", "PayloadContent.Subject": "array", "PayloadContent.Subject[]": "array",
		"PayloadContent.Challenge": "string", "PayloadContent.Keysize": "integer", "PayloadContent.Key Type": "string",
		"PayloadContent.Key Usage": "integer", "PayloadContent.CAFingerprint": "data", "PayloadContent.Retries": "integer",
		"PayloadContent.RetryDelay": "integer", "PayloadContent.SubjectAltName": "dictionary",
		"PayloadContent.SubjectAltName.rfc822Name": "string", "PayloadContent.SubjectAltName.dNSName": "string",
		"PayloadContent.SubjectAltName.uniformResourceIdentifier": "string",
		"PayloadContent.SubjectAltName.ntPrincipalName":           "string"},
	"com.apple.wifi.managed": {"AutoJoin": "boolean", "SSID_STR": "string", "HIDDEN_NETWORK": "boolean",
		"EncryptionType": "string", "PayloadCertificateUUID": "string", "EAPClientConfiguration": "dictionary",
		"EAPClientConfiguration.AcceptEAPTypes": "array", "EAPClientConfiguration.AcceptEAPTypes[]": "integer",
		"EAPClientConfiguration.PayloadCertificateAnchorUUID":   "array",
		"EAPClientConfiguration.PayloadCertificateAnchorUUID[]": "string",
		"EAPClientConfiguration.TLSTrustedServerNames":          "array", "EAPClientConfiguration.TLSTrustedServerNames[]": "string"},
	"com.apple.vpn.managed": {"VPNType": "string", "UserDefinedName": "string", "IKEv2": "dictionary",
		"IKEv2.AuthenticationMethod": "string", "IKEv2.CertificateType": "string", "IKEv2.ExtendedAuthEnabled": "integer",
		"IKEv2.LocalIdentifier": "string", "IKEv2.PayloadCertificateUUID": "string", "IKEv2.RemoteAddress": "string",
		"IKEv2.RemoteIdentifier": "string", "IKEv2.ServerCertificateIssuerCommonName": "string"},
}

// TestBundleAppleSchema: every key of the golden bundle (payloads, nested
// dictionaries, array elements; the subject's inner pairs aside) is one Apple's schema
// defines for its payload type, with the schema's type.
func TestBundleAppleSchema(t *testing.T) {
	b := testBundle(t, MacOS)
	refs := readMobileConfig(t, must(b.MobileConfig(bundleOpts)))
	common := appleSchema["Configuration"]
	check := func(typ string, keys map[string]string) {
		for path, kind := range keys {
			if strings.HasPrefix(path, "PayloadContent.Subject[][]") {
				continue // [name, value] string pairs, checked by TestExportMobileConfig
			}
			want, ok := appleSchema[typ][path]
			if !ok && !strings.Contains(path, ".") && typ != "Configuration" {
				want, ok = common[path]
			}
			require.True(t, ok, "%s: key %q is not in Apple's schema", typ, path)
			require.Equal(t, want, kind, "%s: type of %q", typ, path)
		}
	}
	check("Configuration", refs.TopKeys)
	seen := map[string]bool{}
	for _, p := range refs.Payloads {
		check(p.Type, p.Keys)
		seen[p.Type] = true
	}
	require.Len(t, seen, 5)
}

// TestBundleUUIDsStable: the same profile and device export the same bytes (a
// re-deployed bundle replaces what it installed); another device or another profile
// gets other UUIDs but the same identifiers.
func TestBundleUUIDsStable(t *testing.T) {
	a, err := testBundle(t, MacOS).MobileConfig(bundleOpts)
	require.NoError(t, err)
	again, err := testBundle(t, MacOS).MobileConfig(bundleOpts)
	require.NoError(t, err)
	require.Equal(t, string(a), string(again))

	other := testBundle(t, MacOS)
	other.DeviceID = "another-device"
	o, err := other.MobileConfig(bundleOpts)
	require.NoError(t, err)
	ra, ro := readMobileConfig(t, a), readMobileConfig(t, o)
	require.Equal(t, ra.Identifier, ro.Identifier)
	require.NotEqual(t, ra.UUID, ro.UUID)
	for i := range ra.Payloads {
		require.Equal(t, ra.Payloads[i].Identifier, ro.Payloads[i].Identifier)
		require.NotEqual(t, ra.Payloads[i].UUID, ro.Payloads[i].UUID, ra.Payloads[i].Type)
	}

	// A device id that embeds another role cannot collide with it.
	require.NotEqual(t, bundleUUID("x", "d", "root"), bundleUUID("x", "d:4:root", "scep"))
	require.NotEqual(t, bundleUUID("x:1:d", "", "root"), bundleUUID("x", "d", "root"))
}

type syncDoc struct {
	Body struct {
		Cmds []syncParsed `xml:",any"`
	} `xml:"SyncBody"`
}

type syncParsed struct {
	XMLName xml.Name
	LocURI  string       `xml:"Item>Target>LocURI"`
	Format  string       `xml:"Item>Meta>Format"`
	Data    string       `xml:"Item>Data"`
	Cmds    []syncParsed `xml:",any"`
}

// parsedWLAN is the WLAN profile read back by local names; wlanNamespaces checks
// the namespace of each element.
type parsedWLAN struct {
	Name    string `xml:"name"`
	SSIDHex string `xml:"SSIDConfig>SSID>hex"`
	SSID    string `xml:"SSIDConfig>SSID>name"`
	Auth    string `xml:"MSM>security>authEncryption>authentication"`
	OneX    struct {
		AuthMode string `xml:"authMode"`
		Host     struct {
			MethodType int `xml:"EapMethod>Type"`
			Eap        struct {
				Type int `xml:"Type"`
				TLS  struct {
					Simple      bool   `xml:"CredentialsSource>CertificateStore>SimpleCertSelection"`
					ServerNames string `xml:"ServerValidation>ServerNames"`
					TrustedRoot string `xml:"ServerValidation>TrustedRootCA"`
					NoPrompt    bool   `xml:"ServerValidation>DisableUserPromptForServerValidation"`
					Perform     bool   `xml:"PerformServerValidation"`
					Filtering   struct {
						CAHashList struct {
							Enabled bool     `xml:"Enabled,attr"`
							Issuer  []string `xml:"IssuerHash"`
						} `xml:"CAHashList"`
						ClientAuth struct {
							Enabled bool `xml:"Enabled,attr"`
						} `xml:"ClientAuthEKUList"`
					} `xml:"TLSExtensions>FilteringInfo"`
				} `xml:"EapType"`
			} `xml:"Config>Eap"`
		} `xml:"EAPConfig>EapHostConfig"`
	} `xml:"MSM>security>OneX"`
}

// wlanNamespaces returns the namespace of every element of a WLAN profile by local
// name (the names used here are unique per namespace, except Type).
func wlanNamespaces(t *testing.T, b []byte) map[string][]string {
	t.Helper()
	ns := map[string][]string{}
	dec := xml.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		if se, ok := tok.(xml.StartElement); ok {
			ns[se.Name.Local] = append(ns[se.Name.Local], se.Name.Space)
		}
	}
	return ns
}

func strictDecode(t *testing.T, b []byte, v any) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(b))
	dec.Strict = true
	require.NoError(t, dec.Decode(v))
}

// TestBundleSyncML: the golden Windows bundle, read back with encoding/xml: the root
// (and intermediate) nodes are named by the SHA-1 of the certificate they hold; the
// SCEP CAThumbprint is the root's; the WLAN profile selects the SCEP certificate by
// the root's hash (CAHashList) and the Client Authentication EKU, and trusts RADIUS
// servers under the root with the given names.
func TestBundleSyncML(t *testing.T) {
	b := testBundle(t, Windows)
	_, err := b.SyncML(bundleOpts)
	require.ErrorIs(t, err, ErrExport, "a VPN the Windows export cannot carry is refused, not dropped")
	b.VPN = nil
	out, err := b.SyncML(bundleOpts)
	require.NoError(t, err)
	golden(t, "bundle.syncml.xml", out)

	root, intermediate := bundleChain(t)
	var doc syncDoc
	strictDecode(t, out, &doc)
	var verbs []string
	for _, c := range doc.Body.Cmds {
		verbs = append(verbs, c.XMLName.Local)
	}
	require.Equal(t, []string{"Add", "Add", "Atomic", "Add", "Final"}, verbs)

	for i, want := range []*x509.Certificate{root, intermediate} {
		c := doc.Body.Cmds[i]
		require.Equal(t, "b64", c.Format)
		der, err := base64.StdEncoding.DecodeString(c.Data)
		require.NoError(t, err)
		require.Equal(t, want.Raw, der)
		store := []string{"Root", "CA"}[i]
		require.Equal(t, "./Device/Vendor/MSFT/RootCATrustedCertificates/"+store+"/"+thumbprint(want, false)+"/EncodedCertificate", c.LocURI)
	}
	nodes := map[string]string{}
	for _, c := range doc.Body.Cmds[2].Cmds {
		nodes[c.LocURI[strings.LastIndex(c.LocURI, "/")+1:]] = c.Data
	}
	require.Equal(t, thumbprint(root, false), nodes["CAThumbprint"], "the SCEP node pins the root the bundle installs")

	wifi := doc.Body.Cmds[3]
	require.Equal(t, "chr", wifi.Format)
	require.Equal(t, "./User/Vendor/MSFT/WiFi/Profile/Contoso%20%3CCorp%3E%20%26%20%22Guests%22/WlanXml", wifi.LocURI)
	var w parsedWLAN
	strictDecode(t, []byte(wifi.Data), &w)
	ns := wlanNamespaces(t, []byte(wifi.Data))
	for el, want := range map[string]string{
		"WLANProfile": nsWLAN, "SSIDConfig": nsWLAN, "MSM": nsWLAN, "OneX": nsOneX, "authMode": nsOneX,
		"EAPConfig": nsOneX, "EapHostConfig": nsEapHost, "EapMethod": nsEapHost, "Config": nsEapHost,
		"VendorId": nsEapComm, "AuthorId": nsEapComm, "Eap": nsBaseEap, "EapType": nsTLSv1,
		"ServerValidation": nsTLSv1, "TrustedRootCA": nsTLSv1, "PerformServerValidation": nsTLSv2,
		"TLSExtensions": nsTLSv2, "FilteringInfo": nsTLSv3, "CAHashList": nsTLSv3, "IssuerHash": nsTLSv3,
	} {
		require.Equal(t, []string{want}, ns[el], "namespace of %s", el)
	}
	require.Equal(t, []string{nsEapComm, nsBaseEap}, ns["Type"])
	require.Equal(t, b.WiFi.SSID, w.Name)
	require.Equal(t, b.WiFi.SSID, w.SSID)
	ssidHex, err := hex.DecodeString(w.SSIDHex)
	require.NoError(t, err)
	require.Equal(t, b.WiFi.SSID, string(ssidHex))
	require.Equal(t, "WPA2", w.Auth)
	require.Equal(t, "user", w.OneX.AuthMode)
	require.Equal(t, EAPTLS, w.OneX.Host.MethodType)
	tls := w.OneX.Host.Eap.TLS
	require.Equal(t, EAPTLS, w.OneX.Host.Eap.Type)
	require.True(t, tls.Simple)
	require.True(t, tls.NoPrompt)
	require.True(t, tls.Perform)
	// Windows reads each name as a regular expression: the wildcard is written as one.
	require.Equal(t, `radius.contoso.com;.*\.nps\.contoso\.com`, tls.ServerNames)
	require.Equal(t, thumbprint(root, true), tls.TrustedRoot, "TrustedRootCA is the root")
	require.Equal(t, strings.ToLower(thumbprint(root, false)), strings.ReplaceAll(tls.TrustedRoot, " ", ""))
	require.True(t, tls.Filtering.CAHashList.Enabled)
	require.Equal(t, []string{thumbprint(root, true)}, tls.Filtering.CAHashList.Issuer)
	require.True(t, tls.Filtering.ClientAuth.Enabled)

	// A re-deployment replaces the same nodes.
	again, err := b.SyncML(ExportOptions{Challenge: "second", Replace: true})
	require.NoError(t, err)
	var redo syncDoc
	strictDecode(t, again, &redo)
	require.Len(t, redo.Body.Cmds, len(doc.Body.Cmds))
	for i, c := range redo.Body.Cmds[:4] {
		if c.XMLName.Local == "Atomic" {
			uris := func(cmds []syncParsed, verb string) (out []string) {
				for _, n := range cmds {
					if n.XMLName.Local == verb && strings.Contains(n.LocURI, "/Install/") {
						out = append(out, n.LocURI)
					}
				}
				return out
			}
			require.Equal(t, uris(doc.Body.Cmds[i].Cmds, "Add"), uris(c.Cmds, "Replace"))
			continue
		}
		require.Equal(t, "Replace", c.XMLName.Local)
		require.Equal(t, doc.Body.Cmds[i].LocURI, c.LocURI)
	}

	// A device certificate puts the Wi-Fi under ./Device and authenticates the machine.
	b.SCEP.Profile.CertificateType = DeviceCertificate
	wlan, err := b.WLANProfile()
	require.NoError(t, err)
	strictDecode(t, wlan, &w)
	require.Equal(t, "machine", w.OneX.AuthMode)
}

// TestBundleJSON: the golden JSON bundle uses the Apple export's UUIDs for its
// references.
func TestBundleJSON(t *testing.T) {
	b := testBundle(t, Windows)
	out, err := b.JSON(bundleOpts)
	require.NoError(t, err)
	golden(t, "bundle.json", out)

	var j JSONBundle
	require.NoError(t, json.Unmarshal(out, &j))
	require.Equal(t, 1, j.Version)
	require.Equal(t, j.SCEP.UUID, j.WiFi.CertificateUUID)
	require.Equal(t, []string{j.Root.UUID}, j.WiFi.AnchorUUIDs)
	require.Equal(t, j.SCEP.UUID, j.VPN.CertificateUUID)
	require.Equal(t, j.Root.SHA1, strings.ToUpper(j.SCEP.Profile.CAThumbprint))
	require.Equal(t, bundleOpts.Challenge, j.SCEP.Profile.Challenge)

	apple := testBundle(t, IOS)
	refs := readMobileConfig(t, must(apple.MobileConfig(bundleOpts)))
	aj := &JSONBundle{}
	require.NoError(t, json.Unmarshal(must(apple.JSON(bundleOpts)), aj))
	require.Equal(t, refs.UUID, aj.UUID)
	require.Equal(t, refs.Payloads[0].UUID, aj.Root.UUID)
	require.Equal(t, refs.Payloads[2].UUID, aj.SCEP.UUID)
	require.Equal(t, refs.Payloads[3].UUID, aj.WiFi.UUID)
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestBundleHostileValues: a value that would add a name, a node or a line is
// refused; one that only needs escaping stays one value in every format.
func TestBundleHostileValues(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Bundle)
		want string // the FieldError's field; "" means accepted
	}{
		{"SSID with markup", func(b *Bundle) { b.WiFi.SSID = `</string><key>x` }, ""},
		{"SSID with a slash", func(b *Bundle) { b.WiFi.SSID = "a/../b" }, ""},
		{"SSID dot", func(b *Bundle) { b.WiFi.SSID = "." }, "WiFi.SSID"},
		{"SSID dot-dot", func(b *Bundle) { b.WiFi.SSID = ".." }, "WiFi.SSID"},
		{"SSID of three dots", func(b *Bundle) { b.WiFi.SSID = "..." }, ""},
		{"SSID with a newline", func(b *Bundle) { b.WiFi.SSID = "corp\nx" }, "WiFi.SSID"},
		{"SSID with NUL", func(b *Bundle) { b.WiFi.SSID = "corp\x00" }, "WiFi.SSID"},
		{"SSID of 33 bytes", func(b *Bundle) { b.WiFi.SSID = strings.Repeat("x", 33) }, "WiFi.SSID"},
		{"empty SSID", func(b *Bundle) { b.WiFi.SSID = "" }, "WiFi.SSID"},
		{"invalid UTF-8 SSID", func(b *Bundle) { b.WiFi.SSID = "\xff" }, "WiFi.SSID"},
		{"server name with ;", func(b *Bundle) { b.WiFi.TrustedServerNames = []string{"radius.contoso.com;evil.example"} }, "WiFi.TrustedServerNames[0]"},
		{"server name with space", func(b *Bundle) { b.WiFi.TrustedServerNames = []string{"radius contoso"} }, "WiFi.TrustedServerNames[0]"},
		{"no server name", func(b *Bundle) { b.WiFi.TrustedServerNames = nil }, "WiFi.TrustedServerNames"},
		{"VPN address with a path", func(b *Bundle) { b.VPN.RemoteAddress = "vpn.contoso.com/x" }, "VPN.RemoteAddress"},
		{"VPN IP address", func(b *Bundle) { b.VPN.RemoteAddress = "192.0.2.1" }, ""},
		{"VPN name with a newline", func(b *Bundle) { b.VPN.Name = "VPN\n" }, "VPN.Name"},
		{"VPN identifier with DEL", func(b *Bundle) { b.VPN.LocalIdentifier = "a\x7f" }, "VPN.LocalIdentifier"},
		{"no device", func(b *Bundle) { b.DeviceID = "" }, "DeviceID"},
		{"no root certificate", func(b *Bundle) { b.SCEP.Profile.RootCA = nil }, "SCEP.Profile.RootCA"},
		{"leaf as intermediate", func(b *Bundle) { b.Intermediates = []*x509.Certificate{{}} }, "Intermediates[0]"},
		{"intermediate twice", func(b *Bundle) { b.Intermediates = append(b.Intermediates, b.Intermediates[0]) }, "Intermediates[1]"},
		{"root as intermediate", func(b *Bundle) { b.Intermediates = append(b.Intermediates, b.SCEP.Profile.RootCA) }, "Intermediates[1]"},
		{"no Client Authentication", func(b *Bundle) { b.SCEP.Profile.ExtendedKeyUsages = []EKU{EKUEmailProtection} }, "SCEP.Profile.ExtendedKeyUsages"},
		{"Any Purpose", func(b *Bundle) { b.SCEP.Profile.ExtendedKeyUsages = []EKU{EKUAnyPurpose} }, "SCEP.Profile.ExtendedKeyUsages[0]"},
		{"no digitalSignature", func(b *Bundle) { b.SCEP.Profile.KeyUsage = x509.KeyUsageKeyEncipherment }, "SCEP.Profile.KeyUsage"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, platform := range []Platform{IOS, Windows} {
				b := testBundle(t, platform)
				tc.mod(b)
				var outs [][]byte
				var errs []error
				if platform == IOS {
					o, err := b.MobileConfig(bundleOpts)
					outs, errs = append(outs, o), append(errs, err)
				} else {
					wb := *b // the Windows export carries no VPN
					if !strings.HasPrefix(tc.want, "VPN.") {
						wb.VPN = nil
					}
					o, err := wb.SyncML(bundleOpts)
					outs, errs = append(outs, o), append(errs, err)
				}
				o, err := b.JSON(bundleOpts)
				outs, errs = append(outs, o), append(errs, err)
				for i, err := range errs {
					if tc.want == "" {
						require.NoError(t, err)
						continue
					}
					require.Nil(t, outs[i])
					requireFieldError(t, err, tc.want)
				}
				if tc.want != "" {
					continue
				}
				// Accepted values read back as exactly one value.
				if platform == IOS {
					refs := readMobileConfig(t, outs[0])
					require.Len(t, refs.Payloads, 5)
					require.Equal(t, b.WiFi.SSID, refs.Payloads[3].SSID)
					require.Equal(t, b.VPN.RemoteAddress, refs.Payloads[4].RemoteAddress)
				} else {
					var doc syncDoc
					strictDecode(t, outs[0], &doc)
					uri := doc.Body.Cmds[3].LocURI
					seg, ok := strings.CutSuffix(strings.TrimPrefix(uri, "./User/Vendor/MSFT/WiFi/Profile/"), "/WlanXml")
					require.True(t, ok, uri)
					require.NotContains(t, seg, "/", "the SSID stays one segment of %s", uri)
					// Not a dot-segment, which URI normalisation removes (RFC 3986 section 5.2.4).
					require.NotContains(t, []string{".", ".."}, seg, "the SSID stays one segment of %s", uri)
					back, err := url.PathUnescape(seg)
					require.NoError(t, err)
					require.Equal(t, b.WiFi.SSID, back)
					var w parsedWLAN
					strictDecode(t, []byte(doc.Body.Cmds[3].Data), &w)
					require.Equal(t, b.WiFi.SSID, w.SSID)
				}
				var j JSONBundle
				require.NoError(t, json.Unmarshal(outs[1], &j))
				require.Equal(t, b.WiFi.SSID, j.WiFi.SSID)
			}
		})
	}
}

// TestBundleWrongPlatform: each export refuses a profile of another platform.
func TestBundleWrongPlatform(t *testing.T) {
	_, err := testBundle(t, IOS).SyncML(bundleOpts)
	require.ErrorIs(t, err, ErrExport, "an iOS profile has no Windows export")
	_, err = testBundle(t, Windows).MobileConfig(bundleOpts)
	require.ErrorIs(t, err, ErrExport, "a Windows profile has no Apple export")
	b := testBundle(t, Windows)
	b.WiFi = nil
	_, err = b.WLANProfile()
	require.ErrorIs(t, err, ErrExport)
}

// TestBundleWiFiRefusesServerEKU: the RADIUS server is trusted for chaining to the
// profile's root and carrying a trusted name, and that root also signs every device's
// certificate, whose names may come from variables a user controls ({{DeviceName}}).
// A Wi-Fi bundle therefore refuses a profile whose certificates could serve as a
// RADIUS server's: Server Authentication, anyExtendedKeyUsage or Microsoft's Any
// Purpose (Apple's EAP trust policy accepts a server certificate with Server
// Authentication, anyExtendedKeyUsage or no EKU at all), and a profile without EKUs.
// A VPN-only bundle keeps accepting the any-purpose EKUs for its client certificate.
func TestBundleWiFiRefusesServerEKU(t *testing.T) {
	msAnyPurpose := EKU{"Any Purpose (Microsoft)", asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 10, 12, 1}}
	cases := []struct {
		name  string
		ekus  []EKU
		wifi  bool
		field string // "" means accepted
	}{
		{"Client Authentication", []EKU{EKUClientAuth}, true, ""},
		{"Client Authentication and Secure Email", []EKU{EKUClientAuth, EKUEmailProtection}, true, ""},
		{"Server Authentication too", []EKU{EKUClientAuth, EKUServerAuth}, true, "SCEP.Profile.ExtendedKeyUsages[1]"},
		{"anyExtendedKeyUsage", []EKU{EKUAnyPurpose}, true, "SCEP.Profile.ExtendedKeyUsages[0]"},
		{"anyExtendedKeyUsage too", []EKU{EKUClientAuth, EKUAnyPurpose}, true, "SCEP.Profile.ExtendedKeyUsages[1]"},
		{"Microsoft Any Purpose", []EKU{EKUClientAuth, msAnyPurpose}, true, "SCEP.Profile.ExtendedKeyUsages[1]"},
		{"no EKU", nil, true, "SCEP.Profile.ExtendedKeyUsages"},
		{"VPN only, anyExtendedKeyUsage", []EKU{EKUAnyPurpose}, false, ""},
		{"VPN only, Microsoft Any Purpose", []EKU{msAnyPurpose}, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, platform := range []Platform{IOS, Windows} {
				b := testBundle(t, platform)
				b.SCEP.Profile.ExtendedKeyUsages = tc.ekus
				if !tc.wifi {
					b.WiFi = nil
				}
				err := b.Validate()
				if tc.field == "" {
					require.NoError(t, err)
					continue
				}
				requireFieldError(t, err, tc.field)
				_, err = b.JSON(bundleOpts)
				require.ErrorIs(t, err, ErrInvalidProfile)
				_, err = b.WLANProfile()
				require.ErrorIs(t, err, ErrInvalidProfile)
			}
		})
	}
}

// TestBundleVPNNeedsServerIssuer: the Apple IKEv2 payload carries CertificateType, and
// Apple's com.apple.vpn.managed schema requires ServerCertificateIssuerCommonName
// whenever CertificateType is present (it is what makes the device send a certificate
// request, without which a gateway such as strongSwan sends no certificate). Validate
// requires it; every export that carries the VPN writes it.
func TestBundleVPNNeedsServerIssuer(t *testing.T) {
	cases := []struct {
		name, issuer string
		field        string // "" means accepted
	}{
		{"issuer given", "Contoso Issuing CA 1", ""},
		{"issuer missing", "", "VPN.ServerCertificateIssuerCommonName"},
		{"issuer with a newline", "CA\n1", "VPN.ServerCertificateIssuerCommonName"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := testBundle(t, IOS)
			b.VPN.ServerCertificateIssuerCommonName = tc.issuer
			mc, err := b.MobileConfig(bundleOpts)
			j, jerr := b.JSON(bundleOpts)
			if tc.field != "" {
				for _, err := range []error{err, jerr} {
					requireFieldError(t, err, tc.field)
				}
				return
			}
			require.NoError(t, err)
			require.NoError(t, jerr)
			require.Contains(t, string(mc), "<key>CertificateType</key>")
			require.Contains(t, string(mc), "<key>ServerCertificateIssuerCommonName</key>\n\t\t\t\t<string>"+tc.issuer+"</string>")
			var jb JSONBundle
			require.NoError(t, json.Unmarshal(j, &jb))
			require.Equal(t, tc.issuer, jb.VPN.ServerCertificateIssuerCommonName)
		})
	}
}

// TestBundleSyncMLSteps: the two-message export holds the commands of the one-message
// export, split where Microsoft's Wi-Fi CSP asks: the certificates and the SCEP
// enrollment first, the Wi-Fi profile in a message of its own; without Wi-Fi the
// second message is nil.
func TestBundleSyncMLSteps(t *testing.T) {
	cases := []struct {
		name    string
		wifi    bool
		replace bool
	}{
		{"Wi-Fi, Add", true, false},
		{"Wi-Fi, Replace", true, true},
		{"no Wi-Fi", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := testBundle(t, Windows)
			b.VPN = nil
			if !tc.wifi {
				b.WiFi = nil
			}
			opts := bundleOpts
			opts.Replace = tc.replace
			var one syncDoc
			strictDecode(t, must(b.SyncML(opts)), &one)
			enroll, network, err := b.SyncMLSteps(opts)
			require.NoError(t, err)
			var first syncDoc
			strictDecode(t, enroll, &first)
			cmds := one.Body.Cmds[:len(one.Body.Cmds)-1] // Final aside
			if !tc.wifi {
				require.Nil(t, network)
				require.Equal(t, one, first)
				return
			}
			wifi := cmds[len(cmds)-1]
			require.True(t, strings.HasSuffix(wifi.LocURI, "/WlanXml"), wifi.LocURI)
			require.Equal(t, append(append([]syncParsed{}, cmds[:len(cmds)-1]...), one.Body.Cmds[len(cmds)]), first.Body.Cmds)
			require.Equal(t, "Atomic", first.Body.Cmds[len(first.Body.Cmds)-2].XMLName.Local, "the enrollment ends the first message")
			var second syncDoc
			strictDecode(t, network, &second)
			require.Equal(t, []syncParsed{wifi, one.Body.Cmds[len(cmds)]}, second.Body.Cmds)
			require.Contains(t, string(network), "<CmdID>1</CmdID>", "each message numbers its commands from 1")
		})
	}
	b := testBundle(t, Windows)
	_, _, err := b.SyncMLSteps(bundleOpts)
	require.ErrorIs(t, err, ErrExport, "a VPN is refused as by SyncML")
}

// TestExportPayloadUUIDOverrides: ExportOptions.PayloadUUID and SCEPPayloadUUID, when
// set, must be UUIDs in the textual form of RFC 4122 section 3 (what Apple's tools
// generate for PayloadUUID), and differ from each other; every export that writes
// them refuses anything else with ErrExport.
func TestExportPayloadUUIDOverrides(t *testing.T) {
	const u1, u2 = "0E3B6A6C-9F0D-4C1B-8A57-3D2B1C0E9F11", "7c9e6679-7425-40de-944b-e07fc1f90ae7"
	cases := []struct {
		name, profile, scep string
		ok                  bool
	}{
		{"defaults", "", "", true},
		{"both set", u1, u2, true},
		{"profile only", u2, "", true},
		{"not a UUID", "profile-1", "", false},
		{"markup", u1, "</string><key>x", false},
		{"no hyphens", strings.ReplaceAll(u1, "-", ""), "", false},
		{"braces", "{" + u1 + "}", "", false},
		{"not hex", "0E3B6A6C-9F0D-4C1B-8A57-3D2B1C0E9F1G", "", false},
		{"trailing newline", u1 + "\n", "", false},
		{"same UUID twice", u1, strings.ToLower(u1), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := bundleOpts
			opts.PayloadUUID, opts.SCEPPayloadUUID = tc.profile, tc.scep
			b := testBundle(t, IOS)
			mc, err := b.MobileConfig(opts)
			j, jerr := b.JSON(opts)
			one, oerr := MobileConfig(b.SCEP, opts)
			for i, err := range []error{err, jerr, oerr} {
				if tc.ok {
					require.NoError(t, err, "export %d", i)
				} else {
					require.ErrorIs(t, err, ErrExport, "export %d", i)
				}
			}
			if !tc.ok {
				require.Nil(t, mc)
				require.Nil(t, j)
				require.Nil(t, one)
				return
			}
			if tc.profile != "" {
				require.Contains(t, string(mc), "<string>"+tc.profile+"</string>")
				require.Contains(t, string(one), "<string>"+tc.profile+"</string>")
			}
		})
	}
}

// TestBundleRefusesServerNameOfDevice: the bundle's root signs the device's own
// certificate, and its names may come from values a user controls ({{DeviceName}}).
// A device renamed "vpn" or "radius" would get a certificate naming the VPN gateway
// or the RADIUS server. Apple's IKEv2 trust policy (SecPolicyCreateIPSec) checks no
// EKU, so such a certificate passes as the gateway for every device that installed
// the bundle, whatever the profile's EKUs; for Wi-Fi only the EKUs stand in the way.
// Validate refuses a bundle whose own certificate carries the VPN's remote identifier
// or a trusted RADIUS server name, or a name a wildcard server name covers.
func TestBundleRefusesServerNameOfDevice(t *testing.T) {
	cases := []struct {
		name   string
		device string // Device.Name: the DNS SAN is {{DeviceName}}.corp.contoso.com
		setup  func(b *Bundle)
		field  string // "" means accepted
	}{
		{"unrelated names", "janes-laptop", func(b *Bundle) {}, ""},
		{"device named as the VPN gateway", "vpn", func(b *Bundle) {
			b.VPN.RemoteAddress = "vpn.corp.contoso.com"
		}, "VPN.RemoteIdentifier"},
		{"device named as the VPN identity, other case", "VPN", func(b *Bundle) {
			b.VPN.RemoteIdentifier = "vpn.corp.contoso.com."
		}, "VPN.RemoteIdentifier"},
		{"VPN identity is the user's UPN", "janes-laptop", func(b *Bundle) {
			b.VPN.RemoteIdentifier = "jane@contoso.com"
		}, "VPN.RemoteIdentifier"},
		{"device named as the RADIUS server", "radius", func(b *Bundle) {
			b.WiFi.TrustedServerNames = []string{"radius.corp.contoso.com"}
		}, "WiFi.TrustedServerNames[0]"},
		{"wildcard server name covers the device", "janes-laptop", func(b *Bundle) {
			b.WiFi.TrustedServerNames = []string{"radius.contoso.com", "*.corp.contoso.com"}
		}, "WiFi.TrustedServerNames[1]"},
		{"Windows reads a wildcard as several labels", "a.b", func(b *Bundle) {
			b.WiFi.TrustedServerNames = []string{"*.corp.contoso.com"}
		}, "WiFi.TrustedServerNames[0]"},
		{"wildcard over the UPN's domain: an EAP client matches no UPN", "janes-laptop", func(b *Bundle) {
			b.WiFi.TrustedServerNames = []string{"*.contoso.com"}
			b.SCEP.DNSNames, b.SCEP.UPNs = nil, []string{"jane@eu.contoso.com"}
		}, ""},
		{"the device's own wildcard name covers the RADIUS server", "janes-laptop", func(b *Bundle) {
			b.SCEP.DNSNames = []string{"*.corp.contoso.com"} // written so by the profile
			b.WiFi.TrustedServerNames = []string{"radius.corp.contoso.com"}
		}, "WiFi.TrustedServerNames[0]"},
		{"the device's own wildcard name covers the VPN gateway", "janes-laptop", func(b *Bundle) {
			b.SCEP.DNSNames = []string{"*.corp.contoso.com"}
			b.VPN.RemoteAddress = "vpn.corp.contoso.com"
		}, "VPN.RemoteIdentifier"},
		{"parent domain of a name", "janes-laptop", func(b *Bundle) {
			b.WiFi.TrustedServerNames = []string{"contoso.com"} // a parent of the UPN's domain, not a name the certificate carries
		}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, platform := range []Platform{IOS, Windows} {
				root, intermediate := bundleChain(t)
				p := testProfile()
				p.Platform = platform
				p.CAFingerprint = nil
				p.RootCA = root
				d := testDevice()
				d.Name = tc.device
				r, err := Render(p, testUser(), d, nil)
				require.NoError(t, err)
				b := &Bundle{SCEP: r, DeviceID: d.ID, Intermediates: []*x509.Certificate{intermediate},
					WiFi: &WiFi{SSID: "Contoso", TrustedServerNames: []string{"radius.contoso.com"}},
					VPN:  &VPN{Name: "Contoso VPN", RemoteAddress: "vpn.contoso.com", ServerCertificateIssuerCommonName: "Contoso VPN CA"}}
				tc.setup(b)
				err = b.Validate()
				if tc.field == "" {
					require.NoError(t, err)
					continue
				}
				requireFieldError(t, err, tc.field)
				_, err = b.JSON(bundleOpts)
				require.ErrorIs(t, err, ErrInvalidProfile)
			}
		})
	}
}

// requireFieldError requires err to be an ErrInvalidProfile naming field.
func requireFieldError(t *testing.T, err error, field string) {
	t.Helper()
	require.ErrorIs(t, err, ErrInvalidProfile)
	var fe *FieldError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, field, fe.Field)
}
