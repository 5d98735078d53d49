package challenge

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"sync/atomic"
)

// Algorithm names, as written in the alg header.
const (
	EdDSA = "EdDSA" // Ed25519 (RFC 8037); the default.
	ES256 = "ES256" // ECDSA P-256 with SHA-256.
	RS256 = "RS256" // RSASSA-PKCS1-v1_5 with SHA-256.
	PS256 = "PS256" // RSASSA-PSS with SHA-256.
	HS256 = "HS256" // HMAC-SHA-256 with a shared secret; never a default.
)

// MinRSABits is the smallest RSA modulus a KeySet or Issuer accepts.
const MinRSABits = 2048

// MinSecretLen is the shortest HMAC secret accepted, in bytes.
const MinSecretLen = 32

type keyKind uint8

const (
	kindEd25519 keyKind = iota + 1
	kindP256
	kindRSA
	kindHMAC
)

// kindFor is the key kind an algorithm needs.
func kindFor(alg string) keyKind {
	switch alg {
	case EdDSA:
		return kindEd25519
	case ES256:
		return kindP256
	case RS256, PS256:
		return kindRSA
	case HS256:
		return kindHMAC
	}
	return 0
}

type keyEntry struct {
	kid    string
	kind   keyKind
	alg    string // the only algorithm allowed with this key; "" for any of its kind
	pub    crypto.PublicKey
	secret []byte
}

// verifyKey is what jwt's SigningMethod.Verify expects for this entry.
func (e *keyEntry) verifyKey() any {
	if e.kind == kindHMAC {
		return e.secret
	}
	return e.pub
}

// KeySet is a set of verification keys by key id (kid), so that an MDM can
// rotate keys without downtime: add the new key, switch the [Issuer], and
// remove the old key once its last challenge has expired (one hour).
//
// A KeySet is safe for concurrent use; lookups take no lock. Its zero value
// is an empty set. It may also hold one or more HMAC secrets (kty "oct"),
// which [KeySet.MarshalJSON] never exports.
type KeySet struct {
	mu   sync.Mutex                           // serializes writers
	keys atomic.Pointer[map[string]*keyEntry] // copy-on-write
}

// NewKeySet returns an empty KeySet.
func NewKeySet() *KeySet { return new(KeySet) }

func (s *KeySet) lookup(kid string) *keyEntry {
	m := s.keys.Load()
	if m == nil {
		return nil
	}
	return (*m)[kid]
}

