package intunetest

import (
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"slices"
	"time"

	"github.com/scepkit/scepkit/crp/intune"
	"github.com/scepkit/scepkit/profile"
)

// Profile is what Intune minted a challenge for: a SCEP profile's settings as they
// resolved for one device. validateRequest compares the CSR with each field that is
// set and answers the code of the first difference, in this order:
//
//   - Subject: an empty CSR subject is SubjectNameMissing, another one
//     SubjectNameMismatch (the subjects are compared as RFC 4514 strings);
//   - DNSNames, EmailAddresses, URIs, UPNs (user principal names, the otherName
//     1.3.6.1.4.1.311.20.2.3): no subjectAltName extension is
//     SubjectAltNameMissing, other names (as sets, per type) SubjectAltNameMismatch;
//   - KeyUsage: a requested keyUsage extension other than KeyUsage (or none) is
//     KeyUsageMismatch;
//   - KeySize: an RSA key of another size, or a key that is not RSA, is
//     KeyLengthMismatch;
//   - ExtKeyUsages: no extKeyUsage extension is EnhancedKeyUsageMissing, other
//     purposes (as a set) EnhancedKeyUsageMismatch.
//
// The codes are the service's (Microsoft's library lists them); which CSR field
// each one judges is read from its name. The comparison rules themselves are the
// emulator's: the service does not publish them.
type Profile struct {
	Subject                        pkix.Name
	DNSNames, EmailAddresses, URIs []string
	UPNs                           []string
	KeyUsage                       x509.KeyUsage
	KeySize                        int
	ExtKeyUsages                   []x509.ExtKeyUsage
	// DeviceID names the device the challenge was minted for: in refusals'
	// descriptions, and Server.Retire stops honouring its challenges.
	DeviceID string
	// Lifetime is the challenge's validity from minting; 0 means 60 minutes.
	Lifetime time.Duration
}

var (
	oidSAN = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidKU  = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidEKU = asn1.ObjectIdentifier{2, 5, 29, 37}
)

func clonePkixName(n pkix.Name) pkix.Name {
	n.Names = slices.Clone(n.Names)
	return n
}

// judge returns the service's code for csr against p, and a description.
func (p *Profile) judge(csr *x509.CertificateRequest) (intune.Code, string) {
	dev := ""
	if p.DeviceID != "" {
		dev = " (device " + p.DeviceID + ")"
	}
	if want := p.Subject.String(); want != "" {
		got := csr.Subject.String()
		switch {
		case len(csr.Subject.ToRDNSequence()) == 0:
			return intune.CodeSubjectNameMissing, "the CSR has no subject name; the challenge was issued for " + want + dev
		case got != want:
			return intune.CodeSubjectNameMismatch, fmt.Sprintf("Subject Name in CSR %s and challenge %s do not match%s", got, want, dev)
		}
	}
	if len(p.DNSNames)+len(p.EmailAddresses)+len(p.URIs)+len(p.UPNs) > 0 {
		var uris, upns []string
		for _, u := range csr.URIs {
			uris = append(uris, u.String())
		}
		names, nameErr := profile.RequestAltNames(csr)
		if nameErr == nil && names != nil {
			upns = names.UPNs
		}
		switch {
		case nameErr != nil:
			return intune.CodeSubjectAltNameMismatch, "the CSR's subjectAltName does not parse" + dev
		case !hasExtension(csr, oidSAN):
			return intune.CodeSubjectAltNameMissing, "the CSR has no subjectAltName" + dev
		case !sameSet(csr.DNSNames, p.DNSNames) || !sameSet(csr.EmailAddresses, p.EmailAddresses) || !sameSet(uris, p.URIs) ||
			!sameSet(upns, p.UPNs):
			return intune.CodeSubjectAltNameMismatch, "Subject Alternative Name in CSR and challenge do not match" + dev
		}
	}
	if p.KeyUsage != 0 {
		ku, ok := requestedKeyUsage(csr)
		if !ok || ku != p.KeyUsage {
			return intune.CodeKeyUsageMismatch, fmt.Sprintf("key usage in CSR %#x and challenge %#x do not match%s", ku, p.KeyUsage, dev)
		}
	}
	if p.KeySize != 0 {
		pub, ok := csr.PublicKey.(*rsa.PublicKey)
		if !ok || pub.N.BitLen() != p.KeySize {
			got := "a non-RSA key"
			if ok {
				got = fmt.Sprintf("%d bits", pub.N.BitLen())
			}
			return intune.CodeKeyLengthMismatch, fmt.Sprintf("key length in CSR %s and challenge %d bits do not match%s", got, p.KeySize, dev)
		}
	}
	if len(p.ExtKeyUsages) > 0 {
		got, ok := requestedEKUs(csr)
		if !ok {
			return intune.CodeEnhancedKeyUsageMissing, "the CSR requests no extended key usage" + dev
		}
		if !sameSet(got, ekuOIDs(p.ExtKeyUsages)) {
			return intune.CodeEnhancedKeyUsageMismatch, "extended key usage in CSR and challenge do not match" + dev
		}
	}
	return intune.CodeSuccess, ""
}

