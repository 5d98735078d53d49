package profile

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRenderBasic(t *testing.T) {
	r, err := Render(testProfile(), testUser(), testDevice(), nil)
	require.NoError(t, err)
	require.Equal(t, "CN=jane@contoso.com, OU=Devices, O=Contoso, C=US", r.SubjectString())
	require.Equal(t, []string{"jane@contoso.com"}, r.UPNs)
	require.Equal(t, []string{"jane.doe@contoso.com"}, r.EmailAddresses)
	require.Equal(t, []string{"janes-laptop.corp.contoso.com"}, r.DNSNames)
	require.Len(t, r.URIs, 1)
	require.Equal(t, "urn:device:d1e2v3", r.URIs[0].String())
	require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, r.ExtKeyUsages)
	require.Equal(t, 2048, r.KeySize)
	require.Len(t, r.Subject.ExtraNames, 4)
	require.Equal(t, oidCN, r.Subject.ExtraNames[0].Type)
}

// TestRenderVariables renders every built-in variable, alone as CN.
func TestRenderVariables(t *testing.T) {
	u, d := testUser(), testDevice()
	want := map[string]string{
		"UserName":                  u.UserName,
		"UserPrincipalName":         u.UserPrincipalName,
		"EmailAddress":              u.Email,
		"UserId":                    u.ID,
		"OnPrem_Distinguished_Name": u.OnPremDistinguishedName,
		"OnPremisesSamAccountName":  u.OnPremSamAccountName,
		"onPremisesSamAccountName":  u.OnPremSamAccountName,
		"AAD_Device_ID":             d.AADDeviceID,
		"AzureADDeviceId":           d.AADDeviceID,
		"DeviceId":                  d.ID,
		"Device_Serial":             d.SerialNumber,
		"SerialNumber":              d.SerialNumber,
		"SERIALNUMBER":              d.SerialNumber,
		"DeviceName":                d.Name,
		"FullyQualifiedDomainName":  d.FQDN,
		"IMEI":                      d.IMEI,
		"Device_IMEI":               d.IMEI,
		"IMEINumber":                d.IMEI,
		"MEID":                      d.MEID,
		"WiFiMacAddress":            d.WiFiMAC,
		"EthernetMacAddress":        d.EthernetMAC,
		"EASID":                     d.EASID,
	}
	// Every built-in except the URI-only one is covered.
	for _, name := range BuiltinVariables() {
		if name == "OnPremisesSecurityIdentifier" {
			continue
		}
		_, ok := want[name]
		require.True(t, ok, "variable %s not in test table", name)
	}
	for name, value := range want {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := testProfile()
			p.SubjectNameFormat = `CN="{{` + name + `}}"`
			p.SubjectAlternativeNames = nil
			r, err := Render(p, u, d, nil)
			require.NoError(t, err)
			require.Len(t, r.Attributes, 1)
			require.Equal(t, value, r.Attributes[0].Value)

			// Empty value: an error, never an empty string.
			_, err = Render(p, User{}, Device{}, nil)
			var ve *VariableError
			require.ErrorAs(t, err, &ve)
			require.ErrorIs(t, err, ErrEmptyVariable)
			require.Equal(t, name, ve.Name)

			// Device certificates may use device variables only.
			p.CertificateType = DeviceCertificate
			_, err = Render(p, u, d, nil)
			if IsUserVariable(name) {
				require.ErrorIs(t, err, ErrInvalidProfile)
			} else {
				require.NoError(t, err)
			}
		})
	}
}

func TestRenderSIDURIOnly(t *testing.T) {
	p := testProfile()
	p.SubjectAlternativeNames = []SAN{{Type: SANURI, Value: "{{OnPremisesSecurityIdentifier}}"}}
	r, err := Render(p, testUser(), testDevice(), nil)
	require.NoError(t, err)
	require.Equal(t, "tag:microsoft.com,2022-09-14:sid:S-1-5-21-1-2-3-1001", r.URIs[0].String())

	p.SubjectAlternativeNames = []SAN{{Type: SANDNS, Value: "{{OnPremisesSecurityIdentifier}}"}}
	require.ErrorIs(t, p.Validate(), ErrInvalidProfile)
}

