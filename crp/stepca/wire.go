package stepca

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"net"
	"time"

	"github.com/scepkit/scepkit/crp"
)

// The headers step-ca sets on every webhook request.
const (
	// HeaderSignature carries the hex HMAC-SHA256 of the request body, keyed with the
	// webhook's secret.
	HeaderSignature = "X-Smallstep-Signature"
	// HeaderWebhookID carries the webhook's id.
	HeaderWebhookID = "X-Smallstep-Webhook-ID"
)

// Request is the body step-ca posts to a SCEP provisioner's webhooks (the fields a
// SCEP exchange uses). SCEPCHALLENGE sets SCEPChallenge, SCEPTransactionID and
// X509CertificateRequest; NOTIFYING sets X509Certificate for an issued certificate,
// or SCEPErrorCode and SCEPErrorDescription for a failure.
type Request struct {
	Timestamp              time.Time           `json:"timestamp"`
	ProvisionerName        string              `json:"provisionerName,omitempty"`
	X509CertificateRequest *CertificateRequest `json:"x509CertificateRequest,omitempty"`
	X509Certificate        *Certificate        `json:"x509Certificate,omitempty"`
	SCEPChallenge          string              `json:"scepChallenge,omitempty"`
	SCEPTransactionID      string              `json:"scepTransactionID,omitempty"`
	SCEPErrorCode          int                 `json:"scepErrorCode,omitempty"`
	SCEPErrorDescription   string              `json:"scepErrorDescription,omitempty"`
}

// Name is a subject as step-ca writes it in JSON.
type Name struct {
	Country            []string `json:"country,omitempty"`
	Organization       []string `json:"organization,omitempty"`
	OrganizationalUnit []string `json:"organizationalUnit,omitempty"`
	Locality           []string `json:"locality,omitempty"`
	Province           []string `json:"province,omitempty"`
	StreetAddress      []string `json:"streetAddress,omitempty"`
	PostalCode         []string `json:"postalCode,omitempty"`
	SerialNumber       string   `json:"serialNumber,omitempty"`
	CommonName         string   `json:"commonName,omitempty"`
}

// CertificateRequest is the CSR in a webhook request. Raw (the DER) is what scepkit
// reads; the other fields are informative copies of it.
type CertificateRequest struct {
	Version            int      `json:"version"`
	Subject            Name     `json:"subject"`
	RawSubject         []byte   `json:"rawSubject,omitempty"`
	DNSNames           []string `json:"dnsNames,omitempty"`
	EmailAddresses     []string `json:"emailAddresses,omitempty"`
	IPAddresses        []net.IP `json:"ipAddresses,omitempty"`
	URIs               []string `json:"uris,omitempty"`
	PublicKey          []byte   `json:"publicKey"`
	PublicKeyAlgorithm string   `json:"publicKeyAlgorithm"`
	Raw                []byte   `json:"raw"`
}

// Certificate is the issued certificate in a NOTIFYING request. Raw (the DER) is what
// scepkit reads.
type Certificate struct {
	PublicKey          []byte    `json:"publicKey"`
	PublicKeyAlgorithm string    `json:"publicKeyAlgorithm"`
	NotBefore          time.Time `json:"notBefore"`
	NotAfter           time.Time `json:"notAfter"`
	Raw                []byte    `json:"raw"`
}

// Response is a webhook server's answer. step-ca issues only when Allow is true; Data
// is then available to the provisioner's X.509 template as .Webhooks.<webhook name>.
type Response struct {
	Allow bool           `json:"allow"`
	Data  *Data          `json:"data,omitempty"`
	Error *ResponseError `json:"error,omitempty"`
}

// ResponseError says why a request was not allowed.
type ResponseError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Extension is an X.509 extension as step-ca's templates write it.
type Extension struct {
	ID       string `json:"id"`
	Critical bool   `json:"critical"`
	Value    []byte `json:"value"`
}

// Data is what the registration point decided, in the form step-ca's X.509 templates
// read (see [Template]): the subject and subjectAltName extension as DER, key usages
// and extended key usages by step-ca's names, and the validity.
type Data struct {
	TransactionID string `json:"transactionID"`
	Template      string `json:"template"`
	// RawSubject is the subject's DER.
	RawSubject []byte `json:"rawSubject"`
	// Subject is the subject in words, for templates and logs that want to read it.
	Subject string `json:"subject"`
	// Extensions holds the subjectAltName extension, if any (it may carry names,
	// such as a UPN, that step-ca's "sans" cannot write).
	Extensions         []Extension `json:"extensions"`
	KeyUsage           []string    `json:"keyUsage"`
	ExtKeyUsage        []string    `json:"extKeyUsage"`
	UnknownExtKeyUsage []string    `json:"unknownExtKeyUsage"`
	NotBefore          time.Time   `json:"notBefore"`
	NotAfter           time.Time   `json:"notAfter"`
	User               string      `json:"user,omitempty"`
	Device             string      `json:"device,omitempty"`
	Profile            string      `json:"profile,omitempty"`
}