func (s *KeySet) put(e *keyEntry) error {
	if e.kid == "" {
		return fmt.Errorf("%w: empty key id (KeySet.AddKey derives one)", ErrConfig)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.keys.Load()
	if old != nil {
		if have, ok := (*old)[e.kid]; ok {
			if sameKey(have, e) {
				return nil
			}
			return fmt.Errorf("%w: key id %q already names another key", ErrConfig, e.kid)
		}
	}
	m := make(map[string]*keyEntry, 1+lenMap(old))
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	m[e.kid] = e
	s.keys.Store(&m)
	return nil
}

func lenMap(m *map[string]*keyEntry) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

func sameKey(a, b *keyEntry) bool {
	if a.kind != b.kind || a.alg != b.alg {
		return false
	}
	if a.kind == kindHMAC {
		return subtle.ConstantTimeCompare(a.secret, b.secret) == 1
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	eq, ok := a.pub.(equaler)
	return ok && eq.Equal(b.pub)
}

// Add adds a public key under kid. The key is an ed25519.PublicKey (for
// EdDSA), an *ecdsa.PublicKey on P-256 (ES256) or an *rsa.PublicKey of at
// least [MinRSABits] (RS256 or PS256). A crypto.Signer is accepted too and
// its public half is added. Adding the same key under the same kid again is
// a no-op; a different key under an existing kid is an error.
func (s *KeySet) Add(kid string, key crypto.PublicKey) error {
	return s.AddWithAlgorithm(kid, "", key)
}

// AddKey adds a public key (or a crypto.Signer's public half) under its
// [DefaultKeyID], the kid an [Issuer] with an empty KeyID writes into its
// challenges, and returns that kid. It accepts the keys [KeySet.Add] does.
func (s *KeySet) AddKey(key crypto.PublicKey) (kid string, err error) {
	if kid, err = DefaultKeyID(key); err != nil {
		return "", err
	}
	return kid, s.Add(kid, key)
}

// AddWithAlgorithm is [KeySet.Add] that also pins the only algorithm the key
// may verify (for example PS256 for an RSA key, so that an RS256 token
// under its kid is refused). An empty alg allows every algorithm of the
// key's type.
func (s *KeySet) AddWithAlgorithm(kid, alg string, key crypto.PublicKey) error {
	e, err := newKeyEntry(kid, alg, key)
	if err != nil {
		return err
	}
	return s.put(e)
}

// newKeyEntry checks a public key and its algorithm pin as [KeySet.AddWithAlgorithm]
// documents, and returns its entry.
func newKeyEntry(kid, alg string, key crypto.PublicKey) (*keyEntry, error) {
	if sg, ok := key.(crypto.Signer); ok {
		key = sg.Public()
	}
	e := &keyEntry{kid: kid, alg: alg}
	switch k := key.(type) {
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: Ed25519 key of %d bytes", ErrConfig, len(k))
		}
		e.kind, e.pub = kindEd25519, slices.Clone(k)
	case *ecdsa.PublicKey:
		if k == nil || k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%w: ECDSA keys must be on P-256", ErrConfig)
		}
		e.kind, e.pub = kindP256, k
	case *rsa.PublicKey:
		if k == nil || k.N == nil || k.N.BitLen() < MinRSABits {
			return nil, fmt.Errorf("%w: RSA keys must have at least %d bits", ErrConfig, MinRSABits)
		}
		e.kind, e.pub = kindRSA, k
	default:
		return nil, fmt.Errorf("%w: unsupported key type %T", ErrConfig, key)
	}
	if alg != "" && kindFor(alg) != e.kind {
		return nil, fmt.Errorf("%w: algorithm %q does not fit a %T", ErrConfig, alg, key)
	}
	return e, nil
}

// AddSecret adds an HMAC-SHA-256 secret (HS256) of at least [MinSecretLen]
// bytes under kid. A [Verifier] uses it only when its Algorithms list HS256.
// The secret is copied and never exported.
func (s *KeySet) AddSecret(kid string, secret []byte) error {
	if len(secret) < MinSecretLen {
		return fmt.Errorf("%w: HMAC secret shorter than %d bytes", ErrConfig, MinSecretLen)
	}
	return s.put(&keyEntry{kid: kid, kind: kindHMAC, alg: HS256, secret: slices.Clone(secret)})
}

// Remove removes the key with id kid and reports whether it was present.
// Challenges signed by it fail with [ErrUnknownKey] from then on.
func (s *KeySet) Remove(kid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.keys.Load()
	if old == nil {
		return false
	}
	if _, ok := (*old)[kid]; !ok {
		return false
	}
	m := make(map[string]*keyEntry, len(*old))
	for k, v := range *old {
		if k != kid {
			m[k] = v
		}
	}
	s.keys.Store(&m)
	return true
}

