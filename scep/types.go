package scep

import (
	"encoding/asn1"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/scepkit/scepkit/internal/logtext"
)

// MessageType is the SCEP messageType attribute (RFC 8894 §3.2.1.2). On the wire it is a
// PrintableString holding a decimal number.
type MessageType int

// The message types of RFC 8894 §3.2.1.2. UpdateReq is listed so it can be named and
// refused: scepkit does not implement it.
const (
	CertRep    MessageType = 3
	RenewalReq MessageType = 17
	UpdateReq  MessageType = 18
	PKCSReq    MessageType = 19
	CertPoll   MessageType = 20
	GetCert    MessageType = 21
	GetCRL     MessageType = 22
)

// GetCertInitial is the name older drafts give to [CertPoll].
const GetCertInitial = CertPoll

// String returns the RFC 8894 name of t, or "unknown(N)". It never panics.
func (t MessageType) String() string {
	switch t {
	case CertRep:
		return "CertRep"
	case RenewalReq:
		return "RenewalReq"
	case UpdateReq:
		return "UpdateReq"
	case PKCSReq:
		return "PKCSReq"
	case CertPoll:
		return "CertPoll"
	case GetCert:
		return "GetCert"
	case GetCRL:
		return "GetCRL"
	}
	return "unknown(" + strconv.Itoa(int(t)) + ")"
}

// known reports whether t is one of the message types this package can parse.
func (t MessageType) known() bool {
	switch t {
	case CertRep, RenewalReq, PKCSReq, CertPoll, GetCert, GetCRL:
		return true
	}
	return false
}

// PKIStatus is the pkiStatus attribute of a CertRep (RFC 8894 §3.2.1.3).
type PKIStatus int

// The pkiStatus values of RFC 8894 §3.2.1.3.
const (
	Success PKIStatus = 0
	Failure PKIStatus = 2
	Pending PKIStatus = 3
)

// String returns "SUCCESS", "FAILURE", "PENDING" or "unknown(N)". It never panics.
func (s PKIStatus) String() string {
	switch s {
	case Success:
		return "SUCCESS"
	case Failure:
		return "FAILURE"
	case Pending:
		return "PENDING"
	}
	return "unknown(" + strconv.Itoa(int(s)) + ")"
}

// FailInfo is the failInfo attribute of a CertRep FAILURE (RFC 8894 §3.2.1.4). Its
// values are the RFC's, so its zero value is [BadAlg], not "no failInfo".
type FailInfo int

// The failInfo values of RFC 8894 §3.2.1.4.
const (
	BadAlg          FailInfo = 0 // unrecognized or unsupported algorithm
	BadMessageCheck FailInfo = 1 // integrity check (signature) failed, or undecryptable
	BadRequest      FailInfo = 2 // transaction not permitted or supported
	BadTime         FailInfo = 3 // time outside the allowed window (expired challenge)
	BadCertID       FailInfo = 4 // no certificate could be identified matching the criteria
)

// String returns "badAlg", "badMessageCheck", "badRequest", "badTime", "badCertId" or
// "unknown(N)". It never panics.
func (f FailInfo) String() string {
	switch f {
	case BadAlg:
		return "badAlg"
	case BadMessageCheck:
		return "badMessageCheck"
	case BadRequest:
		return "badRequest"
	case BadTime:
		return "badTime"
	case BadCertID:
		return "badCertId"
	}
	return "unknown(" + strconv.Itoa(int(f)) + ")"
}

// known reports whether f is one of the failInfo values of RFC 8894 §3.2.1.4.
func (f FailInfo) known() bool { return f >= BadAlg && f <= BadCertID }

// ParseFailInfo parses the textual (RFC 8894) or numeric form of a failInfo.
func ParseFailInfo(s string) (FailInfo, error) {
	for f := BadAlg; f <= BadCertID; f++ {
		if s == f.String() || s == strconv.Itoa(int(f)) {
			return f, nil
		}
	}
	return 0, fmt.Errorf("%w: failInfo %s", ErrMalformed, quoted(s))
}

// maxQuoted bounds what an error quotes of a value the peer chose (an attribute, an
// OID): the error reaches logs and, in a client, its caller's output.
const maxQuoted = 64

// quoted is s, cut to maxQuoted bytes, as a Go string literal.
func quoted(s string) string { return strconv.Quote(logtext.Cut(s, maxQuoted)) }

// maxWrappedError bounds what an error of this package quotes of the text of an error
// from crypto/x509 or CMS parsing: that text may carry what the peer chose (a
// certificate's URI or name, whole).
const maxWrappedError = 256

// errText is err's text, cut to maxWrappedError bytes.
func errText(err error) string { return logtext.Cut(err.Error(), maxWrappedError) }

