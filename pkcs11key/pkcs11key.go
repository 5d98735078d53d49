// Package pkcs11key opens private keys held in a PKCS#11 token (a hardware security
// module, a smart card, SoftHSM2) as a crypto.Signer and, for RSA keys, a
// crypto.Decrypter, so that the built-in CA (a catemplate.CA) signs certificates and
// CRLs, and the RA (a catemplate.RA) signs CertReps and decrypts requests, without
// the private keys ever leaving the token.
//
// It is a package of its own because it needs cgo (the PKCS#11 module is a C shared
// library). It uses github.com/ThalesGroup/crypto11 for the PKCS#11 calls. A program
// built without cgo (CGO_ENABLED=0) still builds with it, but Open then fails with
// [ErrNoCgo].
//
// # Keys
//
// A key is found by its CKA_LABEL ([Token.Key]); it must be a key pair (a private key
// and a public key with the same non-empty CKA_ID), as pkcs11-tool and softhsm2-util
// create them. [Token.GenerateKey] makes one inside the token, with CKA_SENSITIVE set
// and CKA_EXTRACTABLE cleared, so that the token never releases the private key.
//
// # Decryption
//
// [Key.Decrypt] accepts *rsa.PKCS1v15DecryptOptions and *rsa.OAEPOptions. PKCS#11
// has no counterpart to SessionKeyLen, which CMS key transport relies on (RFC 3218,
// section 2.3): Decrypt provides it itself, returning random bytes of that length
// instead of an error whenever the token reports a padding error or a key of another
// length, so that a caller cannot tell a bad padding from a bad content key. How long
// the token itself takes to refuse a bad padding is outside this package's control.
// RSA-OAEP is done by the token, with the hash it implements: SoftHSM2 2.6, for one,
// implements SHA-1 only and refuses OAEP with SHA-256. An OAEP label is refused
// (ErrOptions): SoftHSM2 ignores the label it is given, and CMS key transport leaves
// it empty by default (RFC 4055, section 4.1).
//
// # Timeouts
//
// PKCS#11 calls take no context and cannot be cancelled. With [Config.Timeout], Open,
// Key, Sign, Decrypt and Close wait that long at most for the token and then return
// an error wrapping [ErrTimeout], so that a token that stops answering (a network HSM
// gone silent, a token store on a file system that hangs) fails requests, or a start,
// instead of holding them.
//
// # Compatibility
//
// The Config fields and the methods of Token and Key are stable; new Config fields
// may be added with zero values that keep today's behaviour.
package pkcs11key

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	cryptorand "crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/thales-e-security/pool"
)

// Errors returned by this package, testable with errors.Is.
var (
	// ErrConfig is returned by Open for an incomplete configuration.
	ErrConfig = errors.New("pkcs11key: invalid configuration")
	// ErrTokenNotFound is returned by Open when no token of the module has the label
	// or serial number.
	ErrTokenNotFound = errors.New("pkcs11key: token not found")
	// ErrKeyNotFound is returned by Token.Key when no key pair has the label.
	ErrKeyNotFound = errors.New("pkcs11key: key not found")
	// ErrNotRSA is returned by Key.Decrypt for a key that is not RSA.
	ErrNotRSA = errors.New("pkcs11key: only RSA keys decrypt")
	// ErrTimeout is returned by Open, Token.Key, Key.Sign, Key.Decrypt and
	// Token.Close when the token did not answer within Config.Timeout.
	ErrTimeout = errors.New("pkcs11key: the token did not answer in time")
	// ErrOptions is returned by Key.Sign and Key.Decrypt for options they do not
	// support, and by Key.Sign for a digest whose length is not its hash's.
	ErrOptions = errors.New("pkcs11key: unsupported options")
	// ErrNoCgo is returned by Open in a program built without cgo: a PKCS#11 module
	// is a C library, which only a program built with cgo can load.
	ErrNoCgo = errors.New("pkcs11key: this program was built without cgo (CGO_ENABLED=0), which PKCS#11 needs")
)

