package cms

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	cryptorand "crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"io"
)

// DecryptOptions configures Decrypt. The zero value is strict: single DES is
// refused.
type DecryptOptions struct {
	// AllowDES permits DES-CBC content encryption, which RFC 8894 §3.5.1
	// forbids but some old clients still send.
	AllowDES bool
	// Rand is the source of the substitute content key used when the key
	// transport fails (RFC 3218 §2.3.2 countermeasure). Nil means
	// crypto/rand.Reader.
	Rand io.Reader
}

// Decrypt parses der (see Parse) and decrypts it with the first recipient of
// ours (see Envelope.Decrypt). It returns the content and its cipher; c is
// also set when the error is ErrUnsupportedAlgorithm or ErrDecrypt.
func Decrypt(der []byte, recipients []Recipient, opts DecryptOptions) (content []byte, c ContentCipher, err error) {
	env, err := Parse(der)
	if err != nil {
		return nil, 0, err
	}
	content, err = env.Decrypt(recipients, opts)
	return content, env.Cipher, err
}

// Decrypt decrypts the content for the first RecipientInfo that identifies
// one of the recipients' certificates (issuer and serial, or subject key
// identifier) with a supported key transport.
//
// The checks run in this order: the content cipher (ErrUnsupportedAlgorithm
// if unknown, RC2, or DES without opts.AllowDES), the recipient
// (ErrNoRecipient if none is ours; ErrUnsupportedAlgorithm if ours use only
// unsupported key transports), then the key unwrap and content decryption.
// Every failure in the last step returns exactly ErrDecrypt.
//
// For RSAES-PKCS1-v1_5 the key is unwrapped with
// rsa.PKCS1v15DecryptOptions.SessionKeyLen set, so a bad RSA padding yields a
// random content key rather than an early error (RFC 3218 §2.3.2); the
// failure then shows up as a CBC padding error, indistinguishable from any
// other. A consequence shared by all such implementations: with probability
// about 1/256 a random key gives valid padding and Decrypt returns garbage
// without error, which the caller's parsing of the content must reject.
func (e *Envelope) Decrypt(recipients []Recipient, opts DecryptOptions) ([]byte, error) {
	if e == nil {
		return nil, malformed("nil Envelope")
	}
	ci, ok := e.Cipher.info()
	switch {
	case !ok && e.CipherOID.Equal(oidRC2CBC):
		return nil, &AlgorithmError{Role: "content encryption", OID: e.CipherOID, Reason: "RC2 is not supported"}
	case !ok:
		return nil, &AlgorithmError{Role: "content encryption", OID: e.CipherOID}
	case e.Cipher == DESCBC && !opts.AllowDES:
		return nil, &AlgorithmError{Role: "content encryption", OID: e.CipherOID,
			Reason: "single DES is refused (RFC 8894 §3.5.1); see DecryptOptions.AllowDES"}
	}

	ri, rcp, err := e.selectRecipient(recipients)
	if err != nil {
		return nil, err
	}

	// From here on every failure is ErrDecrypt, reported at the end.
	rnd := opts.Rand
	if rnd == nil {
		rnd = cryptorand.Reader
	}
	fallback := make([]byte, ci.keySize)
	if _, err := io.ReadFull(rnd, fallback); err != nil {
		return nil, ErrDecrypt
	}
	var opt crypto.DecrypterOpts
	if ri.KeyTransport == RSAPKCS1v15 {
		opt = &rsa.PKCS1v15DecryptOptions{SessionKeyLen: ci.keySize}
	} else {
		h := ri.KeyTransport.oaepHash()
		opt = &rsa.OAEPOptions{Hash: h, MGFHash: h, Label: ri.oaepLabel}
	}
	key, err := rcp.Key.Decrypt(rnd, ri.EncryptedKey, opt)
	defer clear(fallback)
	good := 1
	if err != nil || len(key) != ci.keySize {
		good, key = 0, fallback
	}

	ct := e.encryptedContent
	if !e.hasContent || len(ct) == 0 || len(ct)%ci.blockSize != 0 || len(e.IV) != ci.blockSize {
		// Nothing to decrypt; the key unwrap above has been done anyway.
		return nil, ErrDecrypt
	}
	var block cipher.Block
	switch e.Cipher {
	case DESCBC:
		block, err = des.NewCipher(key)
	case DESEDE3CBC:
		block, err = des.NewTripleDESCipher(key)
	default:
		block, err = aes.NewCipher(key)
	}
	if err != nil {
		return nil, ErrDecrypt
	}
	plain := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, e.IV).CryptBlocks(plain, ct)
	n, padOK := unpad(plain, ci.blockSize)
	if good&padOK != 1 {
		return nil, ErrDecrypt
	}
	return plain[:n], nil
}

// selectRecipient returns the first RecipientInfo that matches one of our
// certificates and has a supported key transport.
func (e *Envelope) selectRecipient(recipients []Recipient) (*RecipientInfo, *Recipient, error) {
	var unsupported error
	for i := range e.Recipients {
		ri := &e.Recipients[i]
		for j := range recipients {
			rcp := &recipients[j]
			if rcp.Key == nil || !ri.Matches(rcp.Certificate) {
				continue
			}
			if ri.KeyTransport == 0 {
				if unsupported == nil {
					unsupported = ri.unsupportedError()
				}
				continue
			}
			return ri, rcp, nil
		}
	}
	if unsupported != nil {
		return nil, nil, unsupported
	}
	return nil, nil, ErrNoRecipient
}

func (r *RecipientInfo) unsupportedError() error {
	if r.unsupported != nil {
		return r.unsupported
	}
	return &AlgorithmError{Role: "key transport", OID: r.KeyTransportOID}
}

// unpad checks the padding of RFC 5652 §6.3 (k - (lth mod k) octets, each of
// value k - (lth mod k), so 1..k octets) in constant time with respect to
// the plaintext. It returns the content length and 1 if the padding is
// valid, 0 otherwise. len(b) must be a positive multiple of blockSize.
func unpad(b []byte, blockSize int) (int, int) {
	pad := int(b[len(b)-1])
	good := subtle.ConstantTimeLessOrEq(1, pad) & subtle.ConstantTimeLessOrEq(pad, blockSize)
	for i := 1; i <= blockSize; i++ {
		inPad := subtle.ConstantTimeLessOrEq(i, pad)
		eq := subtle.ConstantTimeByteEq(b[len(b)-i], byte(pad))
		good &= subtle.ConstantTimeSelect(inPad, eq, 1)
	}
	// When the padding is bad, n is meaningless but still in range.
	n := len(b) - subtle.ConstantTimeSelect(good, pad, 0)
	return n, good
}
