package profile

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Sentinel errors. Every typed error of this package unwraps to one of them, so callers
// may branch with errors.Is as well as errors.As.
var (
	// ErrInvalidProfile is wrapped by every [FieldError].
	ErrInvalidProfile = errors.New("profile: invalid profile")
	// ErrSubjectFormat is wrapped by every [FormatError].
	ErrSubjectFormat = errors.New("profile: invalid subject name format")
	// ErrUnknownVariable: the format names a variable that is neither built in nor
	// supplied by the caller.
	ErrUnknownVariable = errors.New("profile: unknown variable")
	// ErrEmptyVariable: the variable is known but has no value for this user or device.
	ErrEmptyVariable = errors.New("profile: variable has no value")
	// ErrVariableNotAllowed: a user variable in a device certificate, or a URI-only
	// variable outside a URI SAN, or a custom variable that shadows a built-in one.
	ErrVariableNotAllowed = errors.New("profile: variable not allowed here")
	// ErrInvalidValue: a rendered value cannot be encoded safely (control characters,
	// invalid UTF-8, too long, or not valid for its kind of name).
	ErrInvalidValue = errors.New("profile: invalid rendered value")
	// ErrMismatch is wrapped by every [MismatchError].
	ErrMismatch = errors.New("profile: request does not match profile")
)

// FieldError reports one profile setting that is out of range. [Profile.Validate]
// returns one per bad setting, joined.
type FieldError struct {
	// Field is the Go field name, with an index for list elements:
	// "KeySize", "SubjectAlternativeNames[1].Value", "ServerURLs[0]".
	Field string
	// Value is the offending value, printed.
	Value string
	// Reason says what is allowed.
	Reason string
}

// Error implements error.
func (e *FieldError) Error() string {
	return fmt.Sprintf("profile: %s = %s: %s", e.Field, strconv.Quote(e.Value), e.Reason)
}

// Unwrap returns [ErrInvalidProfile].
func (e *FieldError) Unwrap() error { return ErrInvalidProfile }

// FormatError reports a syntax error in a subject name format.
type FormatError struct {
	Format string
	// Offset is the byte offset in Format where the problem was found.
	Offset int
	Reason string
}

// Error implements error.
func (e *FormatError) Error() string {
	return fmt.Sprintf("profile: subject format at offset %d: %s", e.Offset, e.Reason)
}

// Unwrap returns [ErrSubjectFormat].
func (e *FormatError) Unwrap() error { return ErrSubjectFormat }

// VariableError reports a variable or a rendered value that [Render] refuses.
type VariableError struct {
	// Name is the variable name without braces; empty when the whole value is at fault.
	Name string
	// Where is "subject" or "SubjectAlternativeNames[i]".
	Where string
	// Err is one of ErrUnknownVariable, ErrEmptyVariable, ErrVariableNotAllowed,
	// ErrInvalidValue.
	Err error
	// Detail adds context, if any.
	Detail string
}

// Error implements error.
func (e *VariableError) Error() string {
	s := "profile: " + e.Where
	if e.Name != "" {
		s += ": {{" + e.Name + "}}"
	}
	s += ": " + strings.TrimPrefix(e.Err.Error(), "profile: ")
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Unwrap returns Err.
func (e *VariableError) Unwrap() error { return e.Err }

// MismatchError reports one way a CSR differs from the rendered profile. [Check] joins
// one per difference.
type MismatchError struct {
	// Field is one of "subject", "san.dns", "san.email", "san.upn", "san.uri",
	// "san.other", "key.type", "key.size", "key.usage", "eku", "hash",
	// "extension.<oid>", "extension.basicConstraints".
	Field string
	Want  string
	Got   string
}

// Error implements error.
func (e *MismatchError) Error() string {
	return fmt.Sprintf("profile: request does not match: %s: want %s, got %s", e.Field, e.Want, e.Got)
}

// Unwrap returns [ErrMismatch].
func (e *MismatchError) Unwrap() error { return ErrMismatch }
