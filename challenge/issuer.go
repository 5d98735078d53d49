package challenge

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"time"
)

// Request is what a challenge is minted for.
type Request struct {
	// UserID becomes sub. Required.
	UserID string
	// DeviceID ("dev") and ProfileID ("prof") are optional; every
	// character costs about 1.3 characters of challenge.
	DeviceID, ProfileID string
	// Audience is the identity of the gateway the challenge is meant for
	// (aud). Required: a challenge for gateway A is refused at gateway B.
	Audience string
	// Lifetime is how long the challenge is valid from now. Zero means
	// [MaxLifetime] (one hour); more than one hour, or a negative value, is
	// an error ([ErrLifetime]), never a silent clamp. Precision is one
	// second (rounded down).
	Lifetime time.Duration
	// Extra is an optional set of extra claims, carried as the JSON
	// object "x". Keep it small: it is in every character of the challenge.
	Extra map[string]any
}

// Issuer mints challenges. Set its fields, then call [Issuer.Issue]; do not
// change the fields while Issue runs. An Issuer is safe for concurrent use
// when its Key and Rand are.
type Issuer struct {
	// Name is the iss claim every challenge carries. Required.
	Name string
	// KeyID is the kid header. Empty means [DefaultKeyID] of Key's
	// public key; it is required with Secret.
	KeyID string
	// Key signs challenges: any crypto.Signer (HSM and KMS keys included)
	// whose public key is Ed25519 (alg EdDSA, the default), ECDSA P-256
	// (ES256) or RSA of at least [MinRSABits] (RS256, or PS256 when
	// Algorithm says so).
	Key crypto.Signer
	// Algorithm chooses the alg when Key allows several (RS256 or PS256
	// for RSA). Empty means EdDSA, ES256 or RS256 after Key's type.
	Algorithm string
	// Secret, instead of Key, makes the Issuer sign with HS256. Only for
	// an operator who insists on a shared secret: every verifier that
	// holds it can also mint challenges. At least [MinSecretLen] bytes.
	Secret []byte
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
	// Rand is the source of the jti and of signing randomness (ECDSA,
	// RSA-PSS). Nil means crypto/rand.Reader.
	Rand io.Reader
}

type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

func (i *Issuer) now() time.Time {
	if i.Now != nil {
		return i.Now()
	}
	return time.Now()
}

func (i *Issuer) rand() io.Reader {
	if i.Rand != nil {
		return i.Rand
	}
	return rand.Reader
}

// algorithm returns the alg and kid this Issuer signs with.
func (i *Issuer) algorithm() (alg, kid string, err error) {
	switch {
	case i.Key != nil && i.Secret != nil:
		return "", "", fmt.Errorf("%w: Issuer has both Key and Secret", ErrConfig)
	case i.Secret != nil:
		if len(i.Secret) < MinSecretLen {
			return "", "", fmt.Errorf("%w: HMAC secret shorter than %d bytes", ErrConfig, MinSecretLen)
		}
		if i.Algorithm != "" && i.Algorithm != HS256 {
			return "", "", fmt.Errorf("%w: algorithm %q with a Secret", ErrConfig, i.Algorithm)
		}
		if i.KeyID == "" {
			return "", "", fmt.Errorf("%w: Issuer with a Secret needs a KeyID", ErrConfig)
		}
		return HS256, i.KeyID, nil
	case i.Key == nil:
		return "", "", fmt.Errorf("%w: Issuer has neither Key nor Secret", ErrConfig)
	}
	pub := i.Key.Public()
	var kind keyKind
	switch k := pub.(type) {
	case ed25519.PublicKey:
		kind, alg = kindEd25519, EdDSA
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", "", fmt.Errorf("%w: ECDSA keys must be on P-256", ErrConfig)
		}
		kind, alg = kindP256, ES256
	case *rsa.PublicKey:
		if k.N.BitLen() < MinRSABits {
			return "", "", fmt.Errorf("%w: RSA keys must have at least %d bits", ErrConfig, MinRSABits)
		}
		kind, alg = kindRSA, RS256
	default:
		return "", "", fmt.Errorf("%w: unsupported key type %T", ErrConfig, pub)
	}
	if i.Algorithm != "" {
		if kindFor(i.Algorithm) != kind {
			return "", "", fmt.Errorf("%w: algorithm %q does not fit a %T", ErrConfig, i.Algorithm, pub)
		}
		alg = i.Algorithm
	}
	kid = i.KeyID
	if kid == "" {
		if kid, err = DefaultKeyID(pub); err != nil {
			return "", "", err
		}
	}
	return alg, kid, nil
}

