package profile

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update to create %s", path)
	require.Equal(t, string(want), string(got), "golden file %s differs; rerun with -update if intended", path)
}

// exportProfile has values that need escaping in every format.
func exportProfile(platform Platform) *Profile {
	p := testProfile()
	p.Platform = platform
	p.Name = `Contoso <VPN> & "Wi-Fi"`
	p.SubjectNameFormat = `CN="{{UserName}}"+UID={{UserId}},OU="Sales, EMEA",O=Contoso,C=US,E={{EmailAddress}}`
	p.SubjectAlternativeNames = append(p.SubjectAlternativeNames, SAN{Type: SANDNS, Value: "{{DeviceName}}.contoso.com"})
	p.ServerURLs = []string{"https://scep1.contoso.com/certsrv/mscep/mscep.dll", "https://scep2.contoso.com/a&b/mscep.dll"}
	p.TemplateName = "IntuneUser"
	if platform == Windows {
		p.KeyStorageProvider = KSPTPMIfPresent
		p.RetryDelay = 2 * time.Minute
	}
	return p
}

func exportRendered(t *testing.T, platform Platform) *Rendered {
	u := testUser()
	u.UserName = `Doe, "Jane" <jd> & co`
	r, err := Render(exportProfile(platform), u, testDevice(), nil)
	require.NoError(t, err)
	return r
}

var exportOpts = ExportOptions{Challenge: "eyJhbGciOi.challenge-token", Organization: "Contoso & Co"}

func TestExportJSON(t *testing.T) {
	r := exportRendered(t, Windows)
	b, err := ExportJSON(r, exportOpts)
	require.NoError(t, err)
	golden(t, "export.json", b)

	var j JSONProfile
	require.NoError(t, json.Unmarshal(b, &j))
	require.Equal(t, 1, j.Version)
	require.Equal(t, r.Attributes[0].Value, j.SubjectAttributes[0].Value)
	require.Equal(t, []string{"digitalSignature", "keyEncipherment"}, j.KeyUsage)
	// Field names are part of the API: keep this list in step with JSONProfile.
	var raw map[string]any
	require.NoError(t, json.Unmarshal(b, &raw))
	for _, k := range []string{"version", "profileId", "profileName", "certificateType", "platform", "subject",
		"subjectAttributes", "subjectAltNames", "keyType", "keySize", "keyUsage", "keyStorageProvider", "hash",
		"extendedKeyUsages", "validity", "renewalThresholdPercent", "serverUrls", "caThumbprint", "challenge",
		"retryCount", "retryDelaySeconds"} {
		require.Contains(t, raw, k)
	}
	require.Len(t, raw, 21)
}

