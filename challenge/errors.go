package challenge

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by [Verifier.Check] and
// [Verifier.Verify] about the challenge satisfies errors.Is with exactly one of them,
// in the order listed in the package documentation ("# Check order"); an error of
// the replay store itself (a network failure, say) matches none of them: it is not
// the challenge's fault, and IsExpiry and IsGenuineness are false for it.
//
// Phase 1 of the CRP ("expiry", SCEP failInfo badTime) is [ErrExpired],
// [ErrNotYetValid] and [ErrLifetime]; see [IsExpiry]. Every other sentinel
// except [ErrConfig] is phase 2 ("genuineness", badRequest); see
// [IsGenuineness]. [ErrConfig] is an operator error, not the device's fault.
var (
	// ErrMalformed: the challenge is not a well-formed token: wrong
	// alphabet, not three segments, bad base64 or JSON, too long, a
	// critical header, or a numeric date that is not an integer second
	// between 1970 and 9999.
	ErrMalformed = errors.New("challenge: malformed")
	// ErrAlgorithm: the alg header is missing, "none", not on the
	// verifier's allow-list, or does not match the type of the key its
	// kid names (algorithm confusion).
	ErrAlgorithm = errors.New("challenge: algorithm refused")
	// ErrType: the typ header is not [TokenType].
	ErrType = errors.New("challenge: wrong token type")
	// ErrUnknownKey: the kid header is missing or names no key of the
	// verifier's [KeySet] (for example a key that was removed).
	ErrUnknownKey = errors.New("challenge: unknown key")
	// ErrSignature: the signature does not verify with the key named by kid.
	ErrSignature = errors.New("challenge: bad signature")
	// ErrMissingClaim: a signed token lacks jti, iss, sub, aud, iat, nbf or
	// exp. A replay store returns it for an empty id.
	ErrMissingClaim = errors.New("challenge: missing claim")
	// ErrIssuer: iss is not the verifier's Issuer.
	ErrIssuer = errors.New("challenge: wrong issuer")
	// ErrAudience: aud is not exactly the verifier's Audience (a challenge
	// minted for another gateway, or for several).
	ErrAudience = errors.New("challenge: wrong audience")
	// ErrNotYetValid: nbf or iat lies in the future by more than the leeway.
	ErrNotYetValid = errors.New("challenge: not yet valid")
	// ErrExpired: exp has passed by more than the leeway.
	ErrExpired = errors.New("challenge: expired")
	// ErrLifetime: exp - iat exceeds [MaxLifetime], exp precedes iat, or
	// nbf lies outside [iat, exp]. Also returned by [Issuer.Issue] for a
	// requested lifetime over one hour, negative, or under one second (a token's
	// times are in whole seconds).
	ErrLifetime = errors.New("challenge: lifetime out of bounds")
	// ErrReplayed: the challenge's id was already claimed in the
	// [ReplayStore].
	ErrReplayed = errors.New("challenge: already used")
	// ErrConfig: the Issuer, Verifier or KeySet is misconfigured (for
	// example no Audience, a leeway over one minute, a key of an
	// unsupported type). Not a property of the challenge.
	ErrConfig = errors.New("challenge: configuration error")
)

// IsExpiry reports whether err is a CRP phase 1 ("expiry") failure:
// [ErrExpired], [ErrNotYetValid] or [ErrLifetime].
func IsExpiry(err error) bool {
	return errors.Is(err, ErrExpired) || errors.Is(err, ErrNotYetValid) || errors.Is(err, ErrLifetime)
}

// IsGenuineness reports whether err is a CRP phase 2 ("genuineness")
// failure: any sentinel of this package other than the phase 1 ones and
// [ErrConfig].
func IsGenuineness(err error) bool {
	for _, s := range []error{ErrMalformed, ErrAlgorithm, ErrType, ErrUnknownKey, ErrSignature,
		ErrMissingClaim, ErrIssuer, ErrAudience, ErrReplayed} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// fail wraps a sentinel with detail. The detail never contains the challenge.
func fail(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)
}