// Issue mints a challenge for req. It returns the challenge in the
// transmitted alphabet (see the package documentation, "# Encoding"), ready
// to put in a SCEP profile, and the claims it signed.
//
// Errors: [ErrMissingClaim] when req has no UserID or Audience,
// [ErrLifetime] for a Lifetime over one hour, negative or under a second, [ErrConfig] for a
// misconfigured Issuer; otherwise the signer's or Rand's error.
func (i *Issuer) Issue(req Request) (challenge string, c *Claims, err error) {
	if i.Name == "" {
		return "", nil, fmt.Errorf("%w: Issuer has no Name", ErrConfig)
	}
	if req.UserID == "" {
		return "", nil, fmt.Errorf("%w: request has no UserID", ErrMissingClaim)
	}
	if req.Audience == "" {
		return "", nil, fmt.Errorf("%w: request has no Audience", ErrMissingClaim)
	}
	life := req.Lifetime
	switch {
	case life == 0:
		life = MaxLifetime
	case life < 0:
		return "", nil, fmt.Errorf("%w: negative lifetime %v", ErrLifetime, life)
	case life > MaxLifetime:
		return "", nil, fmt.Errorf("%w: requested %v", ErrLifetime, life)
	}
	life = life.Truncate(time.Second)
	if life == 0 {
		return "", nil, fmt.Errorf("%w: lifetime under one second", ErrLifetime)
	}
	alg, kid, err := i.algorithm()
	if err != nil {
		return "", nil, err
	}

	var id [16]byte
	if _, err := io.ReadFull(i.rand(), id[:]); err != nil {
		return "", nil, fmt.Errorf("challenge: reading jti: %w", err)
	}
	iat := i.now().Unix()
	exp := iat + int64(life/time.Second)
	w := wireClaims{
		ID:        b64.EncodeToString(id[:]),
		Issuer:    i.Name,
		Subject:   req.UserID,
		Audience:  audience{req.Audience},
		IssuedAt:  &iat,
		NotBefore: &iat,
		Expires:   &exp,
		Device:    req.DeviceID,
		Profile:   req.ProfileID,
		Extra:     req.Extra,
	}
	hdr, err := json.Marshal(header{Alg: alg, Kid: kid, Typ: TokenType})
	if err != nil {
		return "", nil, err
	}
	payload, err := json.Marshal(&w)
	if err != nil {
		return "", nil, fmt.Errorf("challenge: encoding claims: %w", err)
	}
	input := make([]byte, 0, b64.EncodedLen(len(hdr))+1+b64.EncodedLen(len(payload))+1+b64.EncodedLen(512))
	input = b64.AppendEncode(input, hdr)
	input = append(input, '.')
	input = b64.AppendEncode(input, payload)
	sig, err := i.sign(alg, input)
	if err != nil {
		return "", nil, err
	}
	input = append(input, '.')
	input = b64.AppendEncode(input, sig)
	if len(input) > MaxLength {
		return "", nil, fmt.Errorf("%w: challenge of %d characters exceeds %d", ErrConfig, len(input), MaxLength)
	}

	var extra map[string]any
	if len(req.Extra) > 0 {
		// Round-trip so the caller sees what a verifier will see.
		var x struct {
			X map[string]any `json:"x"`
		}
		if err := json.Unmarshal(payload, &x); err == nil {
			extra = x.X
		}
	}
	t := time.Unix(iat, 0)
	return encode(string(input)), &Claims{
		ID:        w.ID,
		Issuer:    i.Name,
		Audience:  req.Audience,
		UserID:    req.UserID,
		DeviceID:  req.DeviceID,
		ProfileID: req.ProfileID,
		IssuedAt:  t,
		NotBefore: t,
		Expires:   time.Unix(exp, 0),
		Extra:     extra,
		KeyID:     kid,
		Algorithm: alg,
	}, nil
}

// sign signs input with the Issuer's key as alg requires, returning the JWS
// signature bytes (RFC 7518 section 3).
func (i *Issuer) sign(alg string, input []byte) ([]byte, error) {
	switch alg {
	case HS256:
		m := hmac.New(sha256.New, i.Secret)
		m.Write(input)
		return m.Sum(nil), nil
	case EdDSA:
		sig, err := i.Key.Sign(i.rand(), input, crypto.Hash(0))
		if err != nil {
			return nil, fmt.Errorf("challenge: signing: %w", err)
		}
		return sig, nil
	}
	digest := sha256.Sum256(input)
	var opts crypto.SignerOpts = crypto.SHA256
	if alg == PS256 {
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
	}
	sig, err := i.Key.Sign(i.rand(), digest[:], opts)
	if err != nil {
		return nil, fmt.Errorf("challenge: signing: %w", err)
	}
	if alg != ES256 {
		return sig, nil
	}
	// crypto.Signer returns an ASN.1 ECDSA-Sig-Value; JWS wants R || S,
	// each left-padded to 32 bytes (RFC 7518 section 3.4).
	var rs struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(sig, &rs); err != nil || len(rest) != 0 ||
		rs.R.Sign() <= 0 || rs.S.Sign() <= 0 || rs.R.BitLen() > 256 || rs.S.BitLen() > 256 {
		return nil, fmt.Errorf("challenge: signer returned a malformed ECDSA signature")
	}
	out := make([]byte, 64)
	rs.R.FillBytes(out[:32])
	rs.S.FillBytes(out[32:])
	return out, nil
}