func TestExportSyncML(t *testing.T) {
	r := exportRendered(t, Windows)
	b, err := SyncML(r, exportOpts)
	require.NoError(t, err)
	golden(t, "windows.syncml.xml", b)

	// Well-formed, and every node carries what the CSP expects.
	type item struct {
		LocURI string `xml:"Target>LocURI"`
		Format string `xml:"Meta>Format"`
		Data   string `xml:"Data"`
	}
	type cmd struct {
		XMLName xml.Name
		CmdID   int  `xml:"CmdID"`
		Item    item `xml:"Item"`
	}
	var doc struct {
		XMLName xml.Name `xml:"SYNCML:SYNCML1.2 SyncML"`
		Atomic  struct {
			CmdID int   `xml:"CmdID"`
			Cmds  []cmd `xml:",any"`
		} `xml:"SyncBody>Atomic"`
		Final *struct{} `xml:"SyncBody>Final"`
	}
	dec := xml.NewDecoder(bytes.NewReader(b))
	dec.Strict = true
	require.NoError(t, dec.Decode(&doc))
	require.NotNil(t, doc.Final)
	nodes := map[string]item{}
	ids := map[int]bool{doc.Atomic.CmdID: true}
	for _, c := range doc.Atomic.Cmds {
		require.False(t, ids[c.CmdID], "CmdID %d repeated", c.CmdID)
		ids[c.CmdID] = true
		nodes[c.Item.LocURI[strings.LastIndex(c.Item.LocURI, "/")+1:]] = c.Item
	}
	last := doc.Atomic.Cmds[len(doc.Atomic.Cmds)-1]
	require.Equal(t, "Exec", last.XMLName.Local)
	require.Equal(t, "./User/Vendor/MSFT/ClientCertificateInstall/SCEP/prof-1/Install/Enroll", last.Item.LocURI)
	for _, n := range []string{"ServerURL", "Challenge", "EKUMapping", "KeyUsage", "SubjectName", "KeyLength", "HashAlgorithm", "CAThumbprint"} {
		require.Contains(t, nodes, n, "required node %s", n)
	}
	ch, err := base64.StdEncoding.DecodeString(nodes["Challenge"].Data)
	require.NoError(t, err)
	require.Equal(t, exportOpts.Challenge, string(ch))
	require.Equal(t, "160", nodes["KeyUsage"].Data)
	require.Equal(t, "int", nodes["KeyUsage"].Format)
	require.Equal(t, "2", nodes["KeyProtection"].Data)
	require.Equal(t, "2", nodes["RetryDelay"].Data)
	require.Equal(t, "0123456789ABCDEF0123456789ABCDEF01234567", nodes["CAThumbprint"].Data)
	require.Equal(t, strings.Join(exportProfile(Windows).ServerURLs, ";"), nodes["ServerURL"].Data)
	// The SubjectName parses back to exactly the rendered attributes.
	f, err := parseDN(nodes["SubjectName"].Data, false)
	require.NoError(t, err)
	require.Equal(t, len(r.Attributes), f.Len())
	require.Equal(t, r.Attributes[0].Value, f.rdns[0][0].value[0].lit)
	require.Equal(t, "2+jane.doe@contoso.com;3+janes-laptop.corp.contoso.com;3+janes-laptop.contoso.com;7+urn:device:d1e2v3;11+jane@contoso.com", nodes["SubjectAlternativeNames"].Data)

	// Replace mode: no node Add, Replace verbs.
	b, err = SyncML(r, ExportOptions{Challenge: "x", Replace: true, UniqueID: "wifi_1"})
	require.NoError(t, err)
	require.NotContains(t, string(b), "<Add>")
	require.Contains(t, string(b), "<Replace>")
	require.Contains(t, string(b), "SCEP/wifi_1/Install/")

	// Device certificates go under ./Device.
	p := exportProfile(Windows)
	p.CertificateType = DeviceCertificate
	p.SubjectNameFormat = "CN={{AAD_Device_ID}}"
	p.SubjectAlternativeNames = nil
	rd, err := Render(p, User{}, testDevice(), nil)
	require.NoError(t, err)
	b, err = SyncML(rd, exportOpts)
	require.NoError(t, err)
	require.Contains(t, string(b), "<LocURI>./Device/Vendor/MSFT/ClientCertificateInstall/SCEP/prof-1</LocURI>")
}

func TestExportErrors(t *testing.T) {
	win := exportRendered(t, Windows)
	ios := exportRendered(t, IOS)
	for name, f := range map[string]func() error{
		"syncml for iOS":       func() error { _, err := SyncML(ios, exportOpts); return err },
		"mobileconfig for Win": func() error { _, err := MobileConfig(win, exportOpts); return err },
		"syncml no challenge":  func() error { _, err := SyncML(win, ExportOptions{}); return err },
		"syncml bad unique id": func() error { _, err := SyncML(win, ExportOptions{Challenge: "x", UniqueID: "a/../b"}); return err },
		"plist control char":   func() error { _, err := MobileConfig(ios, ExportOptions{Challenge: "a\x01b"}); return err },
		// The override is held to the profile's ServerURLs rules.
		"mobileconfig URL query": func() error {
			_, err := MobileConfig(ios, ExportOptions{ServerURL: "https://scep.example/scep?a=1"})
			return err
		},
		"mobileconfig URL fragment": func() error {
			_, err := MobileConfig(ios, ExportOptions{ServerURL: "https://scep.example/scep#"})
			return err
		},
		"mobileconfig URL ftp": func() error {
			_, err := MobileConfig(ios, ExportOptions{ServerURL: "ftp://scep.example/scep"})
			return err
		},
		"json nil":         func() error { _, err := ExportJSON(nil, exportOpts); return err },
		"mobileconfig nil": func() error { _, err := MobileConfig(nil, exportOpts); return err },
		"syncml nil":       func() error { _, err := SyncML(&Rendered{}, exportOpts); return err },
	} {
		err := f()
		require.ErrorIs(t, err, ErrExport, name)
	}
}

func TestExportMobileConfig(t *testing.T) {
	r := exportRendered(t, IOS)
	b, err := MobileConfig(r, exportOpts)
	require.NoError(t, err)
	golden(t, "ios.mobileconfig", b)
	checkPlist(t, b, r)

	// macOS user certificates are user-scoped.
	m := exportRendered(t, MacOS)
	b, err = MobileConfig(m, ExportOptions{})
	require.NoError(t, err)
	require.Contains(t, string(b), "<string>User</string>")
	require.NotContains(t, string(b), "<key>Challenge</key>")
	checkPlist(t, b, m)
}

