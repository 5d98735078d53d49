package challenge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultLeeway is the clock-skew allowance a [Verifier] with zero Leeway
// uses; MaxLeeway is the largest it accepts.
const (
	DefaultLeeway = 30 * time.Second
	MaxLeeway     = time.Minute
)

// NoLeeway, as [Verifier.Leeway], turns the clock-skew allowance off.
const NoLeeway time.Duration = -1

// ClaimMargin is how long a claim is kept past the last moment a [Verifier] could
// accept its challenge (exp plus the leeway). A replay store forgets a claim by the
// clock of whoever sweeps it, which need not be the clock of the verifier that sees
// the challenge next: a gateway's clock stepped forward (an NTP correction, a virtual
// machine resumed with its host's time, local time taken for UTC) and back, another
// gateway sharing the store that runs ahead, a Redis whose own clock expires keys.
// Without a margin, a claim swept under the faster clock while the slower one still
// accepted its challenge let the challenge pass a second time. A day covers any
// time-zone offset taken for UTC; a clock that disagrees by more than a day can
// still reopen a challenge it used. Claims are small (a jti is 16 bytes), and a
// challenge lives an hour at most, so a claim is kept at most about 25 hours.
const ClaimMargin = 24 * time.Hour

// DefaultAlgorithms is the allow-list of a [Verifier] with nil Algorithms.
// HS256 is never in it: a verifier accepts HMAC only when its Algorithms
// name HS256 explicitly. It is for reading: a Verifier with nil Algorithms
// uses its own copy of this list, so that no write to the variable, by any
// package of the process, changes what every Verifier accepts; set
// Verifier.Algorithms instead.
var DefaultAlgorithms = []string{EdDSA, ES256, RS256, PS256}

// defaultAlgorithms is what a Verifier with nil Algorithms allows: DefaultAlgorithms
// as declared.
var defaultAlgorithms = slices.Clone(DefaultAlgorithms)

// maxUnix is 9999-12-31T23:59:59Z: numeric dates beyond it are malformed.
const maxUnix = 253402300799