// Config says which PKCS#11 module and token to open.
type Config struct {
	// Module is the path of the PKCS#11 module, for example
	// /usr/lib/softhsm/libsofthsm2.so. Required.
	Module string
	// TokenLabel selects the token by its label. Exactly one of TokenLabel and
	// TokenSerial is required.
	TokenLabel string
	// TokenSerial selects the token by its serial number.
	TokenSerial string
	// PIN is the user PIN. Read it from a file or the environment, never from a
	// command line.
	PIN string
	// MaxSessions bounds the sessions opened on the token (concurrent operations);
	// zero means crypto11's default (1024). Otherwise at least 2.
	MaxSessions int
	// Timeout, when positive, bounds how long Open waits for the module and the
	// login, Token.Key for the lookup, Key.Sign and Key.Decrypt for the token (for a
	// free session, then for its answer), and Token.Close for the operations in
	// flight; past it they return an error wrapping ErrTimeout. GenerateKey is not
	// bounded (a large RSA key takes long). PKCS#11 cannot cancel a call: one the
	// token never answers keeps its session (and a thread) until it does, so at most
	// MaxSessions calls stay behind (a login Open gave up on is closed once it ends).
	// Zero means no bound: a call waits as long as the token does.
	Timeout time.Duration
}

// Token is an open PKCS#11 token. Its keys are safe for concurrent use. Close it when
// done; keys obtained from it stop working then.
type Token struct {
	tok     *token // the module's token (cgo) or nothing (without cgo)
	timeout time.Duration

	mu     sync.Mutex
	closed bool
}

// Open logs in to the token c names. A token the module does not have gives an
// error wrapping ErrTokenNotFound; one the module reports (the PIN refused with
// CKR_PIN_INCORRECT or CKR_PIN_LOCKED, say) wraps its pkcs11.Error, for errors.As.
//
// A PKCS#11 login belongs to the process, not to a Token: while another Token of the
// process is open on the same token, the module answers CKR_USER_ALREADY_LOGGED_IN
// without looking at the PIN (SoftHSM2 does), and Open succeeds whatever c.PIN is.
// Do not rely on Open to check a PIN in a process that may already be logged in.
func Open(c Config) (*Token, error) {
	switch {
	case c.Module == "":
		return nil, fmt.Errorf("%w: Module (the PKCS#11 module path) is required", ErrConfig)
	case (c.TokenLabel == "") == (c.TokenSerial == ""):
		return nil, fmt.Errorf("%w: set exactly one of TokenLabel and TokenSerial", ErrConfig)
	case c.MaxSessions == 1 || c.MaxSessions < 0:
		return nil, fmt.Errorf("%w: MaxSessions must be zero or at least 2", ErrConfig)
	case c.Timeout < 0:
		return nil, fmt.Errorf("%w: Timeout must not be negative", ErrConfig)
	}
	tok, err := openToken(c)
	if err != nil {
		return nil, err
	}
	return &Token{tok: tok, timeout: c.Timeout}, nil
}

// Close logs out and releases the token's sessions, once the operations in flight
// have ended; with a Timeout, it waits for them that long at most, and then returns
// an error wrapping ErrTimeout (the sessions are released when the token answers).
// Calling it again does nothing.
func (t *Token) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	_, err := within(t.timeout, func() (struct{}, error) { return struct{}{}, t.tok.close() }, nil)
	if errors.Is(err, ErrTimeout) {
		return fmt.Errorf("pkcs11key: closing: operations still in the token: %w", err)
	}
	return err
}

// Key returns the key pair whose private key has CKA_LABEL label.
func (t *Token) Key(label string) (*Key, error) {
	if label == "" {
		return nil, fmt.Errorf("%w: empty label", ErrKeyNotFound)
	}
	keys, err := within(t.timeout, func() ([]crypto.Signer, error) { return t.tok.findKeyPairs(label) }, nil)
	if err != nil {
		return nil, fmt.Errorf("pkcs11key: finding %q: %w", label, err)
	}
	switch len(keys) {
	case 0:
		return nil, fmt.Errorf("%w: %q", ErrKeyNotFound, label)
	case 1:
		return newKey(keys[0], t.timeout), nil
	}
	return nil, fmt.Errorf("pkcs11key: %d key pairs are labelled %q", len(keys), label)
}

