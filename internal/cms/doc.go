// Package cms implements the part of the Cryptographic Message Syntax that a
// SCEP (RFC 8894) server and client need to protect the PKCS#10 request and the
// issued certificates: EnvelopedData (RFC 5652 §6) with key transport.
//
// # Scope
//
// Implemented (RFC 5652 section numbers in parentheses):
//
//   - ContentInfo (§3) wrapping EnvelopedData (§6.1); a bare EnvelopedData is
//     also accepted by [Parse].
//   - KeyTransRecipientInfo (§6.2.1) with either RecipientIdentifier choice:
//     issuerAndSerialNumber (version 0) and subjectKeyIdentifier (version 2).
//     Other RecipientInfo choices (kari [1], kekri [2], pwri [3], ori [4]) are
//     parsed as opaque elements and skipped.
//   - Key transport: rsaEncryption, i.e. RSAES-PKCS1-v1_5 (RFC 3370 §4.2.1),
//     and id-RSAES-OAEP (RFC 3560, RFC 8017 appendix A.2.1) with SHA-1/MGF1-SHA-1
//     (the default parameters) or SHA-256/MGF1-SHA-256; a pSpecified label is
//     honoured.
//   - Content encryption (§6.3) with AES-128/192/256-CBC (RFC 3565),
//     DES-EDE3-CBC (RFC 3370 §5.1) and, only on request, DES-CBC; PKCS#7
//     padding (§6.3) checked in constant time.
//   - encryptedContent in primitive form or in the BER constructed form
//     (a series of OCTET STRING segments), and BER indefinite lengths
//     (§2 allows BER for EnvelopedData): the input is first read as DER and,
//     when that fails, rewritten once to definite lengths and read again.
//
// Not implemented: originatorInfo and unprotectedAttrs are skipped (never
// produced), AuthEnvelopedData, key agreement, KEK and password recipients,
// RC2 and every cipher not listed above (reported as [ErrUnsupportedAlgorithm]),
// and detached content. [Encrypt] always produces DER.
//
// # Errors
//
// Every error from Parse and Decrypt matches exactly one of four sentinels,
// so that a SCEP server can map them to a failInfo without seeing any detail:
// [ErrMalformed], [ErrUnsupportedAlgorithm] (also as [*AlgorithmError]),
// [ErrNoRecipient] and [ErrDecrypt]. Once a recipient of ours has been found,
// every failure (RSA unwrap, key length, ciphertext length, CBC padding)
// is reported as the single value [ErrDecrypt] with no wrapped detail. The
// checks that depend on secret data (RSA unwrap result, content-key length,
// CBC padding) do not return early: a failed unwrap continues with a random
// key and the padding is checked in constant time, so neither the error nor
// its timing can serve as a padding or Bleichenbacher oracle. Checks on
// public data (ciphertext empty or not a block multiple) fail as soon as they
// are reached, with the same ErrDecrypt. A wrong IV length is visible before
// any key is used and is reported by [Parse] as [ErrMalformed].
//
// # Resources
//
// All work and memory are bounded by a small multiple of the input length. The
// package has no global settings: algorithm choice and the DES opt-in travel
// with each call.
package cms
