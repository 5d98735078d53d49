package profile

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"
)

// FuzzRenderSubject renders an arbitrary format with an arbitrary value in every
// variable. Properties: no panic; errors are typed; on success the structure is the
// format's whatever the value holds (same RDN and attribute count), each value is the
// format's literal text with the value substituted, RawSubject decodes to the same
// attributes, and the Windows DN string parses back to the same attributes.
// Seeds: testdata/fuzz/FuzzRenderSubject.
func FuzzRenderSubject(f *testing.F) {
	f.Add("CN={{UserName}},O=Contoso", "jane,CN=admin")
	f.Add(`CN="{{OnPrem_Distinguished_Name}}"+UID={{Dept}}`, `a"b`)
	f.Fuzz(func(t *testing.T, format, value string) {
		p := testProfile()
		p.SubjectNameFormat = format
		p.SubjectAlternativeNames = nil
		parsed, perr := ParseSubjectFormat(format)
		u := User{ID: value, UserPrincipalName: value, Email: value, UserName: value, OnPremDistinguishedName: value,
			OnPremSamAccountName: value, OnPremSecurityIdentifier: value}
		d := Device{ID: value, AADDeviceID: value, SerialNumber: value, Name: value, FQDN: value, IMEI: value,
			MEID: value, WiFiMAC: value, EthernetMAC: value, EASID: value}
		custom := Values{}
		if perr == nil {
			for _, n := range parsed.Variables() {
				if lookupBuiltin(n) == nil {
					custom[n] = value
				}
			}
		}
		r, err := Render(p, u, d, custom)
		if err != nil {
			var fe *FieldError
			var ve *VariableError
			var fme *FormatError
			if !errors.As(err, &fe) && !errors.As(err, &ve) && !errors.As(err, &fme) {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			return
		}
		if perr != nil {
			t.Fatalf("format %q failed to parse but rendered", format)
		}
		if len(r.Attributes) != parsed.Len() {
			t.Fatalf("attribute count %d, format has %d", len(r.Attributes), parsed.Len())
		}
		i := 0
		for ri, rdn := range parsed.rdns {
			for _, a := range rdn {
				var want strings.Builder
				for _, s := range a.value {
					if s.variable != "" {
						if strings.EqualFold(s.variable, "OnPremisesSecurityIdentifier") {
							want.WriteString(sidURIPrefix)
						}
						want.WriteString(value)
					} else {
						want.WriteString(s.lit)
					}
				}
				got := r.Attributes[i]
				if got.Value != want.String() || got.RDN != ri || !got.Type.Equal(a.typ.oid) {
					t.Fatalf("attribute %d = %+v, want %q in RDN %d", i, got, want.String(), ri)
				}
				i++
			}
		}
		var seq pkix.RDNSequence
		if rest, err := asn1.Unmarshal(r.RawSubject, &seq); err != nil || len(rest) != 0 {
			t.Fatalf("RawSubject does not decode: %v", err)
		}
		if len(seq) != len(parsed.rdns) {
			t.Fatalf("RawSubject has %d RDNs, format %d", len(seq), len(parsed.rdns))
		}
		n := 0
		for _, rdn := range seq {
			for _, atv := range rdn {
				if s, ok := atv.Value.(string); !ok || !containsAttr(r.Attributes, atv.Type, s) {
					t.Fatalf("RawSubject attribute %v=%v not rendered", atv.Type, atv.Value)
				}
				n++
			}
		}
		if n != len(r.Attributes) {
			t.Fatalf("RawSubject has %d attributes, want %d", n, len(r.Attributes))
		}
		back, err := parseDN(r.SubjectString(), false)
		if err != nil {
			t.Fatalf("DN string %q does not parse: %v", r.SubjectString(), err)
		}
		checkSameAttrs(t, back, r.Attributes)
	})
}

func containsAttr(attrs []Attribute, oid asn1.ObjectIdentifier, v string) bool {
	for _, a := range attrs {
		if a.Type.Equal(oid) && a.Value == v {
			return true
		}
	}
	return false
}

func checkSameAttrs(t *testing.T, f *SubjectFormat, attrs []Attribute) {
	t.Helper()
	i := 0
	for ri, rdn := range f.rdns {
		for _, a := range rdn {
			lit := ""
			for _, s := range a.value {
				lit += s.lit
			}
			if i >= len(attrs) || !a.typ.oid.Equal(attrs[i].Type) || lit != attrs[i].Value || attrs[i].RDN != ri {
				t.Fatalf("DN string attribute %d: %v=%q (RDN %d) does not match %+v", i, a.typ.oid, lit, ri, attrs)
			}
			i++
		}
	}
	if i != len(attrs) {
		t.Fatalf("DN string has %d attributes, want %d", i, len(attrs))
	}
}

// FuzzDNBuilder builds a DN string from arbitrary values (the Windows SubjectName) and
// parses it back: every value that Render could produce survives unchanged, as one
// attribute. Values are separated by \x1f in the input; a \x1e before a value joins it to
// the previous RDN. Seeds: testdata/fuzz/FuzzDNBuilder.
func FuzzDNBuilder(f *testing.F) {
	f.Add("jane\x1fContoso, Inc.\x1f\x1e\"quoted\"")
	f.Fuzz(func(t *testing.T, in string) {
		types := []asn1.ObjectIdentifier{oidCN, {2, 5, 4, 10}, {2, 5, 4, 11}, {1, 2, 3, 4}}
		var attrs []Attribute
		rdn := -1
		for i, v := range strings.Split(in, "\x1f") {
			join := strings.HasPrefix(v, "\x1e") && rdn >= 0
			v = strings.TrimPrefix(v, "\x1e")
			if checkValue(nil, v) != "" {
				continue // Render never produces it
			}
			if !join {
				rdn++
			}
			attrs = append(attrs, Attribute{Type: types[i%len(types)], Value: v, RDN: rdn})
		}
		s := formatDN(attrs)
		back, err := parseDN(s, false)
		if err != nil {
			t.Fatalf("%q does not parse: %v", s, err)
		}
		checkSameAttrs(t, back, attrs)
		if _, err := marshalRDNs(attrs); err != nil {
			t.Fatalf("marshal: %v", err)
		}
	})
}

// FuzzParseAltNames: no panic; whatever parses re-encodes to bytes that parse to the
// same names. Seeds: testdata/fuzz/FuzzParseAltNames.
func FuzzParseAltNames(f *testing.F) {
	a := &AltNames{DNSNames: []string{"a.example"}, UPNs: []string{"u@example"}, EmailAddresses: []string{"e@example"}}
	der, _ := a.Marshal()
	f.Add(der)
	f.Fuzz(func(t *testing.T, der []byte) {
		a, err := ParseAltNames(der)
		if err != nil {
			if a != nil {
				t.Fatal("non-nil result with error")
			}
			return
		}
		again, err := a.Marshal()
		if err != nil {
			return // e.g. a URI that url.Parse accepted but re-prints as non-ASCII
		}
		b, err := ParseAltNames(again)
		if err != nil {
			t.Fatalf("re-encoded names do not parse: %v", err)
		}
		if strings.Join(a.DNSNames, "\n") != strings.Join(b.DNSNames, "\n") ||
			strings.Join(a.UPNs, "\n") != strings.Join(b.UPNs, "\n") ||
			strings.Join(a.EmailAddresses, "\n") != strings.Join(b.EmailAddresses, "\n") ||
			len(a.URIs) != len(b.URIs) || len(a.IPAddresses) != len(b.IPAddresses) || len(a.Others) != len(b.Others) {
			t.Fatalf("round trip changed names: %+v vs %+v", a, b)
		}
	})
}

// FuzzCheck: any CSR crypto/x509 parses can be checked without panic, and a mismatch is
// always reported as typed errors. Seeded with a matching CSR at run time.
func FuzzCheck(f *testing.F) {
	testKeys(f)
	p := testProfile()
	r, err := Render(p, testUser(), testDevice(), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(csrFor(f, r, rsaKey, nil).Raw)
	f.Add(csrFor(f, r, ecKey, nil).Raw)
	f.Fuzz(func(t *testing.T, der []byte) {
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			return
		}
		err = Check(csr, r)
		for _, e := range unwrapAll(err) {
			if e == nil {
				continue
			}
			var me *MismatchError
			if !errors.As(e, &me) {
				t.Fatalf("untyped error %T: %v", e, e)
			}
		}
	})
}

// FuzzBundle: whatever the Wi-Fi and VPN settings hold, each export either refuses
// them with a *FieldError or writes them as exactly one value: the plist has its five
// payloads and reads the SSID back, the SSID stays one LocURI segment and one WLAN
// profile name, the JSON reads every value back.
func FuzzBundle(f *testing.F) {
	f.Add("Contoso", "radius.contoso.com", "VPN", "vpn.contoso.com")
	f.Add(`</string><key>x`, "a;b", "x\ny", "1.2.3.4")
	f.Add("a/../b%2F", "*.nps.contoso.com", "<&>", "::1")
	f.Add("..", "radius.contoso.com", "VPN", "vpn.contoso.com")
	f.Add(".", "*.a.b", "VPN", "vpn.contoso.com")
	f.Fuzz(func(t *testing.T, ssid, server, vpnName, vpnAddr string) {
		for _, platform := range []Platform{IOS, Windows} {
			b := testBundle(t, platform)
			b.WiFi.SSID, b.WiFi.TrustedServerNames = ssid, []string{server}
			b.VPN.Name, b.VPN.RemoteAddress = vpnName, vpnAddr
			if platform == Windows {
				b.VPN = nil // the Windows export carries none; the Apple round covers it
			}
			var out []byte
			var err error
			if platform == IOS {
				out, err = b.MobileConfig(bundleOpts)
			} else {
				out, err = b.SyncML(bundleOpts)
			}
			j, jerr := b.JSON(bundleOpts)
			if (err == nil) != (jerr == nil) {
				t.Fatalf("%s export and JSON disagree: %v / %v", platform, err, jerr)
			}
			if err != nil {
				var fe *FieldError
				if !errors.As(err, &fe) || out != nil || j != nil {
					t.Fatalf("refusal is not a FieldError without output: %T %v", err, err)
				}
				continue
			}
			var jb JSONBundle
			if err := json.Unmarshal(j, &jb); err != nil || jb.WiFi.SSID != ssid || (jb.VPN != nil) != (b.VPN != nil) ||
				b.VPN != nil && (jb.VPN.Name != vpnName || jb.VPN.RemoteAddress != vpnAddr) ||
				len(jb.WiFi.TrustedServerNames) != 1 || jb.WiFi.TrustedServerNames[0] != server {
				t.Fatalf("JSON does not read back: %v %+v", err, jb)
			}
			if platform == IOS {
				checkPlistValues(t, out, ssid)
				continue
			}
			var doc syncDoc
			dec := xml.NewDecoder(bytes.NewReader(out))
			dec.Strict = true
			if err := dec.Decode(&doc); err != nil || len(doc.Body.Cmds) != 5 {
				t.Fatalf("SyncML: %v, %d commands", err, len(doc.Body.Cmds))
			}
			seg, ok := strings.CutPrefix(doc.Body.Cmds[3].LocURI, "./User/Vendor/MSFT/WiFi/Profile/")
			seg, ok2 := strings.CutSuffix(seg, "/WlanXml")
			if !ok || !ok2 || strings.Contains(seg, "/") || seg == "." || seg == ".." {
				t.Fatalf("SSID %q is not one segment: %s", ssid, doc.Body.Cmds[3].LocURI)
			}
			if back, err := url.PathUnescape(seg); err != nil || back != ssid {
				t.Fatalf("segment %q unescapes to %q, %v", seg, back, err)
			}
			var w parsedWLAN
			dec = xml.NewDecoder(strings.NewReader(doc.Body.Cmds[3].Data))
			dec.Strict = true
			if err := dec.Decode(&w); err != nil || w.SSID != ssid || w.Name != ssid || w.OneX.Host.Eap.TLS.ServerNames != windowsServerNames([]string{server}) {
				t.Fatalf("WLAN profile: %v %+v", err, w)
			}
		}
	})
}

// checkPlistValues walks the plist: six PayloadType keys (five payloads and the
// profile), and the string after SSID_STR is ssid.
func checkPlistValues(t *testing.T, b []byte, ssid string) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(b))
	dec.Strict = true
	var key, text string
	types, gotSSID := 0, ""
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("plist: %v", err)
		}
		switch tk := tok.(type) {
		case xml.CharData:
			text += string(tk)
		case xml.StartElement:
			text = ""
		case xml.EndElement:
			switch tk.Name.Local {
			case "key":
				key = text
				if key == "PayloadType" {
					types++
				}
			case "string":
				if key == "SSID_STR" {
					gotSSID = text
				}
				key = ""
			default:
				key = ""
			}
		}
	}
	if types != 6 || gotSSID != ssid {
		t.Fatalf("plist: %d PayloadType keys, SSID %q, want 6 and %q", types, gotSSID, ssid)
	}
}