// KeyType names the kinds of key GenerateKey makes.
type KeyType int

// The key types of [Token.GenerateKey].
const (
	RSA2048 KeyType = iota + 1
	RSA3072
	RSA4096
	ECDSAP256
	ECDSAP384
)

// String returns a short name for k, or "unknown(N)".
func (k KeyType) String() string {
	switch k {
	case RSA2048:
		return "RSA-2048"
	case RSA3072:
		return "RSA-3072"
	case RSA4096:
		return "RSA-4096"
	case ECDSAP256:
		return "ECDSA-P256"
	case ECDSAP384:
		return "ECDSA-P384"
	}
	return fmt.Sprintf("unknown(%d)", int(k))
}

// GenerateKey makes a key pair inside the token, labelled label, with a random
// CKA_ID. The private key is sensitive and not extractable: the token never releases
// it. A label already in use is refused, so that Key finds exactly one pair.
func (t *Token) GenerateKey(label string, kt KeyType) (*Key, error) {
	if label == "" {
		return nil, fmt.Errorf("%w: GenerateKey needs a label", ErrConfig)
	}
	if existing, err := t.tok.findKeyPairs(label); err != nil {
		return nil, fmt.Errorf("pkcs11key: finding %q: %w", label, err)
	} else if len(existing) > 0 {
		return nil, fmt.Errorf("pkcs11key: a key pair is already labelled %q", label)
	}
	id := make([]byte, 16)
	if _, err := io.ReadFull(cryptorand.Reader, id); err != nil {
		return nil, err
	}
	switch kt {
	case RSA2048, RSA3072, RSA4096, ECDSAP256, ECDSAP384:
	default:
		return nil, fmt.Errorf("%w: key type %v", ErrConfig, kt)
	}
	s, err := t.tok.generate(id, label, kt)
	if err != nil {
		return nil, fmt.Errorf("pkcs11key: generating %q: %w", label, err)
	}
	return newKey(s, t.timeout), nil
}

// Key is a private key in a token: a crypto.Signer, and a crypto.Decrypter when it
// is RSA. It is safe for concurrent use.
type Key struct {
	s       crypto.Signer    // crypto11's
	dec     crypto.Decrypter // nil unless RSA
	timeout time.Duration    // Config.Timeout
}

var (
	_ crypto.Signer    = (*Key)(nil)
	_ crypto.Decrypter = (*Key)(nil)
)

func newKey(s crypto.Signer, timeout time.Duration) *Key {
	k := &Key{s: s, timeout: timeout}
	if _, ok := s.Public().(*rsa.PublicKey); ok {
		k.dec, _ = s.(crypto.Decrypter)
	}
	return k
}

// Public returns the public key.
func (k *Key) Public() crypto.PublicKey { return k.s.Public() }

// Sign signs digest in the token: PKCS#1 v1.5 or PSS (with *rsa.PSSOptions and a
// fixed salt length) for RSA, an ASN.1 DER signature for ECDSA. digest must have the
// length of opts' hash. An RSA key signs with SHA-1, SHA-224, SHA-256, SHA-384 or
// SHA-512, or with PKCS#1 v1.5 and no hash (digest is then signed as it is, as
// crypto/rsa does). Anything else (nil opts, a digest of another length, another
// hash for RSA, PSS without a hash, with rsa.PSSSaltLengthAuto or with a negative
// salt length other than rsa.PSSSaltLengthEqualsHash) is refused with an error
// wrapping ErrOptions before the token is asked: the token would sign an RSA digest
// of the wrong length or hash as it is, a signature that verifies for no message.
func (k *Key) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if err := checkSignOpts(k.s.Public(), digest, opts); err != nil {
		return nil, err
	}
	if k.timeout > 0 { // the call may outlive Sign (see inToken)
		if o, ok := opts.(*rsa.PSSOptions); ok {
			c := *o
			opts = &c
		}
		digest = bytes.Clone(digest)
	}
	return k.inToken(func() ([]byte, error) { return k.s.Sign(rand, digest, opts) })
}