// plistCheck is run by python3: it loads the plist with plistlib and checks every key's
// type against Apple's com.apple.security.scep schema, then prints a JSON summary.
const plistCheck = `
import json, plistlib, sys
d = plistlib.load(open(sys.argv[1], 'rb'))
assert d['PayloadType'] == 'Configuration' and d['PayloadVersion'] == 1
assert isinstance(d['PayloadUUID'], str) and isinstance(d['PayloadIdentifier'], str)
assert isinstance(d['PayloadContent'], list) and len(d['PayloadContent']) == 1
p = d['PayloadContent'][0]
assert p['PayloadType'] == 'com.apple.security.scep' and p['PayloadVersion'] == 1
c = p['PayloadContent']
assert isinstance(c, dict)
types = {'URL': str, 'Name': str, 'Subject': list, 'Challenge': str, 'Keysize': int, 'Key Type': str,
         'Key Usage': int, 'Retries': int, 'RetryDelay': int, 'CAFingerprint': bytes, 'SubjectAltName': dict}
for k, v in c.items():
    assert k in types, k
    assert type(v) is types[k], (k, type(v))
for rdn in c.get('Subject', []):
    assert isinstance(rdn, list)
    for pair in rdn:
        assert isinstance(pair, list) and len(pair) == 2 and all(isinstance(s, str) for s in pair)
for k, v in c.get('SubjectAltName', {}).items():
    assert k in ('rfc822Name', 'dNSName', 'uniformResourceIdentifier', 'ntPrincipalName'), k
    assert isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v))
c['CAFingerprint'] = c['CAFingerprint'].hex()
print(json.dumps(c))
`

// python3 finds the distribution's interpreter first (a version manager's shim in
// PATH can take seconds to start).
func python3(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("python3 is required under CI=true to validate the plist")
	}
	t.Skip("python3 not found; plist not validated")
	return ""
}

func checkPlist(t *testing.T, b []byte, r *Rendered) {
	t.Helper()
	py := python3(t)
	path := filepath.Join(t.TempDir(), "p.mobileconfig")
	require.NoError(t, os.WriteFile(path, b, 0o600))
	out, err := exec.Command(py, "-c", plistCheck, path).CombinedOutput()
	require.NoError(t, err, "%s", out)
	var c struct {
		URL            string
		Subject        [][][2]string
		Keysize        int
		KeyUsage       int `json:"Key Usage"`
		CAFingerprint  string
		SubjectAltName map[string]any
	}
	require.NoError(t, json.Unmarshal(out, &c))
	require.Equal(t, r.Profile.ServerURLs[0], c.URL)
	require.Equal(t, 2048, c.Keysize)
	require.Equal(t, 5, c.KeyUsage)
	require.Equal(t, "0123456789abcdef0123456789abcdef01234567", c.CAFingerprint)
	// The Subject array holds exactly the rendered attributes, grouped by RDN.
	n := 0
	for _, rdn := range c.Subject {
		for _, pair := range rdn {
			require.Equal(t, r.Attributes[n].Value, pair[1])
			n++
		}
	}
	require.Equal(t, len(r.Attributes), n)
	require.Equal(t, "CN", c.Subject[0][0][0])
	require.Equal(t, "0.9.2342.19200300.100.1.1", c.Subject[0][1][0])
	require.Equal(t, []any{"janes-laptop.corp.contoso.com", "janes-laptop.contoso.com"}, c.SubjectAltName["dNSName"])
	require.Equal(t, "jane@contoso.com", c.SubjectAltName["ntPrincipalName"])
}

// TestExportSyncMLWindowsHello: with the Windows Hello key storage provider the export
// names a container, without which Windows fails the enrollment (ClientCertificateInstall
// CSP, KeyProtection 4); before, KeyProtection 4 went without it.
func TestExportSyncMLWindowsHello(t *testing.T) {
	for _, c := range []struct{ container, want string }{{"", "scepkit-prof-1"}, {"corp-vpn", "corp-vpn"}} {
		p := exportProfile(Windows)
		p.KeyStorageProvider, p.ContainerName = KSPWindowsHello, c.container
		require.NoError(t, p.Validate())
		r, err := Render(p, testUser(), testDevice(), nil)
		require.NoError(t, err)
		b, err := SyncML(r, exportOpts)
		require.NoError(t, err)
		require.Contains(t, string(b), "<LocURI>./User/Vendor/MSFT/ClientCertificateInstall/SCEP/prof-1/Install/KeyProtection</LocURI>")
		require.Contains(t, string(b), "<LocURI>./User/Vendor/MSFT/ClientCertificateInstall/SCEP/prof-1/Install/ContainerName</LocURI>")
		require.Contains(t, string(b), "<Data>"+c.want+"</Data>")
	}
}