func TestRenderCustomAndUnknown(t *testing.T) {
	p := testProfile()
	p.SubjectNameFormat = "CN={{UserName}},OU={{Department}}"
	_, err := Render(p, testUser(), testDevice(), nil)
	require.ErrorIs(t, err, ErrUnknownVariable)
	var ve *VariableError
	require.ErrorAs(t, err, &ve)
	require.Equal(t, "Department", ve.Name)

	r, err := Render(p, testUser(), testDevice(), Values{"Department": "Sales"})
	require.NoError(t, err)
	require.Equal(t, "Sales", r.Attributes[1].Value)

	_, err = Render(p, testUser(), testDevice(), Values{"Department": ""})
	require.ErrorIs(t, err, ErrEmptyVariable)

	// A custom value may not override the directory.
	_, err = Render(p, testUser(), testDevice(), Values{"Department": "x", "username": "root"})
	require.ErrorIs(t, err, ErrVariableNotAllowed)
}

// TestRenderInjection: whatever a value holds, it stays one attribute value or one SAN.
func TestRenderInjection(t *testing.T) {
	cases := []struct {
		name  string
		value string
		err   error // nil: rendered verbatim
	}{
		{"comma RDN", "jane,CN=admin", nil},
		{"plus multi-valued", "jane+CN=admin", nil},
		{"semicolon", "jane;CN=admin", nil}, // refused in the SAN only
		{"quotes", `jane" ,CN="admin`, nil},
		{"doubled quotes", `""CN=admin""`, nil},
		{"backslash", `jane\,CN=admin`, nil},
		{"equals", "CN=admin", nil},
		{"braces", "{{UserName}}", nil},
		{"angle hash", "<#admin>", nil},
		{"leading space", "  jane", nil},
		{"unicode", "Jäne Dœ 山田", nil},
		{"newline", "jane\nCN=admin", ErrInvalidValue},
		{"carriage return", "jane\rCN=admin", ErrInvalidValue},
		{"NUL", "jane\x00CN=admin", ErrInvalidValue},
		{"tab", "jane\tadmin", ErrInvalidValue},
		{"DEL", "jane\x7f", ErrInvalidValue},
		{"C1", "jane\u0085", ErrInvalidValue},
		{"invalid UTF-8", "jane\xff", ErrInvalidValue},
		{"too long", strings.Repeat("a", maxValueLen+1), ErrInvalidValue},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			testKeys(t)
			p := testProfile()
			p.SubjectNameFormat = "CN={{DeviceName}},O=Contoso"
			p.SubjectAlternativeNames = []SAN{{Type: SANUPN, Value: "{{UserName}}@contoso.com"}}
			u := testUser()
			u.UserName = c.value
			d := testDevice()
			d.Name = c.value
			upnValue := c.value
			if c.err == nil && strings.ContainsAny(c.value, "{};|") {
				// Intune forbids these in SAN text: refused there, fine in the subject.
				_, err := Render(p, u, d, nil)
				require.ErrorIs(t, err, ErrInvalidValue)
				u.UserName = "jane"
				upnValue = "jane"
			}
			r, err := Render(p, u, d, nil)
			if c.err != nil {
				require.ErrorIs(t, err, c.err)
				return
			}
			require.NoError(t, err)
			require.Len(t, r.Attributes, 2)
			require.Equal(t, c.value, r.Attributes[0].Value)
			require.Equal(t, []string{upnValue + "@contoso.com"}, r.UPNs)
			require.Empty(t, r.DNSNames)
			require.Empty(t, r.EmailAddresses)

			// The encoded subject still has exactly two RDNs, and a CSR round-trips.
			csr := csrFor(t, r, rsaKey, nil)
			var seq pkix.RDNSequence
			_, err = asn1.Unmarshal(csr.RawSubject, &seq)
			require.NoError(t, err)
			require.Len(t, seq, 2)
			require.Equal(t, c.value, seq[0][0].Value)
			require.NoError(t, Check(csr, r))

			// The Windows DN string parses back to the same two attributes.
			f, err := parseDN(r.SubjectString(), false)
			require.NoError(t, err)
			require.Equal(t, 2, f.Len())
			require.Equal(t, c.value, f.rdns[0][0].value[0].lit)
		})
	}
}