// inToken runs call, a call into the token, and waits for it at most k.timeout
// (see within). The caller passes call no memory that it may change meanwhile.
func (k *Key) inToken(call func() ([]byte, error)) ([]byte, error) {
	return within(k.timeout, call, nil)
}

// within runs call, a call into the token, and waits for it at most timeout (when
// positive), then returns an error wrapping ErrTimeout. A call cut short goes on in
// the background until the token answers (PKCS#11 cannot cancel one); abandon, unless
// nil, is then given what it returned without error. crypto11's wait for a session
// (PoolWaitTimeout, set to the same timeout) is reported as ErrTimeout too.
func within[T any](timeout time.Duration, call func() (T, error), abandon func(T)) (T, error) {
	if timeout <= 0 {
		return call()
	}
	var (
		mu        sync.Mutex
		finished  bool // call returned in time: v and err are the answer
		abandoned bool // the caller has gone: abandon takes v
		v         T
		err       error
	)
	done := make(chan struct{})
	go func() {
		rv, rerr := call()
		mu.Lock()
		defer mu.Unlock()
		if abandoned {
			if rerr == nil && abandon != nil {
				abandon(rv)
			}
			return
		}
		finished, v, err = true, rv, rerr
		close(done)
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
	}
	mu.Lock()
	defer mu.Unlock()
	if !finished {
		abandoned = true
		var zero T
		return zero, fmt.Errorf("%w: no answer within %v", ErrTimeout, timeout)
	}
	if errors.Is(err, pool.ErrTimeout) {
		return v, fmt.Errorf("%w: no free session within %v", ErrTimeout, timeout)
	}
	return v, err
}

// signHashes are the hashes crypto11 knows the PKCS#1 v1.5 DigestInfo of, and the
// PSS parameters of.
var signHashes = map[crypto.Hash]bool{crypto.SHA1: true, crypto.SHA224: true, crypto.SHA256: true,
	crypto.SHA384: true, crypto.SHA512: true}

// checkSignOpts refuses, with ErrOptions, options that a key whose public key is pub
// cannot honour for digest.
func checkSignOpts(pub crypto.PublicKey, digest []byte, opts crypto.SignerOpts) error {
	if o, ok := opts.(*rsa.PSSOptions); opts == nil || ok && o == nil {
		// A nil *rsa.PSSOptions too: its HashFunc would panic, as crypto/rsa does.
		return fmt.Errorf("%w: nil SignerOpts (pass the digest's crypto.Hash)", ErrOptions)
	}
	h := opts.HashFunc()
	switch pub.(type) {
	case *rsa.PublicKey:
		if o, ok := opts.(*rsa.PSSOptions); ok {
			switch {
			case o.SaltLength == rsa.PSSSaltLengthAuto:
				return fmt.Errorf("%w: PSS with rsa.PSSSaltLengthAuto (give the salt length)", ErrOptions)
			case o.SaltLength < 0 && o.SaltLength != rsa.PSSSaltLengthEqualsHash:
				return fmt.Errorf("%w: PSS salt length %d", ErrOptions, o.SaltLength)
			}
			if h == 0 {
				return fmt.Errorf("%w: PSS without a hash", ErrOptions)
			}
		}
		if h == 0 {
			return nil // PKCS#1 v1.5 over digest as it is, as crypto/rsa signs it
		}
		if !signHashes[h] {
			return fmt.Errorf("%w: RSA signatures with %v", ErrOptions, h)
		}
	case *ecdsa.PublicKey:
		if h == 0 {
			return nil
		}
	default:
		return nil
	}
	if len(digest) != h.Size() {
		return fmt.Errorf("%w: a %d-byte digest for %v, whose digests are %d bytes", ErrOptions, len(digest), h, h.Size())
	}
	return nil
}

