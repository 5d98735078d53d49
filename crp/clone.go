package crp

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net"
	"net/url"
	"slices"
)

// cloneTemplate returns a copy of t that shares no slice, map or pointer with it, so
// that an Issuer (or the caller of Decide) may change its copy as it likes, setting
// its own serial or adding the extensions its CA writes, and the certificate is still
// checked against what was decided. The public key is shared: keys are not changed in
// place.
func cloneTemplate(t *x509.Certificate) *x509.Certificate {
	if t == nil {
		return nil
	}
	c := *t
	c.Raw = bytes.Clone(t.Raw)
	c.RawTBSCertificate = bytes.Clone(t.RawTBSCertificate)
	c.RawSubjectPublicKeyInfo = bytes.Clone(t.RawSubjectPublicKeyInfo)
	c.RawSubject = bytes.Clone(t.RawSubject)
	c.RawIssuer = bytes.Clone(t.RawIssuer)
	c.Signature = bytes.Clone(t.Signature)
	if t.SerialNumber != nil {
		c.SerialNumber = new(big.Int).Set(t.SerialNumber)
	}
	c.Subject, c.Issuer = cloneName(t.Subject), cloneName(t.Issuer)
	c.Extensions, c.ExtraExtensions = cloneExtensions(t.Extensions), cloneExtensions(t.ExtraExtensions)
	c.UnhandledCriticalExtensions = cloneOIDs(t.UnhandledCriticalExtensions)
	c.ExtKeyUsage = slices.Clone(t.ExtKeyUsage)
	c.UnknownExtKeyUsage = cloneOIDs(t.UnknownExtKeyUsage)
	c.SubjectKeyId, c.AuthorityKeyId = bytes.Clone(t.SubjectKeyId), bytes.Clone(t.AuthorityKeyId)
	c.OCSPServer, c.IssuingCertificateURL = slices.Clone(t.OCSPServer), slices.Clone(t.IssuingCertificateURL)
	c.DNSNames, c.EmailAddresses = slices.Clone(t.DNSNames), slices.Clone(t.EmailAddresses)
	c.IPAddresses = nil
	for _, ip := range t.IPAddresses {
		c.IPAddresses = append(c.IPAddresses, slices.Clone(ip))
	}
	c.URIs = nil
	for _, u := range t.URIs {
		c.URIs = append(c.URIs, cloneURL(u))
	}
	c.PermittedDNSDomains, c.ExcludedDNSDomains = slices.Clone(t.PermittedDNSDomains), slices.Clone(t.ExcludedDNSDomains)
	c.PermittedIPRanges, c.ExcludedIPRanges = cloneIPNets(t.PermittedIPRanges), cloneIPNets(t.ExcludedIPRanges)
	c.PermittedEmailAddresses, c.ExcludedEmailAddresses = slices.Clone(t.PermittedEmailAddresses), slices.Clone(t.ExcludedEmailAddresses)
	c.PermittedURIDomains, c.ExcludedURIDomains = slices.Clone(t.PermittedURIDomains), slices.Clone(t.ExcludedURIDomains)
	c.CRLDistributionPoints = slices.Clone(t.CRLDistributionPoints)
	c.PolicyIdentifiers = cloneOIDs(t.PolicyIdentifiers)
	c.Policies = slices.Clone(t.Policies) // x509.OID has no method that changes it
	c.PolicyMappings = slices.Clone(t.PolicyMappings)
	return &c
}

func cloneName(n pkix.Name) pkix.Name {
	c := n
	c.Country, c.Organization, c.OrganizationalUnit = slices.Clone(n.Country), slices.Clone(n.Organization), slices.Clone(n.OrganizationalUnit)
	c.Locality, c.Province = slices.Clone(n.Locality), slices.Clone(n.Province)
	c.StreetAddress, c.PostalCode = slices.Clone(n.StreetAddress), slices.Clone(n.PostalCode)
	c.Names, c.ExtraNames = cloneATVs(n.Names), cloneATVs(n.ExtraNames)
	return c
}

func cloneATVs(in []pkix.AttributeTypeAndValue) []pkix.AttributeTypeAndValue {
	if in == nil {
		return nil
	}
	out := make([]pkix.AttributeTypeAndValue, len(in))
	for i, a := range in {
		out[i] = pkix.AttributeTypeAndValue{Type: slices.Clone(a.Type), Value: a.Value}
		switch v := a.Value.(type) {
		case []byte:
			out[i].Value = bytes.Clone(v)
		case asn1.RawValue:
			v.Bytes, v.FullBytes = bytes.Clone(v.Bytes), bytes.Clone(v.FullBytes)
			out[i].Value = v
		}
	}
	return out
}

func cloneExtensions(in []pkix.Extension) []pkix.Extension {
	if in == nil {
		return nil
	}
	out := make([]pkix.Extension, len(in))
	for i, e := range in {
		out[i] = pkix.Extension{Id: slices.Clone(e.Id), Critical: e.Critical, Value: bytes.Clone(e.Value)}
	}
	return out
}

func cloneOIDs(in []asn1.ObjectIdentifier) []asn1.ObjectIdentifier {
	if in == nil {
		return nil
	}
	out := make([]asn1.ObjectIdentifier, len(in))
	for i, o := range in {
		out[i] = slices.Clone(o)
	}
	return out
}

func cloneIPNets(in []*net.IPNet) []*net.IPNet {
	if in == nil {
		return nil
	}
	out := make([]*net.IPNet, len(in))
	for i, n := range in {
		if n != nil {
			out[i] = &net.IPNet{IP: slices.Clone(n.IP), Mask: slices.Clone(n.Mask)}
		}
	}
	return out
}

func cloneURL(u *url.URL) *url.URL {
	if u == nil {
		return nil
	}
	c := *u
	if u.User != nil {
		c.User = new(url.Userinfo)
		*c.User = *u.User
	}
	return &c
}