// Verifier checks challenges offline. Set its fields, then call
// [Verifier.Check] or [Verifier.Verify]; do not change them afterwards. A
// Verifier is safe for concurrent use.
type Verifier struct {
	// Keys holds the verification keys by kid. Required.
	Keys *KeySet
	// Issuer is the iss every challenge must carry. Required.
	Issuer string
	// Audience is this gateway's identity; aud must be exactly it.
	// Required: a verifier without an Audience refuses everything
	// ([ErrConfig]) rather than skipping the check.
	Audience string
	// Algorithms is the allow-list of alg values. Nil means
	// [DefaultAlgorithms]. "none" can never be listed; HS256 must be
	// listed to be accepted, and then only with a secret added by
	// [KeySet.AddSecret].
	Algorithms []string
	// Leeway is the clock skew allowed on nbf, iat and exp. Zero means
	// [DefaultLeeway] (30 s), [NoLeeway] means none; more than
	// [MaxLeeway] (one minute) is [ErrConfig]. It never applies to the
	// one-hour lifetime (exp - iat).
	Leeway time.Duration
	// Replay records one-time use for [Verifier.Verify] and [Verifier.Claim].
	// Required by both: with Replay nil they return [ErrConfig], so that a
	// forgotten store never makes a challenge usable many times. A caller
	// that claims ids itself calls [Verifier.Check].
	Replay ReplayStore
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

var errVerifierFields = fmt.Errorf("%w: Verifier needs Keys, Issuer and Audience", ErrConfig)

// Validate reports, as an error matching [ErrConfig], what would make every
// [Verifier.Check] and [Verifier.Verify] fail whatever the challenge: no Keys, Issuer
// or Audience, no Replay store, a Leeway over [MaxLeeway], Algorithms empty or naming
// one that cannot be allowed. Call it at start, before the first device does.
func (v *Verifier) Validate() error {
	if v.Keys == nil || v.Issuer == "" || v.Audience == "" {
		return errVerifierFields
	}
	if v.Replay == nil {
		return fmt.Errorf("%w: Verifier has no Replay store: challenges are one-time", ErrConfig)
	}
	if _, err := v.leeway(); err != nil {
		return err
	}
	_, err := v.algorithms()
	return err
}

func (v *Verifier) leeway() (time.Duration, error) {
	switch {
	case v.Leeway == 0:
		return DefaultLeeway, nil
	case v.Leeway < 0:
		return 0, nil
	case v.Leeway > MaxLeeway:
		return 0, fmt.Errorf("%w: leeway %v over %v", ErrConfig, v.Leeway, MaxLeeway)
	}
	return v.Leeway, nil
}

func (v *Verifier) algorithms() ([]string, error) {
	if v.Algorithms == nil {
		return defaultAlgorithms, nil
	}
	for _, a := range v.Algorithms {
		if kindFor(a) == 0 {
			return nil, fmt.Errorf("%w: algorithm %q cannot be allowed", ErrConfig, a)
		}
	}
	if len(v.Algorithms) == 0 {
		return nil, fmt.Errorf("%w: empty Algorithms", ErrConfig)
	}
	return v.Algorithms, nil
}

// Check runs every check on challenge except one-time use, in the order of
// the package documentation ("# Check order"), and returns its claims. The
// error satisfies errors.Is with exactly one sentinel of this package.
//
// The CRP calls Check first and claims the id with [Verifier.Claim] later,
// at the end of its phase 2 (once the user is found active), before the
// device and profile checks of phase 3, the template and issuance. It
// releases the claim ([Verifier.Release]) when a later step fails for a
// transient reason or an operator fault, so that such a failure does not
// burn the challenge; any other later refusal does (see the package
// documentation, "# One-time use and retries"). ctx is unused today; it is
// there for key sets that may one day fetch keys.
func (v *Verifier) Check(ctx context.Context, challenge string) (*Claims, error) {
	if v.Keys == nil || v.Issuer == "" || v.Audience == "" {
		return nil, errVerifierFields
	}
	leeway, err := v.leeway()
	if err != nil {
		return nil, err
	}
	algs, err := v.algorithms()
	if err != nil {
		return nil, err
	}

	jws, ok := decode(challenge)
	if !ok {
		return nil, fail(ErrMalformed, "length or alphabet")
	}

	var (
		w         wireClaims
		keyErr    error
		keyCalled bool
		kid       string
	)
	keyfunc := func(t *jwt.Token) (any, error) {
		keyCalled = true
		var e *keyEntry
		// The entry keyFor checked, not a second lookup: the set may lose kid (a
		// rotation's Remove) in between, and a nil entry would panic here.
		e, keyErr = v.keyFor(t, algs, &kid)
		if keyErr != nil {
			return nil, keyErr
		}
		return e.verifyKey(), nil
	}
	parser := jwt.NewParser(jwt.WithValidMethods(algs), jwt.WithoutClaimsValidation(), jwt.WithStrictDecoding())
	tok, err := parser.ParseWithClaims(jws, &w, keyfunc)
	switch {
	case err == nil:
	case keyErr != nil:
		return nil, keyErr
	case errors.Is(err, jwt.ErrTokenMalformed):
		return nil, fail(ErrMalformed, "%v", err)
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// alg missing or unknown to jwt (keyfunc errors were handled above).
		return nil, fail(ErrAlgorithm, "%v", err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid) && !keyCalled:
		// WithValidMethods refused the alg before asking for a key.
		return nil, fail(ErrAlgorithm, "%q not allowed", tok.Method.Alg())
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return nil, fail(ErrSignature, "kid %q", kid)
	default:
		return nil, fail(ErrMalformed, "%v", err)
	}
	return v.checkClaims(&w, tok.Method.Alg(), kid, leeway)
}

// keyFor checks the header of t and finds its key: typ, crit, alg, kid,
// and that the key's type fits the alg. It returns the key's entry.
func (v *Verifier) keyFor(t *jwt.Token, algs []string, kid *string) (*keyEntry, error) {
	if typ, _ := t.Header["typ"].(string); typ != TokenType {
		return nil, fail(ErrType, "typ %q", truncate(typ))
	}
	if _, ok := t.Header["crit"]; ok {
		return nil, fail(ErrMalformed, "crit header")
	}
	alg := t.Method.Alg()
	if !slices.Contains(algs, alg) {
		return nil, fail(ErrAlgorithm, "%q not allowed", truncate(alg))
	}
	*kid, _ = t.Header["kid"].(string)
	if *kid == "" {
		return nil, fail(ErrUnknownKey, "no kid")
	}
	e := v.Keys.lookup(*kid)
	if e == nil {
		return nil, fail(ErrUnknownKey, "kid %q", truncate(*kid))
	}
	if kindFor(alg) != e.kind || (e.alg != "" && e.alg != alg) {
		return nil, fail(ErrAlgorithm, "%s with the key of kid %q", alg, truncate(*kid))
	}
	return e, nil
}

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

func (v *Verifier) checkClaims(w *wireClaims, alg, kid string, leeway time.Duration) (*Claims, error) {
	switch {
	case w.ID == "":
		return nil, fail(ErrMissingClaim, "jti")
	case w.Issuer == "":
		return nil, fail(ErrMissingClaim, "iss")
	case w.Subject == "":
		return nil, fail(ErrMissingClaim, "sub")
	case len(w.Audience) == 0:
		return nil, fail(ErrMissingClaim, "aud")
	case w.IssuedAt == nil:
		return nil, fail(ErrMissingClaim, "iat")
	case w.NotBefore == nil:
		return nil, fail(ErrMissingClaim, "nbf")
	case w.Expires == nil:
		return nil, fail(ErrMissingClaim, "exp")
	}
	for _, t := range []int64{*w.IssuedAt, *w.NotBefore, *w.Expires} {
		if t < 0 || t > maxUnix {
			return nil, fail(ErrMalformed, "numeric date %d out of range", t)
		}
	}
	if w.Issuer != v.Issuer {
		return nil, fail(ErrIssuer, "%q", truncate(w.Issuer))
	}
	if len(w.Audience) != 1 {
		return nil, fail(ErrAudience, "%d audiences, want exactly one", len(w.Audience))
	}
	if w.Audience[0] != v.Audience {
		return nil, fail(ErrAudience, "%q", truncate(w.Audience[0]))
	}

	now := v.now()
	iat, nbf, exp := time.Unix(*w.IssuedAt, 0), time.Unix(*w.NotBefore, 0), time.Unix(*w.Expires, 0)
	latest := now.Add(leeway)
	switch {
	case nbf.After(latest):
		return nil, fail(ErrNotYetValid, "nbf in %v", nbf.Sub(now).Round(time.Second))
	case iat.After(latest):
		return nil, fail(ErrNotYetValid, "iat in %v", iat.Sub(now).Round(time.Second))
	case !now.Before(exp.Add(leeway)):
		return nil, fail(ErrExpired, "%v ago", now.Sub(exp).Round(time.Second))
	case exp.Before(iat):
		return nil, fail(ErrLifetime, "exp before iat")
	case exp.Sub(iat) > MaxLifetime:
		return nil, fail(ErrLifetime, "exp - iat = %v", exp.Sub(iat))
	case nbf.After(exp):
		return nil, fail(ErrLifetime, "nbf after exp")
	}
	return &Claims{
		ID:        w.ID,
		Issuer:    w.Issuer,
		Audience:  w.Audience[0],
		UserID:    w.Subject,
		DeviceID:  w.Device,
		ProfileID: w.Profile,
		IssuedAt:  iat,
		NotBefore: nbf,
		Expires:   exp,
		Extra:     w.Extra,
		KeyID:     kid,
		Algorithm: alg,
	}, nil
}

// Verify is [Verifier.Check] followed by [Verifier.Claim]: the challenge is
// accepted once. On a second presentation the error is [ErrReplayed]. With
// Replay nil it returns [ErrConfig] before looking at the challenge. An
// error of the replay store itself (for example a network failure) is
// returned wrapped and matches no sentinel of this package: it is
// transient, not the device's fault.
func (v *Verifier) Verify(ctx context.Context, challenge string) (*Claims, error) {
	if v.Replay == nil {
		return nil, fmt.Errorf("%w: Verifier has no Replay store: Verify would accept a challenge many times", ErrConfig)
	}
	c, err := v.Check(ctx, challenge)
	if err != nil {
		return nil, err
	}
	if err := v.Claim(ctx, c); err != nil {
		return nil, err
	}
	return c, nil
}

// Claim records one-time use of checked claims c in v.Replay, until c
// expires plus the leeway (as long as [Verifier.Check] could accept it) plus
// [ClaimMargin], so that clocks that disagree by up to a day cannot make the
// challenge pass again. It returns an error matching [ErrReplayed] when the id
// was already claimed, and [ErrConfig] when Replay is nil.
func (v *Verifier) Claim(ctx context.Context, c *Claims) error {
	if v.Replay == nil {
		return fmt.Errorf("%w: Verifier has no Replay store", ErrConfig)
	}
	leeway, err := v.leeway()
	if err != nil {
		return err
	}
	err = v.Replay.Claim(ctx, c.ID, c.Expires.Add(leeway+ClaimMargin))
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrReplayed):
		return fail(ErrReplayed, "jti of challenge issued %v", c.IssuedAt.UTC().Format(time.RFC3339))
	default:
		return fmt.Errorf("challenge: replay store: %w", err)
	}
}

// Release undoes [Verifier.Claim] for c when v.Replay implements
// [Releaser], so that the device can retry after a transient failure
// (for example the CA being unreachable). It returns errors.ErrUnsupported
// when the store cannot release.
func (v *Verifier) Release(ctx context.Context, c *Claims) error {
	r, ok := v.Replay.(Releaser)
	if !ok {
		return fmt.Errorf("challenge: replay store cannot release: %w", errors.ErrUnsupported)
	}
	return r.Release(ctx, c.ID)
}