// oidText is oid in dotted form, cut to maxQuoted bytes.
func oidText(oid asn1.ObjectIdentifier) string { return logtext.Cut(oid.String(), maxQuoted) }

// Errors returned by the codec. Each one maps to a failInfo through [FailInfoOf].
var (
	// ErrMalformed reports a message that is not a well-formed PKIMessage.
	ErrMalformed = errors.New("scep: malformed message")
	// ErrUnknownMessageType reports a messageType this package does not implement
	// (including UpdateReq and any number not in RFC 8894).
	ErrUnknownMessageType = errors.New("scep: unknown message type")
	// ErrMissingAttribute reports that a required SCEP authenticated attribute is absent.
	ErrMissingAttribute = errors.New("scep: missing attribute")
	// ErrDuplicateAttribute reports an authenticated attribute present more than once,
	// or with more than one value.
	ErrDuplicateAttribute = errors.New("scep: duplicate attribute")
	// ErrBadNonce reports a senderNonce or recipientNonce of a length outside 8..32 bytes.
	ErrBadNonce = errors.New("scep: bad nonce")
	// ErrBadSignature reports a SignedData whose signature, digest or signer does not verify.
	ErrBadSignature = errors.New("scep: bad signature")
	// ErrUnsupportedAlgorithm reports a digest, signature or cipher algorithm that is
	// refused (MD5 and RC2 always; SHA-1 and single DES unless legacy is allowed).
	ErrUnsupportedAlgorithm = errors.New("scep: unsupported algorithm")
	// ErrNotForUs reports an envelope with no recipient among our certificates.
	ErrNotForUs = errors.New("scep: envelope not addressed to this server")
	// ErrDecrypt reports that the envelope could not be decrypted. All decryption
	// failures return this same value so that a sender learns nothing from them.
	ErrDecrypt = errors.New("scep: decryption failed")
	// ErrBadContent reports a decrypted payload that is not what the message type
	// requires (for example a PKCSReq whose payload is not a CSR).
	ErrBadContent = errors.New("scep: bad message content")
)

// FailError is an error that carries the failInfo a CertRep FAILURE should report.
// A [Responder] returns one to choose the failInfo; [FailInfoOf] reads it back.
// The wrapped error is for logs; it is never sent to the client.
type FailError struct {
	// Info is the failInfo the client receives (badRequest when it is not one of
	// RFC 8894's five values). Its zero value is [BadAlg]: a
	// FailError without Info, such as &FailError{Err: err}, answers badAlg whatever
	// err is. Set Info (or use [Fail]); to let [FailInfoOf] choose from err's
	// sentinels instead, return err without a FailError around it.
	Info FailInfo
	// Err is the cause, for logs; never sent to the client.
	Err error
}

// Fail returns a *FailError with info wrapping err.
func Fail(info FailInfo, err error) error { return &FailError{Info: info, Err: err} }

// Error implements error: "scep: <failInfo>: <wrapped error>", the wrapped error's own
// "scep: " prefix dropped so that it is not said twice.
func (e *FailError) Error() string {
	if e.Err == nil {
		return "scep: " + e.Info.String()
	}
	return "scep: " + e.Info.String() + ": " + strings.TrimPrefix(e.Err.Error(), "scep: ")
}

// Unwrap returns the wrapped error.
func (e *FailError) Unwrap() error { return e.Err }

// FailInfoOf returns the failInfo that answers err: the Info of the first *FailError in
// its chain (badRequest when that Info is not one of the five values of RFC 8894
// §3.2.1.4, which no client could read); otherwise badAlg for
// [ErrUnsupportedAlgorithm], badMessageCheck for [ErrBadSignature], [ErrDecrypt] and
// [ErrNotForUs], and badRequest for anything else.
func FailInfoOf(err error) FailInfo {
	var fe *FailError
	switch {
	case errors.As(err, &fe):
		if !fe.Info.known() {
			return BadRequest
		}
		return fe.Info
	case errors.Is(err, ErrUnsupportedAlgorithm):
		return BadAlg
	case errors.Is(err, ErrBadSignature), errors.Is(err, ErrDecrypt), errors.Is(err, ErrNotForUs):
		return BadMessageCheck
	}
	return BadRequest
}

// Object identifiers of the SCEP authenticated attributes (RFC 8894 §3.2.1) and of the
// CMS attributes used with them.
var (
	oidMessageType    = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 2}
	oidPKIStatus      = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 3}
	oidFailInfo       = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 4}
	oidSenderNonce    = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 5}
	oidRecipientNonce = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 6}
	oidTransactionID  = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 7}
	oidFailInfoText   = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 24, 1}

	oidContentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidMessageDigest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	oidSigningTime   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 5}

	oidChallengePassword = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 7}
	oidExtensionRequest  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 14}

	oidData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidSignedData    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidEnvelopedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3}
)
