package intune

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"unicode/utf16"

	"github.com/scepkit/scepkit/crp"
)

// Code is a result code of the SCEP validation service: its answer is
// {"code": "<Code>", "errorDescription": "..."} and only CodeSuccess passes.
type Code string

// The codes of the validation service (IRA: IntuneScepServiceException.ErrorCode).
const (
	CodeUnknown                                Code = "Unknown"
	CodeSuccess                                Code = "Success"
	CodeCertificateRequestDecodingFailed       Code = "CertificateRequestDecodingFailed"
	CodeChallengePasswordMissing               Code = "ChallengePasswordMissing"
	CodeChallengeDeserializationError          Code = "ChallengeDeserializationError"
	CodeChallengeDecryptionError               Code = "ChallengeDecryptionError"
	CodeChallengeDecodingError                 Code = "ChallengeDecodingError"
	CodeChallengeInvalidTimestamp              Code = "ChallengeInvalidTimestamp"
	CodeChallengeExpired                       Code = "ChallengeExpired"
	CodeSubjectNameMissing                     Code = "SubjectNameMissing"
	CodeSubjectNameMismatch                    Code = "SubjectNameMismatch"
	CodeSubjectAltNameMissing                  Code = "SubjectAltNameMissing"
	CodeSubjectAltNameMismatch                 Code = "SubjectAltNameMismatch"
	CodeKeyUsageMismatch                       Code = "KeyUsageMismatch"
	CodeKeyLengthMismatch                      Code = "KeyLengthMismatch"
	CodeEnhancedKeyUsageMissing                Code = "EnhancedKeyUsageMissing"
	CodeEnhancedKeyUsageMismatch               Code = "EnhancedKeyUsageMismatch"
	CodeAadKeyIdentifierListMissing            Code = "AadKeyIdentifierListMissing"
	CodeRegisteredKeyMismatch                  Code = "RegisteredKeyMismatch"
	CodeSigningCertThumbprintMismatch          Code = "SigningCertThumbprintMismatch"
	CodeScepProfileNoLongerTargetedToTheClient Code = "ScepProfileNoLongerTargetedToTheClient"
	CodeSignatureValidationFailed              Code = "SignatureValidationFailed"
	CodeBadCertificateRequestIdInChallenge     Code = "BadCertificateRequestIdInChallenge"
	CodeBadDeviceIdInChallenge                 Code = "BadDeviceIdInChallenge"
	CodeBadUserIdInChallenge                   Code = "BadUserIdInChallenge"
)

// Codes lists every code the service defines, in Microsoft's order. It is for
// reading: Known uses its own copy.
var Codes = []Code{CodeUnknown, CodeSuccess, CodeCertificateRequestDecodingFailed, CodeChallengePasswordMissing,
	CodeChallengeDeserializationError, CodeChallengeDecryptionError, CodeChallengeDecodingError,
	CodeChallengeInvalidTimestamp, CodeChallengeExpired, CodeSubjectNameMissing, CodeSubjectNameMismatch,
	CodeSubjectAltNameMissing, CodeSubjectAltNameMismatch, CodeKeyUsageMismatch, CodeKeyLengthMismatch,
	CodeEnhancedKeyUsageMissing, CodeEnhancedKeyUsageMismatch, CodeAadKeyIdentifierListMissing,
	CodeRegisteredKeyMismatch, CodeSigningCertThumbprintMismatch, CodeScepProfileNoLongerTargetedToTheClient,
	CodeSignatureValidationFailed, CodeBadCertificateRequestIdInChallenge, CodeBadDeviceIdInChallenge,
	CodeBadUserIdInChallenge}

// knownCodes is Codes as declared: what Known reads, so that no write to the exported
// variable changes which answers the package understands.
var knownCodes = slices.Clone(Codes)

// Known reports whether c is one of Codes as the package declares them (compared
// exactly, as Microsoft's library parses them).
func (c Code) Known() bool {
	return slices.Contains(knownCodes, c)
}