// Replace makes s hold exactly the keys of src, each with its algorithm pin, in one
// step: a [Verifier] using s sees either the old keys or the new ones, never a kid
// missing while its key is swapped (the way to follow an MDM's published JWKS). It
// reports whether s changed. A nil src empties s.
func (s *KeySet) Replace(src *KeySet) (changed bool) {
	var next map[string]*keyEntry
	if src != nil {
		if m := src.keys.Load(); m != nil {
			next = *m
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.keys.Load()
	if lenMap(old) == len(next) {
		same := true
		for kid, e := range next {
			if have, ok := (*old)[kid]; !ok || !sameKey(have, e) {
				same = false
				break
			}
		}
		if same {
			return false
		}
	}
	// A set's map and its entries are never changed once stored (every writer stores
	// a new map), so both sets may share them.
	if next == nil {
		next = map[string]*keyEntry{}
	}
	s.keys.Store(&next)
	return true
}

// Lookup returns the public key with id kid. For an HMAC secret it returns
// (nil, true): the secret never leaves the set.
func (s *KeySet) Lookup(kid string) (crypto.PublicKey, bool) {
	e := s.lookup(kid)
	if e == nil {
		return nil, false
	}
	return e.pub, true
}

// Algorithm returns the algorithm the key kid is pinned to ("" when any algorithm
// of its kind is allowed) and whether kid is in the set. Copying a key from one set to
// another needs it: Lookup and Add would drop the pin.
func (s *KeySet) Algorithm(kid string) (alg string, ok bool) {
	e := s.lookup(kid)
	if e == nil {
		return "", false
	}
	return e.alg, true
}

// KeyIDs returns the ids of all keys in the set, sorted.
func (s *KeySet) KeyIDs() []string {
	m := s.keys.Load()
	if m == nil {
		return nil
	}
	ids := make([]string, 0, len(*m))
	for k := range *m {
		ids = append(ids, k)
	}
	slices.Sort(ids)
	return ids
}

// jwk is one key of a JWKS document (RFC 7517, RFC 7518, RFC 8037).
type jwk struct {
	Kty string `json:"kty"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
	Kid string `json:"kid,omitempty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	K   string `json:"k,omitempty"`
}

type jwks struct {
	Keys []jwk `json:"keys"`
}

var b64 = base64.RawURLEncoding

func toJWK(e *keyEntry) jwk {
	j := jwk{Use: "sig", Alg: e.alg, Kid: e.kid}
	switch k := e.pub.(type) {
	case ed25519.PublicKey:
		j.Kty, j.Crv, j.X = "OKP", "Ed25519", b64.EncodeToString(k)
		if j.Alg == "" {
			j.Alg = EdDSA
		}
	case *ecdsa.PublicKey:
		raw, _ := k.Bytes() // 0x04 || X || Y; the curve was checked on Add
		j.Kty, j.Crv = "EC", "P-256"
		j.X, j.Y = b64.EncodeToString(raw[1:33]), b64.EncodeToString(raw[33:65])
		if j.Alg == "" {
			j.Alg = ES256
		}
	case *rsa.PublicKey:
		j.Kty = "RSA"
		j.N = b64.EncodeToString(k.N.Bytes())
		j.E = b64.EncodeToString(big.NewInt(int64(k.E)).Bytes())
	}
	return j
}

// MarshalJSON returns the public keys as a JWKS document ({"keys":[...]},
// RFC 7517 section 5), sorted by kid, each with "use":"sig" and its "alg"
// where it has only one. HMAC secrets are left out.
func (s *KeySet) MarshalJSON() ([]byte, error) {
	doc := jwks{Keys: []jwk{}}
	m := s.keys.Load()
	if m != nil {
		for _, kid := range s.KeyIDs() {
			e := (*m)[kid]
			if e.kind == kindHMAC {
				continue
			}
			doc.Keys = append(doc.Keys, toJWK(e))
		}
	}
	return json.Marshal(doc)
}

// ParseJWKS builds a KeySet from a JWKS document such as
// [KeySet.MarshalJSON] writes. Keys whose "use" is not "sig", and keys of a
// type or curve this package does not verify (for example P-384), are
// skipped. A symmetric key (kty "oct"), a key without kid, a duplicate kid,
// a malformed key or an "alg" that does not fit the key is an error: a
// published document must never carry secrets.
func ParseJWKS(data []byte) (*KeySet, error) {
	var doc jwks
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%w: JWKS: %v", ErrConfig, err)
	}
	// The keys are gathered in one map, stored once: adding them one by one would copy
	// the set's map at each key, quadratic in a document of many thousands.
	m := make(map[string]*keyEntry)
	for i, j := range doc.Keys {
		if j.Use != "" && j.Use != "sig" {
			continue
		}
		if j.Kid == "" {
			return nil, fmt.Errorf("%w: JWKS key %d has no kid", ErrConfig, i)
		}
		if _, dup := m[j.Kid]; dup {
			return nil, fmt.Errorf("%w: JWKS kid %q appears twice", ErrConfig, j.Kid)
		}
		var pub crypto.PublicKey
		switch j.Kty {
		case "oct":
			return nil, fmt.Errorf("%w: JWKS key %q is a symmetric secret", ErrConfig, j.Kid)
		case "OKP":
			if j.Crv != "Ed25519" {
				continue
			}
			x, err := b64.Strict().DecodeString(j.X)
			if err != nil || len(x) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("%w: JWKS key %q: bad Ed25519 x", ErrConfig, j.Kid)
			}
			pub = ed25519.PublicKey(x)
		case "EC":
			if j.Crv != "P-256" {
				continue
			}
			x, errX := b64.Strict().DecodeString(j.X)
			y, errY := b64.Strict().DecodeString(j.Y)
			if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
				return nil, fmt.Errorf("%w: JWKS key %q: bad P-256 coordinates", ErrConfig, j.Kid)
			}
			k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
			if err != nil {
				return nil, fmt.Errorf("%w: JWKS key %q: %v", ErrConfig, j.Kid, err)
			}
			pub = k
		case "RSA":
			n, errN := b64.Strict().DecodeString(j.N)
			e, errE := b64.Strict().DecodeString(j.E)
			if errN != nil || errE != nil || len(e) == 0 || len(e) > 4 || len(n) > 2048 {
				return nil, fmt.Errorf("%w: JWKS key %q: bad RSA n or e", ErrConfig, j.Kid)
			}
			exp := int(new(big.Int).SetBytes(e).Int64())
			if exp < 3 || exp%2 == 0 {
				return nil, fmt.Errorf("%w: JWKS key %q: bad RSA exponent", ErrConfig, j.Kid)
			}
			pub = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}
		default:
			continue
		}
		e, err := newKeyEntry(j.Kid, j.Alg, pub)
		if err != nil {
			return nil, err
		}
		m[j.Kid] = e
	}
	s := NewKeySet()
	s.keys.Store(&m)
	return s, nil
}