// Template is a step-ca X.509 template that issues exactly what scepkit decided, for
// a SCEPCHALLENGE webhook named "scepkit" (replace the name in .Webhooks.scepkit if
// yours differs). Put it in the SCEP provisioner's options.x509.templateFile.
const Template = `{
	"rawSubject": {{ toJson .Webhooks.scepkit.rawSubject }},
	"extensions": {{ toJson .Webhooks.scepkit.extensions }},
	"keyUsage": {{ toJson .Webhooks.scepkit.keyUsage }},
	"extKeyUsage": {{ toJson .Webhooks.scepkit.extKeyUsage }},
	"unknownExtKeyUsage": {{ toJson .Webhooks.scepkit.unknownExtKeyUsage }},
	"notBefore": {{ toJson .Webhooks.scepkit.notBefore }},
	"notAfter": {{ toJson .Webhooks.scepkit.notAfter }},
	"basicConstraints": {"isCA": false}
}
`

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// newData writes a decision for step-ca's template.
func newData(d *crp.Decision) *Data {
	t := d.Template
	out := &Data{TransactionID: d.TransactionID, Template: d.TemplateName, RawSubject: t.RawSubject,
		Extensions: []Extension{}, KeyUsage: keyUsageNames(t.KeyUsage), ExtKeyUsage: []string{},
		UnknownExtKeyUsage: []string{}, NotBefore: t.NotBefore.UTC().Truncate(time.Second),
		NotAfter: t.NotAfter.UTC().Truncate(time.Second), User: d.UserID, Device: d.DeviceID, Profile: d.ProfileID}
	var rdn pkix.RDNSequence
	if _, err := asn1.Unmarshal(t.RawSubject, &rdn); err == nil {
		out.Subject = rdn.String()
	}
	for _, e := range t.ExtraExtensions {
		if e.Id.Equal(oidSubjectAltName) {
			out.Extensions = append(out.Extensions, Extension{ID: e.Id.String(), Critical: e.Critical, Value: e.Value})
		}
	}
	for _, u := range t.ExtKeyUsage {
		if n, ok := extKeyUsageNames[u]; ok {
			out.ExtKeyUsage = append(out.ExtKeyUsage, n)
		}
	}
	for _, oid := range t.UnknownExtKeyUsage {
		out.UnknownExtKeyUsage = append(out.UnknownExtKeyUsage, oid.String())
	}
	return out
}

// keyUsageNames names key usages as step-ca's templates do (RFC 5280, 4.2.1.3).
func keyUsageNames(ku x509.KeyUsage) []string {
	names := []string{"digitalSignature", "contentCommitment", "keyEncipherment", "dataEncipherment",
		"keyAgreement", "certSign", "crlSign", "encipherOnly", "decipherOnly"}
	out := []string{}
	for i, n := range names {
		if ku&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// extKeyUsageNames names extended key usages as step-ca's templates do.
var extKeyUsageNames = map[x509.ExtKeyUsage]string{
	x509.ExtKeyUsageAny: "any", x509.ExtKeyUsageServerAuth: "serverAuth", x509.ExtKeyUsageClientAuth: "clientAuth",
	x509.ExtKeyUsageCodeSigning: "codeSigning", x509.ExtKeyUsageEmailProtection: "emailProtection",
	x509.ExtKeyUsageIPSECEndSystem: "ipsecEndSystem", x509.ExtKeyUsageIPSECTunnel: "ipsecTunnel",
	x509.ExtKeyUsageIPSECUser: "ipsecUser", x509.ExtKeyUsageTimeStamping: "timeStamping",
	x509.ExtKeyUsageOCSPSigning:                    "ocspSigning",
	x509.ExtKeyUsageMicrosoftServerGatedCrypto:     "microsoftServerGatedCrypto",
	x509.ExtKeyUsageNetscapeServerGatedCrypto:      "netscapeServerGatedCrypto",
	x509.ExtKeyUsageMicrosoftCommercialCodeSigning: "microsoftCommercialCodeSigning",
	x509.ExtKeyUsageMicrosoftKernelCodeSigning:     "microsoftKernelCodeSigning",
}

// Sign returns the X-Smallstep-Signature of body under secret: hex HMAC-SHA256.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// verify reports whether sig (hex) is body's HMAC under secret, in constant time.
func verify(secret, body []byte, sig string) bool {
	got, err := hex.DecodeString(sig)
	if err != nil || len(got) != sha256.Size {
		return false
	}
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hmac.Equal(got, m.Sum(nil))
}