// Verdict maps a refusal code to the registration point's phase and reason: expiry
// and timestamp to phase 1 (badTime); the challenge's decoding, decryption,
// signature, ids and targeting to phase 2; the CSR's subject, SANs, key and
// signing-certificate checks to phase 3. Unknown and codes not in Codes refuse in
// phase 2 (scepkit's choice: no verdict it understands is a pass).
func (c Code) Verdict() (crp.Phase, crp.Reason) {
	switch c {
	case CodeChallengeExpired:
		return crp.PhaseExpiry, crp.ReasonExpired
	case CodeChallengeInvalidTimestamp:
		return crp.PhaseExpiry, crp.ReasonNotYetValid
	case CodeChallengePasswordMissing:
		return crp.PhaseGenuineness, crp.ReasonNoChallenge
	case CodeCertificateRequestDecodingFailed, CodeChallengeDeserializationError, CodeChallengeDecryptionError,
		CodeChallengeDecodingError, CodeBadCertificateRequestIdInChallenge:
		return crp.PhaseGenuineness, crp.ReasonMalformed
	case CodeSignatureValidationFailed:
		return crp.PhaseGenuineness, crp.ReasonBadSignature
	case CodeBadUserIdInChallenge:
		return crp.PhaseGenuineness, crp.ReasonUserUnknown
	case CodeBadDeviceIdInChallenge:
		return crp.PhaseGenuineness, crp.ReasonDeviceUnknown
	case CodeScepProfileNoLongerTargetedToTheClient:
		return crp.PhaseGenuineness, crp.ReasonProfileUnknown
	case CodeSubjectNameMissing, CodeSubjectNameMismatch, CodeSubjectAltNameMissing, CodeSubjectAltNameMismatch,
		CodeKeyUsageMismatch, CodeKeyLengthMismatch, CodeEnhancedKeyUsageMissing, CodeEnhancedKeyUsageMismatch,
		CodeAadKeyIdentifierListMissing, CodeRegisteredKeyMismatch, CodeSigningCertThumbprintMismatch:
		return crp.PhaseMapping, crp.ReasonCSRMismatch
	}
	return crp.PhaseGenuineness, crp.ReasonCheckFailed
}

// ServiceError is a verdict of the validation service other than Success (for a
// validation: a refusal; for a notification: the service did not record it).
type ServiceError struct {
	Op            string // "validateRequest", "successNotification", "failureNotification"
	Code          Code
	Description   string
	TransactionID string
	// RequestID is the client-request-id of the call, for Microsoft support.
	RequestID string
}

// Error implements error.
func (e *ServiceError) Error() string {
	s := "intune: " + e.Op + ": " + string(e.Code)
	if !e.Code.Known() {
		s += " (unknown code)"
	}
	if e.Description != "" {
		s += ": " + e.Description
	}
	return s + " (transactionID " + e.TransactionID + ")"
}

// scepAnswer is the validation service's answer.
type scepAnswer struct {
	Code             *string `json:"code"`
	ErrorDescription string  `json:"errorDescription"`
}

// UnmarshalJSON reads the answer's members by their exact names, as Microsoft's
// library does (encoding/json would also take "Code" or "CODE"), and refuses a
// member given twice: {"code":"SubjectNameMismatch","CODE":"Success"} is no
// Success. Other members are ignored.
func (a *scepAnswer) UnmarshalJSON(b []byte) error {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(b, &members); err != nil {
		return err
	}
	if members == nil {
		return errors.New("the answer is not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil { // {
		return err
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		name, _ := t.(string)
		if (name == "code" || name == "errorDescription") && seen[name] {
			return fmt.Errorf("the answer has %q twice", name)
		}
		seen[name] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return err
		}
	}
	*a = scepAnswer{}
	if raw, ok := members["code"]; ok {
		if err := json.Unmarshal(raw, &a.Code); err != nil {
			return fmt.Errorf("code: %w", err)
		}
	}
	if raw, ok := members["errorDescription"]; ok {
		var d *string
		if err := json.Unmarshal(raw, &d); err != nil {
			return fmt.Errorf("errorDescription: %w", err)
		}
		if d != nil {
			a.ErrorDescription = *d
		}
	}
	return nil
}

// ValidationRequest is the body of validateRequest.
type ValidationRequest struct {
	Request struct {
		TransactionID      string `json:"transactionId"`
		CertificateRequest string `json:"certificateRequest"` // base64 of the DER PKCS#10
		CallerInfo         string `json:"callerInfo"`
	} `json:"request"`
}

