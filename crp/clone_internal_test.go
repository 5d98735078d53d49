package crp

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net"
	"net/url"
	"reflect"
	"testing"
)

// TestCloneTemplateSharesNothing fills every field of a template that holds memory
// (slices, pointers, maps; it fails when crypto/x509 adds one it does not fill) and
// checks that its clone holds none of it.
func TestCloneTemplateSharesNothing(t *testing.T) {
	oid := asn1.ObjectIdentifier{1, 2, 3}
	name := pkix.Name{Country: []string{"FR"}, Organization: []string{"o"}, OrganizationalUnit: []string{"ou"},
		Locality: []string{"l"}, Province: []string{"p"}, StreetAddress: []string{"s"}, PostalCode: []string{"1"},
		Names:      []pkix.AttributeTypeAndValue{{Type: oid, Value: "n"}},
		ExtraNames: []pkix.AttributeTypeAndValue{{Type: oid, Value: []byte("x")}}}
	policy, err := x509.OIDFromInts([]uint64{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	_, ipnet, _ := net.ParseCIDR("10.0.0.0/8")
	in := &x509.Certificate{
		Raw: []byte{1}, RawTBSCertificate: []byte{1}, RawSubjectPublicKeyInfo: []byte{1}, RawSubject: []byte{1},
		RawIssuer: []byte{1}, Signature: []byte{1}, SerialNumber: big.NewInt(1), Subject: name, Issuer: name,
		Extensions:                  []pkix.Extension{{Id: oid, Value: []byte{1}}},
		ExtraExtensions:             []pkix.Extension{{Id: oid, Value: []byte{1}}},
		UnhandledCriticalExtensions: []asn1.ObjectIdentifier{oid},
		ExtKeyUsage:                 []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		UnknownExtKeyUsage:          []asn1.ObjectIdentifier{oid},
		SubjectKeyId:                []byte{1}, AuthorityKeyId: []byte{1},
		OCSPServer: []string{"o"}, IssuingCertificateURL: []string{"i"},
		DNSNames: []string{"d"}, EmailAddresses: []string{"e"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		URIs:                []*url.URL{{Scheme: "https", Host: "h", User: url.User("u")}},
		PermittedDNSDomains: []string{"p"}, ExcludedDNSDomains: []string{"e"},
		PermittedIPRanges: []*net.IPNet{ipnet}, ExcludedIPRanges: []*net.IPNet{ipnet},
		PermittedEmailAddresses: []string{"p"}, ExcludedEmailAddresses: []string{"e"},
		PermittedURIDomains: []string{"p"}, ExcludedURIDomains: []string{"e"},
		CRLDistributionPoints: []string{"c"}, PolicyIdentifiers: []asn1.ObjectIdentifier{oid},
		Policies: []x509.OID{policy}, PolicyMappings: []x509.PolicyMapping{{IssuerDomainPolicy: policy, SubjectDomainPolicy: policy}},
	}
	in.Subject.ExtraNames = append(in.Subject.ExtraNames, pkix.AttributeTypeAndValue{Type: oid,
		Value: asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte("r"), FullBytes: []byte{12, 1, 'r'}}})
	// Every field that holds memory is filled above: one crypto/x509 adds later is
	// not, and fails here until it is (and cloneTemplate copies it).
	ct := reflect.TypeOf(*in)
	for i := 0; i < ct.NumField(); i++ {
		f := ct.Field(i)
		switch f.Type.Kind() {
		case reflect.Slice, reflect.Pointer, reflect.Map:
			if reflect.ValueOf(*in).Field(i).IsZero() {
				t.Errorf("x509.Certificate.%s is not filled: fill it, and make cloneTemplate copy it", f.Name)
			}
		}
	}
	out := cloneTemplate(in)
	if !reflect.DeepEqual(in, out) {
		t.Fatal("the clone differs from the template")
	}
	shared(t, "Certificate", reflect.ValueOf(in).Elem(), reflect.ValueOf(out).Elem())
}

// shared fails t for each slice or pointer a and b hold in common, below path. Slices
// and pointers that are empty or nil in a are not memory to share; a field left empty
// above (PublicKey, an interface holding a key, is shared on purpose) is not looked at.
func shared(t *testing.T, path string, a, b reflect.Value) {
	t.Helper()
	switch a.Kind() {
	case reflect.Slice:
		if a.Len() == 0 {
			return
		}
		if a.Pointer() == b.Pointer() {
			t.Errorf("%s: the same slice", path)
			return
		}
		for i := 0; i < a.Len(); i++ {
			shared(t, path+"[]", a.Index(i), b.Index(i))
		}
	case reflect.Pointer:
		if a.IsNil() {
			return
		}
		if a.Pointer() == b.Pointer() {
			t.Errorf("%s: the same pointer", path)
			return
		}
		shared(t, path, a.Elem(), b.Elem())
	case reflect.Struct:
		for i := 0; i < a.NumField(); i++ {
			f := a.Type().Field(i)
			if f.Name == "PublicKey" || !f.IsExported() && a.Type() != reflect.TypeOf(big.Int{}) {
				continue
			}
			shared(t, path+"."+f.Name, a.Field(i), b.Field(i))
		}
	case reflect.Interface:
		if !a.IsNil() {
			shared(t, path, a.Elem(), b.Elem())
		}
	}
}