func TestRenderSANInjection(t *testing.T) {
	for _, v := range []string{"a;3+evil.com", "a|b", "a{b", "a}b", "a\nb"} {
		p := testProfile()
		p.SubjectAlternativeNames = []SAN{{Type: SANUPN, Value: "{{UserName}}"}}
		u := testUser()
		u.UserName = v
		_, err := Render(p, u, testDevice(), nil)
		require.ErrorIs(t, err, ErrInvalidValue, v)
	}
	// A DNS SAN must be a host name, an email an address, a URI absolute.
	for _, c := range []struct {
		typ SANType
		v   string
	}{
		{SANDNS, "evil.com, DNS:x"}, {SANDNS, "a..b"}, {SANDNS, "-a.com"},
		{SANEmail, "nobody"}, {SANEmail, "a b@c"}, {SANEmail, "jäne@c.com"},
		{SANURI, "relative/path"}, {SANURI, "http://x y"},
	} {
		p := testProfile()
		p.SubjectAlternativeNames = []SAN{{Type: c.typ, Value: "{{UserName}}"}}
		u := testUser()
		u.UserName = c.v
		_, err := Render(p, u, testDevice(), nil)
		require.ErrorIs(t, err, ErrInvalidValue, c.v)
	}
}

func TestSubjectFormatGrammar(t *testing.T) {
	good := []struct {
		format string
		want   []string // keyword=value per attribute
		rdns   int
	}{
		{"", nil, 0},
		{"CN=a", []string{"2.5.4.3=a"}, 1},
		{" cn = a , o = b ", []string{"2.5.4.3=a", "2.5.4.10=b"}, 2},
		{"CN=a;O=b", []string{"2.5.4.3=a", "2.5.4.10=b"}, 2},
		{"CN=a+OU=b,O=c", []string{"2.5.4.3=a", "2.5.4.11=b", "2.5.4.10=c"}, 2},
		{`CN="Doe, Jane"`, []string{"2.5.4.3=Doe, Jane"}, 1},
		{`CN="say ""hi"""`, []string{`2.5.4.3=say "hi"`}, 1},
		{`CN=" padded "`, []string{"2.5.4.3= padded "}, 1},
		{"E=a@b.c,EMAIL=d@e.f,emailAddress=g@h.i", []string{"1.2.840.113549.1.9.1=a@b.c", "1.2.840.113549.1.9.1=d@e.f", "1.2.840.113549.1.9.1=g@h.i"}, 3},
		{"S=WA,ST=WA,L=Redmond,STREET=1 Main,C=US", []string{"2.5.4.8=WA", "2.5.4.8=WA", "2.5.4.7=Redmond", "2.5.4.9=1 Main", "2.5.4.6=US"}, 5},
		{"SERIALNUMBER=123,DC=contoso,DC=com,UID=jd", []string{"2.5.4.5=123", "0.9.2342.19200300.100.1.25=contoso", "0.9.2342.19200300.100.1.25=com", "0.9.2342.19200300.100.1.1=jd"}, 4},
		{"OID.1.2.3.4=x,2.5.4.3=y", []string{"1.2.3.4=x", "2.5.4.3=y"}, 2},
		{"T=Eng,SN=Doe,G=Jane,I=J,POSTALCODE=98052,DESCRIPTION=d", []string{"2.5.4.12=Eng", "2.5.4.4=Doe", "2.5.4.42=Jane", "2.5.4.43=J", "2.5.4.17=98052", "2.5.4.13=d"}, 6},
	}
	for _, g := range good {
		f, err := ParseSubjectFormat(g.format)
		require.NoError(t, err, g.format)
		require.Equal(t, g.rdns, len(f.rdns), g.format)
		var got []string
		for _, rdn := range f.rdns {
			for _, a := range rdn {
				got = append(got, a.typ.oid.String()+"="+a.value[0].lit)
			}
		}
		require.Equal(t, g.want, got, g.format)
	}
	bad := []string{
		"CN", "CN=", "=a", "CN=a,", ",CN=a", "CN=a,,O=b", "XX=a", "CN=a=b", `CN=a"b"`, `CN="a`,
		`CN="a"b`, `CN=a\,b`, "CN={{", "CN={{}}", "CN={{a b}}", "CN={a}", "CN=a}", "CN={{a}",
		"CN=a\nb", "CN=a\x00", "OID.=a", "3.1=a", "1.40=a", "1.2.03=a", "CN=\xff",
		"CN=a+", "CN=a+,O=b",
	}
	for _, b := range bad {
		_, err := ParseSubjectFormat(b)
		var fe *FormatError
		require.ErrorAs(t, err, &fe, "%q", b)
		require.ErrorIs(t, err, ErrSubjectFormat)
	}
}