// TestSpreadURLs: with SpreadURLs each device gets the profile's URLs in an order of
// its own (the same order every time its export is built), all of them, and an Apple
// device the first of its order; without it, every device starts at the first URL.
func TestSpreadURLs(t *testing.T) {
	p := exportProfile(Windows)
	p.ServerURLs = []string{"https://gw1.contoso.com/scep", "https://gw2.contoso.com/scep",
		"https://gw3.contoso.com/scep", "https://gw4.contoso.com/scep"}
	r, err := Render(p, testUser(), testDevice(), nil)
	require.NoError(t, err)
	pa := exportProfile(IOS)
	pa.ServerURLs = p.ServerURLs
	ra, err := Render(pa, testUser(), testDevice(), nil)
	require.NoError(t, err)

	syncmlURLs := func(opts ExportOptions) string {
		b, err := SyncML(r, opts)
		require.NoError(t, err)
		i := bytes.Index(b, []byte("/Install/ServerURL"))
		require.Positive(t, i)
		rest := b[i:]
		start := bytes.Index(rest, []byte("<Data>")) + len("<Data>")
		return string(rest[start : start+bytes.Index(rest[start:], []byte("</Data>"))])
	}
	firsts := map[string]int{}
	appleFirsts := map[string]int{}
	for i := 0; i < 200; i++ {
		opts := ExportOptions{Challenge: "challenge-" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strconv.Itoa(i), SpreadURLs: true}
		got := syncmlURLs(opts)
		require.Equal(t, got, syncmlURLs(opts), "the same options export the same bytes")
		urls := strings.Split(got, ";")
		require.ElementsMatch(t, p.ServerURLs, urls, "every URL, once")
		firsts[urls[0]]++

		j := r.JSON(opts)
		require.Equal(t, urls, j.ServerURLs, "the JSON export gives the same device the same order")

		b, err := MobileConfig(ra, opts)
		require.NoError(t, err)
		for _, u := range pa.ServerURLs {
			if bytes.Contains(b, []byte("<string>"+u+"</string>")) {
				appleFirsts[u]++
			}
		}
	}
	require.Len(t, firsts, 4, "devices start at every gateway: %v", firsts)
	require.Len(t, appleFirsts, 4, "Apple devices are given every gateway: %v", appleFirsts)
	for u, n := range firsts {
		require.Greater(t, n, 20, "%s first for %d of 200 devices", u, n)
	}

	// Off, or no challenge to derive an order from: the profile's order.
	require.Equal(t, strings.Join(p.ServerURLs, ";"), syncmlURLs(ExportOptions{Challenge: "c"}))
	require.Equal(t, p.ServerURLs, r.JSON(ExportOptions{SpreadURLs: true}).ServerURLs)
}

// windowsX500Keys are the attribute keys Windows' CertStrToName knows, which turns the
// ClientCertificateInstall CSP's SubjectName into the request's subject: the keys
// CertNameToStr writes (CN L O OU E C S STREET T G I SN SERIALNUMBER DC Description
// PostalCode POBox Phone, as Microsoft's Open Specifications [MS-OSCO] list them) and
// CertStrToName's aliases (Email, ST, Title, GivenName, Initials; wincrypt.h
// documentation). CertStrToName matches them ignoring case;
// any other type must be written "OID.<dotted>", or the device refuses the string
// (CRYPT_E_INVALID_X500_STRING) and the enrollment fails.
var windowsX500Keys = []string{"CN", "L", "O", "OU", "E", "EMAIL", "C", "S", "ST", "STREET", "T", "TITLE",
	"G", "GIVENNAME", "I", "INITIALS", "SN", "SERIALNUMBER", "DC", "DESCRIPTION", "POSTALCODE", "POBOX", "PHONE"}

