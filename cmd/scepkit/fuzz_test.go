package main

import (
	"encoding/asn1"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzParseCAName feeds arbitrary text to parseCAName, as ca_name (a file or the
// environment) gives it. Properties: no panic; on error no name; a name it accepts
// holds one CN, values within their bounds and free of control characters; the
// subjects made of it encode; written back as RFC 4514 writes it (pkix.Name.String)
// it parses to the same attributes; and rollover-prepare -ra-only, reading the CA's
// subject back from its DER, names the RA as ca_name does.
func FuzzParseCAName(f *testing.F) {
	for _, s := range []string{
		"CN=scepkit CA,O=scepkit",
		"CN=Example Device CA,O=Example,C=FR",
		`cn = Issuing , ou=PKI, o=Example\, Inc.`,
		`CN=Caf\C3\A9 CA`,
		`CN=A\+B\=C\\D\ `,
		`CN=Example Device CA,O=Example\, Inc.,C=FR`,
		"CN=a,SERIALNUMBER=12-34,STREET=1 rue,L=Paris,ST=IDF,OU=x",
		"CN=x 2026-01-02T150405Z",
		`CN=\#a\ ,O=\ b`,
		"CN=a+O=b", "CN=a;O=b", "CN=#04", `CN=a\`, `CN=a\FF`,
	} {
		f.Add(s)
	}
	const date, date2 = "2027-01-31T000000Z", "2028-02-29T235959Z"
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseCAName(s)
		if err != nil {
			if n != nil {
				t.Fatalf("%q: a name with the error %v", s, err)
			}
			return
		}
		cns := 0
		for _, a := range n {
			kw, ok := caNameKeywords[a.key]
			switch {
			case !ok || !a.oid.Equal(kw.oid):
				t.Fatalf("%q: attribute %q %v", s, a.key, a.oid)
			case !utf8.ValidString(a.value) || strings.ContainsFunc(a.value, unicode.IsControl):
				t.Fatalf("%q: %s value %q", s, a.key, a.value)
			case strings.TrimSpace(a.value) == "" || utf8.RuneCountInString(a.value) > kw.max:
				t.Fatalf("%q: %s value %q out of bounds", s, a.key, a.value)
			}
			if a.key == "CN" {
				cns++
			}
		}
		if cns != 1 {
			t.Fatalf("%q: %d CNs", s, cns)
		}

		ca := n.subject("CA", date)
		der, err := asn1.Marshal(ca.ToRDNSequence())
		if err != nil {
			t.Fatalf("%q: the CA's subject does not encode: %v", s, err)
		}
		if _, err := asn1.Marshal(n.subject("RA", date).ToRDNSequence()); err != nil {
			t.Fatalf("%q: the RA's subject does not encode: %v", s, err)
		}
		ra, err := raNameFor(der, date2)
		if err != nil {
			t.Fatalf("%q: raNameFor: %v", s, err)
		}
		if got, want := ra.String(), n.subject("RA", date2).String(); got != want {
			t.Fatalf("%q: raNameFor names the RA %q, ca_name %q", s, got, want)
		}

		back, err := parseCAName(n.subject("CA", "").String())
		if err != nil {
			t.Fatalf("%q: written back as %q, refused: %v", s, n.subject("CA", "").String(), err)
		}
		if len(back) != len(n) {
			t.Fatalf("%q: written back, %d attributes, not %d", s, len(back), len(n))
		}
		for i := range n {
			if back[i].key != n[i].key || back[i].value != n[i].value {
				t.Fatalf("%q: written back, attribute %d is %s=%q, not %s=%q", s, i, back[i].key, back[i].value, n[i].key, n[i].value)
			}
		}
	})
}

// FuzzLoadConfig feeds arbitrary bytes to loadConfig as the configuration file, and
// an arbitrary value to one setting's environment variable. Properties: no panic; on
// error no configuration; a configuration it accepts has a ca_name caName takes and
// a positive CRL refresh shorter than the CRL's validity.
func FuzzLoadConfig(f *testing.F) {
	dist, err := os.ReadFile(filepath.Join("dist", "scepkit.toml"))
	if err != nil {
		f.Fatal(err)
	}
	const minimal = "jwks = \"/etc/scepkit/jwks.json\"\ndirectory = \"/etc/scepkit/directory.json\"\n"
	f.Add(dist, uint8(0), "")
	f.Add([]byte(minimal), uint8(0), "")
	f.Add([]byte(minimal+"ca_name = 'CN=Example Device CA,O=Example\\, Inc.,C=FR'\n"), uint8(11), `CN=a,C=FR`)
	f.Add([]byte(minimal+"[intune]\ntenant = \"contoso.onmicrosoft.com\"\nclient_id = \"app\"\nclient_secret = \"s\"\n"), uint8(3), "1h")
	f.Add([]byte(minimal+"[postgres]\ndsn = \"host=127.0.0.1 password = x\"\n[crl]\nvalidity = \"2m\"\nrefresh = \"1m\"\n"), uint8(7), "a, b,,c")
	f.Add([]byte(minimal+"[rollover]\nat = \"2027-01-31T00:00:00Z\"\ndir = \"/x\"\n"), uint8(200), "true")
	f.Add([]byte("listen = [1, 2]\n[[admin]]\n"), uint8(1), "")
	dir := f.TempDir()
	path := filepath.Join(dir, "scepkit.toml")
	settingsList := settings(&config{})
	f.Fuzz(func(t *testing.T, doc []byte, which uint8, value string) {
		if err := os.WriteFile(path, doc, 0o600); err != nil {
			t.Fatal(err)
		}
		env := settingsList[int(which)%len(settingsList)].env
		c, err := loadConfig(path, func(k string) (string, bool) { return value, k == env })
		if err != nil {
			if c != nil {
				t.Fatalf("a configuration with the error %v", err)
			}
			return
		}
		_ = c.caName()
		if c.CRL.Refresh <= 0 || c.CRL.Refresh >= c.CRL.Validity {
			t.Fatalf("crl.refresh %v, crl.validity %v accepted", c.CRL.Refresh, c.CRL.Validity)
		}
		if len(c.Profiles) == 0 {
			t.Fatal("no profile accepted")
		}
	})
}