// TestSubjectRoundTrip: RawSubject and Subject both survive CreateCertificateRequest.
func TestSubjectRoundTrip(t *testing.T) {
	testKeys(t)
	p := testProfile()
	p.SubjectNameFormat = `CN="{{UserName}}"+UID={{UserId}},OU="a,b",O=Contoso,C=US,E={{EmailAddress}},DC=com,SERIALNUMBER={{SerialNumber}},OID.1.2.3.4=x`
	u := testUser()
	u.UserName = `Doe, "Jane" + co`
	r, err := Render(p, u, testDevice(), nil)
	require.NoError(t, err)
	want := make([]string, 0, len(r.Attributes))
	for _, a := range r.Attributes {
		want = append(want, a.Type.String()+"="+a.Value)
	}
	for _, useRaw := range []bool{true, false} {
		tmpl := &x509.CertificateRequest{}
		if useRaw {
			tmpl.RawSubject = r.RawSubject
		} else {
			tmpl.Subject = r.Subject
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, rsaKey)
		require.NoError(t, err)
		csr, err := x509.ParseCertificateRequest(der)
		require.NoError(t, err)
		var got []string
		for _, n := range csr.Subject.Names {
			got = append(got, n.Type.String()+"="+n.Value.(string))
		}
		slices.Sort(got)
		w := slices.Clone(want)
		slices.Sort(w)
		require.Equal(t, w, got)
		var seq pkix.RDNSequence
		_, err = asn1.Unmarshal(csr.RawSubject, &seq)
		require.NoError(t, err)
		if useRaw {
			require.Len(t, seq, len(r.Attributes)-1) // CN+UID share an RDN
			require.Len(t, seq[0], 2)
		} else {
			require.Len(t, seq, len(r.Attributes))
		}
	}
}

func TestRenderNil(t *testing.T) {
	_, err := Render(nil, User{}, Device{}, nil)
	require.Error(t, err)
	var fe *FieldError
	require.True(t, errors.As(err, &fe))
}