// TestSyncMLSubjectNameKeys: every attribute type the subject grammar accepts reaches
// the Windows SubjectName node under a key CertStrToName knows, and reads back as the
// same attribute.
func TestSyncMLSubjectNameKeys(t *testing.T) {
	for _, tc := range []struct {
		keyword, value string
	}{
		{"CN", "jane"}, {"O", "Contoso"}, {"OU", "Sales"}, {"C", "US"}, {"L", "Paris"}, {"ST", "WA"},
		{"S", "WA"}, {"STREET", "1 Main St"}, {"SERIALNUMBER", "C02XK1ZZJG5H"}, {"E", "jane@contoso.com"},
		{"EMAIL", "jane@contoso.com"}, {"EMAILADDRESS", "jane@contoso.com"}, {"DC", "contoso"},
		{"UID", "{{UserId}}"}, {"T", "Engineer"}, {"TITLE", "Engineer"}, {"SN", "Doe"}, {"SURNAME", "Doe"},
		{"G", "Jane"}, {"GN", "Jane"}, {"GIVENNAME", "Jane"}, {"I", "JD"}, {"INITIALS", "JD"},
		{"POSTALCODE", "98052"}, {"DESCRIPTION", "laptop"}, {"OID.1.2.3.4", "x"},
		{"0.9.2342.19200300.100.1.1", "jd"},
	} {
		t.Run(tc.keyword, func(t *testing.T) {
			p := testProfile()
			p.SubjectNameFormat = "CN={{UserPrincipalName}}+" + tc.keyword + "=" + tc.value + ",O=Contoso"
			r, err := Render(p, testUser(), testDevice(), nil)
			require.NoError(t, err)
			b, err := SyncML(r, exportOpts)
			require.NoError(t, err)
			var doc struct {
				Cmds []struct {
					LocURI string `xml:"Item>Target>LocURI"`
					Data   string `xml:"Item>Data"`
				} `xml:"SyncBody>Atomic>Add"`
			}
			require.NoError(t, xml.Unmarshal(b, &doc))
			subject := ""
			for _, c := range doc.Cmds {
				if strings.HasSuffix(c.LocURI, "/Install/SubjectName") {
					subject = c.Data
				}
			}
			require.NotEmpty(t, subject)
			f, err := parseDN(subject, false)
			require.NoError(t, err, subject)
			require.Equal(t, len(r.Attributes), f.Len(), subject)
			// Each key as written: what precedes "=" in each attribute, values
			// having no "=" outside quotes in this table.
			for _, rdn := range strings.Split(subject, ", ") {
				for _, ava := range strings.Split(rdn, "+") {
					key, _, _ := strings.Cut(ava, "=")
					if dotted, ok := strings.CutPrefix(key, "OID."); ok {
						_, valid := parseOID(dotted)
						require.True(t, valid, "key %q in %q", key, subject)
						continue
					}
					require.Contains(t, windowsX500Keys, strings.ToUpper(key), "CertStrToName does not know the key %q in %q", key, subject)
				}
			}
			i := 0
			for _, rdn := range f.rdns {
				for _, a := range rdn {
					require.True(t, a.typ.oid.Equal(r.Attributes[i].Type), subject)
					require.Equal(t, r.Attributes[i].Value, a.value[0].lit, subject)
					i++
				}
			}
		})
	}
}

// TestIDNamesExports: every ID Validate accepts names the Windows node and the Apple
// PayloadIdentifier as it is, so the exports' defaults (UniqueID and PayloadIdentifier
// left empty) never refuse a valid profile; ValidateID agrees with Validate.
func TestIDNamesExports(t *testing.T) {
	for _, id := range []string{"a", "win", "prof-1", "Corp_VPN-2.user", "5f6c1b1e-0000-4000-8000-000000000001", strings.Repeat("z", MaxIDLength)} {
		t.Run(id, func(t *testing.T) {
			require.NoError(t, ValidateID(id))
			win := exportProfile(Windows)
			win.ID = id
			r, err := Render(win, testUser(), testDevice(), nil)
			require.NoError(t, err)
			b, err := SyncML(r, ExportOptions{Challenge: "x"})
			require.NoError(t, err)
			require.Contains(t, string(b), "<LocURI>./User/Vendor/MSFT/ClientCertificateInstall/SCEP/"+id+"</LocURI>")

			ios := exportProfile(IOS)
			ios.ID = id
			r, err = Render(ios, testUser(), testDevice(), nil)
			require.NoError(t, err)
			b, err = MobileConfig(r, ExportOptions{})
			require.NoError(t, err)
			require.Contains(t, string(b), "<string>com.scepkit.profile."+id+"</string>")
		})
	}
	for _, id := range []string{"", " ", "a b", "a/b", ".", "..", "a..b", "a.", ".a", "ü", strings.Repeat("z", MaxIDLength+1)} {
		err := ValidateID(id)
		var fe *FieldError
		require.ErrorAs(t, err, &fe, "%q", id)
		require.Equal(t, "ID", fe.Field)
		require.ErrorIs(t, err, ErrInvalidProfile)
		p := testProfile()
		p.ID = id
		require.ErrorIs(t, p.Validate(), ErrInvalidProfile, "%q", id)
	}
}