func hasExtension(csr *x509.CertificateRequest, oid asn1.ObjectIdentifier) bool {
	for _, e := range csr.Extensions {
		if e.Id.Equal(oid) {
			return true
		}
	}
	return false
}

func sameSet(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(slices.Compact(x), slices.Compact(y))
}

// requestedKeyUsage reads the keyUsage extension a CSR requests (RFC 5280 4.2.1.3).
func requestedKeyUsage(csr *x509.CertificateRequest) (x509.KeyUsage, bool) {
	for _, e := range csr.Extensions {
		if !e.Id.Equal(oidKU) {
			continue
		}
		var bits asn1.BitString
		if rest, err := asn1.Unmarshal(e.Value, &bits); err != nil || len(rest) > 0 {
			return 0, false
		}
		var ku x509.KeyUsage
		for i := 0; i < 9; i++ {
			if bits.At(i) != 0 {
				ku |= 1 << uint(i)
			}
		}
		return ku, true
	}
	return 0, false
}

// requestedEKUs reads the extKeyUsage extension a CSR requests, as dotted OIDs.
func requestedEKUs(csr *x509.CertificateRequest) ([]string, bool) {
	for _, e := range csr.Extensions {
		if !e.Id.Equal(oidEKU) {
			continue
		}
		var oids []asn1.ObjectIdentifier
		if rest, err := asn1.Unmarshal(e.Value, &oids); err != nil || len(rest) > 0 {
			return nil, false
		}
		out := make([]string, len(oids))
		for i, o := range oids {
			out[i] = o.String()
		}
		return out, true
	}
	return nil, false
}

var ekuOID = map[x509.ExtKeyUsage]string{
	x509.ExtKeyUsageServerAuth: "1.3.6.1.5.5.7.3.1", x509.ExtKeyUsageClientAuth: "1.3.6.1.5.5.7.3.2",
	x509.ExtKeyUsageCodeSigning: "1.3.6.1.5.5.7.3.3", x509.ExtKeyUsageEmailProtection: "1.3.6.1.5.5.7.3.4",
	x509.ExtKeyUsageIPSECEndSystem: "1.3.6.1.5.5.7.3.5", x509.ExtKeyUsageTimeStamping: "1.3.6.1.5.5.7.3.8",
	x509.ExtKeyUsageOCSPSigning: "1.3.6.1.5.5.7.3.9", x509.ExtKeyUsageAny: "2.5.29.37.0",
}

func ekuOIDs(ekus []x509.ExtKeyUsage) []string {
	out := make([]string, 0, len(ekus))
	for _, e := range ekus {
		if o, ok := ekuOID[e]; ok {
			out = append(out, o)
		} else {
			out = append(out, fmt.Sprintf("unknown-%d", e))
		}
	}
	return out
}