// SuccessNotification is the body of successNotification.
type SuccessNotification struct {
	Notification struct {
		TransactionID         string `json:"transactionId"`
		CertificateRequest    string `json:"certificateRequest"`
		CertificateThumbprint string `json:"certificateThumbprint"` // SHA-1 of the DER, hex
		// CertificateSerialNumber is the serial in hex (scepkit writes it upper-case,
		// without separators, as Windows shows it).
		CertificateSerialNumber      string `json:"certificateSerialNumber"`
		CertificateExpirationDateUtc string `json:"certificateExpirationDateUtc"` // ISO 8601, UTC, milliseconds
		IssuingCertificateAuthority  string `json:"issuingCertificateAuthority"`
		CallerInfo                   string `json:"callerInfo"`
		CAConfiguration              string `json:"caConfiguration,omitempty"`
		CertificateAuthority         string `json:"certificateAuthority,omitempty"`
	} `json:"notification"`
}

// FailureNotification is the body of failureNotification.
type FailureNotification struct {
	Notification struct {
		TransactionID      string `json:"transactionId"`
		CertificateRequest string `json:"certificateRequest"`
		HResult            int64  `json:"hResult"`
		ErrorDescription   string `json:"errorDescription"` // at most 255 characters
		CallerInfo         string `json:"callerInfo"`
	} `json:"notification"`
}

// ExpirationFormat is how the expiry is written: web UTC time with milliseconds
// (YYYY-MM-DDThh:mm:ss.sssZ), as Microsoft's library documents.
const ExpirationFormat = "2006-01-02T15:04:05.000Z"

// MaxErrorDescription is the longest errorDescription the service takes.
const MaxErrorDescription = 255

// ValidateRequest asks the service whether the CSR (DER) and the challenge in it are
// Intune's and match the profile. It returns nil for Success, a *ServiceError for any
// other code, and otherwise an error matching crp.ErrUnavailable (sign-in, discovery,
// HTTP, malformed answer). Never issue unless it returns nil.
func (c *Client) ValidateRequest(ctx context.Context, transactionID string, csrDER []byte) error {
	if transactionID == "" || len(csrDER) == 0 {
		return fmt.Errorf("%w: validateRequest needs a transactionID and a CSR", ErrConfig)
	}
	var body ValidationRequest
	body.Request.TransactionID = transactionID
	body.Request.CertificateRequest = base64.StdEncoding.EncodeToString(csrDER)
	body.Request.CallerInfo = c.CallerInfo
	return c.scepCall(ctx, "validateRequest", "ScepActions/validateRequest", transactionID, body)
}

// Issued describes an issued certificate for NotifySuccess.
type Issued struct {
	TransactionID string
	CSR           []byte // DER
	Certificate   *x509.Certificate
	// IssuingCA names the issuing CA (issuingCertificateAuthority); "" means the
	// certificate's issuer DN.
	IssuingCA string
	// CAConfiguration and CertificateAuthority name the CA for revocation requests
	// (Intune sends them back in RevocationRequest.CAConfiguration); Microsoft's
	// library has sent both since November 2020. They are left out when empty (the
	// Java library drops a null field; the C# one sends null).
	CAConfiguration, CertificateAuthority string
}