// Decrypt decrypts ciphertext in the token with RSA PKCS#1 v1.5 (opts nil or
// *rsa.PKCS1v15DecryptOptions) or RSA-OAEP (*rsa.OAEPOptions, with a Hash, MGFHash
// zero or equal to it, and no Label: tokens differ in whether they check one, and
// SoftHSM2 does not). Other options, and a nil pointer of either type, are refused
// with an error wrapping ErrOptions. With a non-zero SessionKeyLen it never returns
// an error for a padding failure or a plaintext of another length: it returns
// SessionKeyLen random bytes instead, as crypto/rsa does (see the package
// documentation).
func (k *Key) Decrypt(rand io.Reader, ciphertext []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	if k.dec == nil {
		return nil, ErrNotRSA
	}
	if k.timeout > 0 {
		ciphertext = bytes.Clone(ciphertext) // the call may outlive Decrypt (see inToken)
	}
	pkcs1 := func() ([]byte, error) { return k.dec.Decrypt(rand, ciphertext, nil) }
	switch o := opts.(type) {
	case nil:
		return k.inToken(pkcs1)
	case *rsa.PKCS1v15DecryptOptions:
		if o == nil {
			// As for Sign's nil *rsa.PSSOptions: refused, not read (crypto/rsa panics).
			return nil, fmt.Errorf("%w: nil *rsa.PKCS1v15DecryptOptions (pass nil opts)", ErrOptions)
		}
		if o.SessionKeyLen <= 0 {
			return k.inToken(pkcs1)
		}
		return k.sessionKey(rand, pkcs1, o.SessionKeyLen)
	case *rsa.OAEPOptions:
		switch {
		case o == nil:
			return nil, fmt.Errorf("%w: nil *rsa.OAEPOptions", ErrOptions)
		case o.Hash == 0:
			return nil, fmt.Errorf("%w: OAEP without a hash", ErrOptions)
		case o.MGFHash != 0 && o.MGFHash != o.Hash:
			// crypto11 takes MGF1's hash from Hash.
			return nil, fmt.Errorf("%w: OAEP with MGF1 hash %v differing from %v", ErrOptions, o.MGFHash, o.Hash)
		case len(o.Label) > 0:
			// Tokens differ: SoftHSM2 ignores the label it is given and decrypts as if
			// there were none, so a label here would be accepted unchecked.
			return nil, fmt.Errorf("%w: OAEP with a label", ErrOptions)
		}
		oaep := &rsa.OAEPOptions{Hash: o.Hash}
		return k.inToken(func() ([]byte, error) { return k.dec.Decrypt(rand, ciphertext, oaep) })
	}
	return nil, fmt.Errorf("%w: %T", ErrOptions, opts)
}

// sessionKey is PKCS#1 v1.5 decryption (decrypt) with crypto/rsa's SessionKeyLen
// behaviour: the random key is drawn before the token is asked, and replaced by the
// plaintext only when it has the expected length, without a branch on that outcome.
// An error that cannot depend on the ciphertext (a closed token, a lost session, a
// removed device, no answer in time) is returned: answering random bytes would hide
// that the key cannot work at all.
func (k *Key) sessionKey(rand io.Reader, decrypt func() ([]byte, error), n int) ([]byte, error) {
	if rand == nil {
		rand = cryptorand.Reader
	}
	key := make([]byte, n)
	if _, err := io.ReadFull(rand, key); err != nil {
		return nil, err
	}
	pt, err := k.inToken(decrypt)
	if err != nil && !fromCiphertext(err) {
		return nil, fmt.Errorf("pkcs11key: decrypting: %w", err)
	}
	ok := subtle.ConstantTimeEq(int32(len(pt)), int32(n))
	if err != nil {
		ok = 0
	}
	if len(pt) >= n {
		subtle.ConstantTimeCopy(ok, key, pt[:n])
	}
	return key, nil
}