// Thumbprint returns the RFC 7638 JWK thumbprint (SHA-256, base64url) of a
// public key of a type [KeySet.Add] accepts.
func Thumbprint(key crypto.PublicKey) (string, error) {
	if sg, ok := key.(crypto.Signer); ok {
		key = sg.Public()
	}
	var tmp KeySet
	if err := tmp.Add("t", key); err != nil {
		return "", err
	}
	j := toJWK(tmp.lookup("t"))
	// RFC 7638 section 3.2: required members only, lexicographic order, no whitespace.
	var canon string
	switch j.Kty {
	case "OKP":
		canon = fmt.Sprintf(`{"crv":%q,"kty":"OKP","x":%q}`, j.Crv, j.X)
	case "EC":
		canon = fmt.Sprintf(`{"crv":%q,"kty":"EC","x":%q,"y":%q}`, j.Crv, j.X, j.Y)
	case "RSA":
		canon = fmt.Sprintf(`{"e":%q,"kty":"RSA","n":%q}`, j.E, j.N)
	}
	sum := sha256.Sum256([]byte(canon))
	return b64.EncodeToString(sum[:]), nil
}

// KeyIDLength is the length of the kid [DefaultKeyID] derives.
const KeyIDLength = 8

// DefaultKeyID derives a short key id from a public key: the first
// [KeyIDLength] characters of its [Thumbprint]. [Issuer] uses it when its
// KeyID is empty. Eight base64url characters are 48 bits: ample to tell a
// handful of rotating keys apart, and short, because every character of the
// kid costs about 1.3 characters of challenge.
func DefaultKeyID(key crypto.PublicKey) (string, error) {
	t, err := Thumbprint(key)
	if err != nil {
		return "", err
	}
	return t[:KeyIDLength], nil
}
