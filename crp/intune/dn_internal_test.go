package intune

import "testing"

// TestSameName: issuer names are compared as distinguished names (RFC 4514), not
// as strings cut at every comma: an escaped comma, plus or other character belongs
// to its value (written \, or \2C alike), the attributes of a multi-valued RDN are a
// set, an attribute type may be written by name or OID, and case and white space
// around separators do not count. Split at every comma, "O=Example\, Inc." and
// "O=Example\,Inc." were one name, an escaped comma cut a value in two, and a
// multi-valued RDN written in another order, or with spaces around its plus, was
// another CA.
func TestSameName(t *testing.T) {
	for _, c := range []struct {
		name string
		a, b string
		same bool
	}{
		// As before.
		{"as written", `CN=Issuing CA,O=Example`, `CN=Issuing CA,O=Example`, true},
		{"case", `CN=Issuing CA,O=Example`, `cn=ISSUING CA,o=example`, true},
		{"spaces and a tab after commas", `CN=Issuing CA,O=Example,C=US`, "CN=Issuing CA,  O=Example,\tC=US", true},
		{"a space inside a value", `CN=Issuing CA,O=Example`, `CN=IssuingCA,O=Example`, false},
		{"another CA", `CN=Issuing CA,O=Example`, `CN=Issuing CA 2,O=Example`, false},
		{"not a DN", `Contoso Issuing CA`, ` contoso issuing ca `, true},
		{"not a DN, another", `Contoso Issuing CA`, `Contoso Issuing CA 2`, false},

		// Escaped commas.
		{"escaped comma, case", `CN=CA,O=Example\, Inc.`, `cn=ca, o=EXAMPLE\, INC.`, true},
		{"escaped comma as hex", `CN=CA,O=Example\, Inc.`, `CN=CA,O=Example\2C Inc.`, true},
		{"escaped comma as lower-case hex", `CN=CA,O=Example\, Inc.`, `CN=CA,O=Example\2c Inc.`, true},
		{"the space after an escaped comma counts", `CN=CA,O=Example\, Inc.`, `CN=CA,O=Example\,Inc.`, false},
		{"the space after an escaped comma counts, hex", `CN=CA,O=Example\2C Inc.`, `CN=CA,O=Example\2CInc.`, false},
		{"an escaped comma does not split the value", `CN=x\, O=y`, `CN=x\,O=y`, false},
		{"an escaped comma is not a separator", `OU=a\,b`, `OU=a,OU=b`, false},
		{"an escaped comma is not a separator, spaced", `CN=CA\, O=Example`, `CN=CA, O=Example`, false},

		// Plus: multi-valued RDNs.
		{"multi-valued RDN in another order", `CN=CA,OU=PKI+OU=Ops,O=Example`, `CN=CA,OU=Ops+OU=PKI,O=Example`, true},
		{"spaces around the plus", `CN=CA,OU=PKI+OU=Ops,O=Example`, `CN=CA, OU=PKI + OU=Ops, O=Example`, true},
		{"mixed types in one RDN", `CN=CA+SERIALNUMBER=7,O=Example`, `serialNumber=7+cn=ca,O=Example`, true},
		{"multi-valued RDN is not two RDNs", `CN=CA,OU=PKI+OU=Ops,O=Example`, `CN=CA,OU=PKI,OU=Ops,O=Example`, false},
		{"escaped plus is not a separator", `CN=A+O=B`, `CN=A\+O=B`, false},
		{"escaped plus as hex", `OU=Ops\+Sec`, `OU=Ops\2BSec`, true},
		{"an attribute more in the RDN", `CN=CA+OU=PKI`, `CN=CA+OU=PKI+OU=Ops`, false},
		{"one value twice against two", `OU=PKI+OU=PKI`, `OU=PKI+OU=Ops`, false},

		// The other escapes.
		{"escaped backslash", `CN=a\\b`, `CN=a\5Cb`, true},
		{"escaped quote", `CN=a\"b`, `CN=a\22b`, true},
		{"escaped angle brackets", `CN=\<a\>`, `CN=\3Ca\3E`, true},
		{"escaped semicolon", `CN=a\;b`, `CN=a\3Bb`, true},
		{"equals escaped or not", `CN=a\=b`, `CN=a=b`, true},
		{"escaped sharp", `CN=\#1`, `CN=\231`, true},
		{"UTF-8 in hex pairs", `CN=Caf\C3\A9`, `CN=Café`, true},
		{"UTF-8 in hex pairs, case", `CN=CAF\C3\89`, `CN=café`, true},
		{"invalid UTF-8 compared byte for byte", `CN=\FF`, `CN=\FE`, false},
		{"invalid UTF-8, the same bytes", `CN=\FF`, `CN=\ff`, true},

		// Leading and trailing spaces.
		{"escaped leading space counts", `CN=\ CA`, `CN=CA`, false},
		{"escaped leading space as hex", `CN=\ CA`, `CN=\20CA`, true},
		{"escaped trailing space counts", `CN=CA\ `, `CN=CA`, false},
		{"unescaped trailing space does not", `CN=Issuing CA ,O=Example`, `CN=Issuing CA,O=Example`, true},
		{"unescaped space after the equals sign does not", `CN= Issuing CA`, `CN=Issuing CA`, true},
		{"spaces around the whole", `  CN=Issuing CA  `, `CN=Issuing CA`, true},
		{"escaped spaces both ends as Go writes them", `CN=\ Issuing CA #1\ `, `CN=\20Issuing CA #1\20`, true},

		// Types and order.
		{"type as OID", `CN=CA,O=Example`, `2.5.4.3=CA,2.5.4.10=Example`, true},
		{"type as OID. prefix", `CN=CA`, `OID.2.5.4.3=CA`, true},
		{"hex value of a string type", `E=a@b,CN=CA`, `1.2.840.113549.1.9.1=#0c03614062,CN=CA`, true},
		{"hex value against an escaped sharp", `CN=#0c03614062`, `CN=\#0c03614062`, false},
		{"RDN order counts", `CN=CA,O=Example`, `O=Example,CN=CA`, false},
		{"an RDN more", `CN=CA`, `CN=CA,O=Example`, false},
		{"other type", `CN=Example`, `O=Example`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := sameName(c.a, c.b); got != c.same {
				t.Errorf("sameName(%q, %q) = %v, want %v", c.a, c.b, got, c.same)
			}
			if got := sameName(c.b, c.a); got != c.same {
				t.Errorf("sameName(%q, %q) = %v, want %v", c.b, c.a, got, c.same)
			}
		})
	}
}

// FuzzSameName: for any two strings, no panic, and sameName is reflexive and
// symmetric.
func FuzzSameName(f *testing.F) {
	for _, s := range []string{`CN=Issuing CA,O=Example\, Inc.`, `CN=CA,OU=PKI+OU=Ops`, `1.2.840.113549.1.9.1=#0c03614062`,
		`CN=\ a\20`, `Contoso CA`, `CN=a\`, `=`, `,`, `CN=#`, `OID.2.5.4.3=x`} {
		f.Add(s, s+" ")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if !sameName(a, a) {
			t.Errorf("sameName(%q, itself) = false", a)
		}
		if sameName(a, b) != sameName(b, a) {
			t.Errorf("sameName(%q, %q) is not symmetric", a, b)
		}
	})
}