// TestURISANVerbatim: a URI SAN is the admin's text, variables filled in, in every
// export, in the subjectAltName built from it, and in what Check expects of the CSR.
// Intune's documentation gives "IntuneDeviceId://{{DeviceId}}" for network access
// control, whose servers read that scheme as written; net/url lower-cases a scheme,
// and the rendered name must not.
func TestURISANVerbatim(t *testing.T) {
	testKeys(t)
	for _, tc := range []struct{ template, want string }{
		{"IntuneDeviceId://{{DeviceId}}", "IntuneDeviceId://d1e2v3"},
		{"URN:device:{{DeviceId}}", "URN:device:d1e2v3"},
		{"urn:device:{{DeviceId}}", "urn:device:d1e2v3"},
		{"HTTPS://Example.com/devices/{{DeviceId}}", "HTTPS://Example.com/devices/d1e2v3"},
	} {
		t.Run(tc.template, func(t *testing.T) {
			for _, platform := range []Platform{Windows, IOS} {
				p := testProfile()
				p.Platform = platform
				p.SubjectAlternativeNames = []SAN{{Type: SANURI, Value: tc.template}}
				r, err := Render(p, testUser(), testDevice(), nil)
				require.NoError(t, err)
				require.Len(t, r.URIs, 1)
				require.Equal(t, tc.want, r.URIs[0].String())

				j, err := ExportJSON(r, exportOpts)
				require.NoError(t, err)
				require.Contains(t, string(j), `"uri": [`+"\n"+`      "`+tc.want+`"`)
				if platform == Windows {
					b, err := SyncML(r, exportOpts)
					require.NoError(t, err)
					require.Contains(t, string(b), "<Data>7+"+tc.want+"</Data>")
				} else {
					b, err := MobileConfig(r, exportOpts)
					require.NoError(t, err)
					require.Contains(t, string(b), "<key>uniformResourceIdentifier</key>\n\t\t\t\t\t<string>"+tc.want+"</string>")
				}

				// The extension a CA writes from the rendered names, read back.
				ext, err := r.AltNames().Extension(false)
				require.NoError(t, err)
				require.Contains(t, string(ext.Value), tc.want)
				a, err := ParseAltNames(ext.Value)
				require.NoError(t, err)
				require.Equal(t, tc.want, a.URIs[0].String())

				// A device copies the exported text into its CSR: that matches; the
				// scheme in another case does not (names are compared exactly).
				scheme, rest, _ := strings.Cut(tc.want, ":")
				cases := map[string]string{"as exported": tc.want}
				if lower := strings.ToLower(scheme) + ":" + rest; lower != tc.want {
					cases["other case"] = lower
				}
				for name, uri := range cases {
					der, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(uri)}})
					require.NoError(t, err)
					csr := csrFor(t, r, rsaKey, func(c *x509.CertificateRequest) {
						c.ExtraExtensions[0] = pkix.Extension{Id: OIDSubjectAltName, Value: der}
					})
					if name == "as exported" {
						require.NoError(t, Check(csr, r))
					} else {
						require.ErrorIs(t, Check(csr, r), ErrMismatch)
					}
				}
			}
		})
	}
}

// TestRenderWildcardOnlyAsWritten: a DNS SAN is a wildcard only where the profile
// writes its leading "*." itself. A device renamed "*" under
// {{DeviceName}}.corp.contoso.com rendered *.corp.contoso.com, a wildcard certificate
// for every host of the domain (a VPN gateway's, a RADIUS server's name included).
func TestRenderWildcardOnlyAsWritten(t *testing.T) {
	for _, c := range []struct {
		san, device string
		refused     bool
	}{
		{"{{DeviceName}}.corp.contoso.com", "*", true},
		{"{{DeviceName}}", "*.corp.contoso.com", true},
		{"{{DeviceName}}.corp.contoso.com", "laptop", false},
		{"*.{{DeviceName}}.corp.contoso.com", "laptop", false},
		{"*.{{DeviceName}}", "*.corp.contoso.com", true},
	} {
		p := testProfile()
		p.SubjectAlternativeNames = []SAN{{Type: SANDNS, Value: c.san}}
		d := testDevice()
		d.Name = c.device
		_, err := Render(p, testUser(), d, nil)
		if c.refused {
			require.ErrorIs(t, err, ErrInvalidValue, "%s with %s", c.san, c.device)
		} else {
			require.NoError(t, err, "%s with %s", c.san, c.device)
		}
	}
}