// Thumbprint is the SHA-1 of a certificate's DER in upper-case hex, as Windows shows
// it and as the success notification carries it.
func Thumbprint(cert *x509.Certificate) string {
	sum := sha1.Sum(cert.Raw)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// SerialHex writes a serial number the way the notification carries it and the
// revocation service sends it back: upper-case hex, even length.
func SerialHex(serial *big.Int) string {
	s := strings.ToUpper(serial.Text(16))
	if len(s)%2 == 1 {
		s = "0" + s
	}
	return s
}

// NotifySuccess tells the service that a certificate was issued for the transaction.
// Its errors are like ValidateRequest's; on any error, do not hand the certificate to
// the device (the service's rule).
func (c *Client) NotifySuccess(ctx context.Context, in *Issued) error {
	if in == nil || in.TransactionID == "" || len(in.CSR) == 0 || in.Certificate == nil {
		return fmt.Errorf("%w: successNotification needs a transactionID, a CSR and the certificate", ErrConfig)
	}
	var body SuccessNotification
	n := &body.Notification
	n.TransactionID = in.TransactionID
	n.CertificateRequest = base64.StdEncoding.EncodeToString(in.CSR)
	n.CertificateThumbprint = Thumbprint(in.Certificate)
	n.CertificateSerialNumber = SerialHex(in.Certificate.SerialNumber)
	n.CertificateExpirationDateUtc = in.Certificate.NotAfter.UTC().Format(ExpirationFormat)
	n.IssuingCertificateAuthority = in.IssuingCA
	if n.IssuingCertificateAuthority == "" {
		n.IssuingCertificateAuthority = in.Certificate.Issuer.String()
	}
	n.CallerInfo = c.CallerInfo
	n.CAConfiguration, n.CertificateAuthority = in.CAConfiguration, in.CertificateAuthority
	return c.scepCall(ctx, "successNotification", "ScepActions/successNotification", in.TransactionID, body)
}

// NotifyFailure tells the service that issuance failed after a successful validation.
// hResult is a 32-bit HRESULT (see HResultFor); description is cut to
// MaxErrorDescription characters.
func (c *Client) NotifyFailure(ctx context.Context, transactionID string, csrDER []byte, hResult uint32, description string) error {
	if transactionID == "" || len(csrDER) == 0 {
		return fmt.Errorf("%w: failureNotification needs a transactionID and a CSR", ErrConfig)
	}
	var body FailureNotification
	n := &body.Notification
	n.TransactionID = transactionID
	n.CertificateRequest = base64.StdEncoding.EncodeToString(csrDER)
	// An HRESULT is a signed 32-bit integer: E_ACCESSDENIED is -2147024891 on the
	// wire, as Microsoft's Java library sends its int.
	n.HResult = int64(int32(hResult))
	n.ErrorDescription = truncate(description, MaxErrorDescription)
	if n.ErrorDescription == "" {
		n.ErrorDescription = "certificate not issued"
	}
	n.CallerInfo = c.CallerInfo
	return c.scepCall(ctx, "failureNotification", "ScepActions/failureNotification", transactionID, body)
}

// truncate cuts s to at most n characters as the service's Java and .NET count
// them (UTF-16 code units: a character outside the Basic Multilingual Plane is two),
// never inside one, marking the cut with "…".
func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "?")
	used, cut := 0, -1
	for i, r := range s {
		u := utf16.RuneLen(r)
		if cut < 0 && used+u > n-1 { // room for the "…", one unit
			cut = i
		}
		if used += u; used > n {
			return s[:cut] + "…"
		}
	}
	return s
}

// scepCall posts to the validation service and judges its answer. Validation and
// notifications are retried after a transient failure (scepkit's choice: each
// names its SCEP transactionID, so a repeat asks the same question or reports the
// same fact; Microsoft's library itself never retries).
func (c *Client) scepCall(ctx context.Context, op, suffix, txID string, body any) error {
	base, err := c.Endpoint(ctx, ValidationService)
	if err != nil {
		return err
	}
	var ans scepAnswer
	var reqID string
	err = c.do(ctx, exchange{method: http.MethodPost, url: base + "/" + suffix, scope: c.intuneScope(),
		apiVersion: orDefault(c.ValidationVersion, ValidationAPIVersion), body: body, retry: true, op: op, txID: txID,
		requestID: &reqID}, &ans)
	if err != nil {
		if errors.Is(err, ErrService) || errors.Is(err, ErrTransport) {
			c.forgetEndpoints()
		}
		return err
	}
	if ans.Code == nil {
		return unavailable(ErrResponse, fmt.Errorf("intune: %s: the answer has no code", op))
	}
	if Code(*ans.Code) != CodeSuccess {
		return &ServiceError{Op: op, Code: Code(*ans.Code), Description: truncate(ans.ErrorDescription, 512), TransactionID: txID,
			RequestID: reqID}
	}
	return nil
}

// HResults for failure notifications: standard Windows codes (scepkit's choice of
// which fits which refusal).
const (
	HResultFail         uint32 = 0x80004005 // E_FAIL
	HResultAccessDenied uint32 = 0x80070005 // E_ACCESSDENIED: the CA refused
	HResultInvalidArg   uint32 = 0x80070057 // E_INVALIDARG: the template refused the key
	HResultUnavailable  uint32 = 0x800706BA // HRESULT_FROM_WIN32(RPC_S_SERVER_UNAVAILABLE): CA unreachable
	HResultNoTemplate   uint32 = 0x80094800 // CERTSRV_E_UNSUPPORTED_CERT_TYPE: no (published) template
)

// HResultFor picks the HRESULT reported for a refusal after validation.
func HResultFor(r crp.Reason) uint32 {
	switch r {
	case crp.ReasonNoTemplate, crp.ReasonTemplateUnpublish:
		return HResultNoTemplate
	case crp.ReasonKeyRefused:
		return HResultInvalidArg
	case crp.ReasonCAUnavailable:
		return HResultUnavailable
	case crp.ReasonCARefused, crp.ReasonRejected:
		return HResultAccessDenied
	}
	return HResultFail
}
