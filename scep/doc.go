// Package scep implements the Simple Certificate Enrolment Protocol (RFC 8894) on the
// wire: the PKIMessage codec, CertRep builders, capabilities, an http.Handler server and
// a client. It knows nothing of challenges, users or templates: a [Server] verifies and
// decrypts each request and hands it to a [Responder], which decides (package crp is
// one).
//
// Most users need only [Server] (mounted with [Mount]) and [Client]. [ParsePKIMessage],
// [NewRequest] and [Replier] are for those who build their own transport.
//
// # What is implemented
//
//   - Message types PKCSReq (19), RenewalReq (17), CertPoll/GetCertInitial (20),
//     GetCert (21), GetCRL (22) and CertRep (3) (RFC 8894 §3.2.1.2). UpdateReq (18),
//     CertRep sent to a server, and any other number are refused before decryption.
//   - The signed layer (CMS SignedData, RFC 5652 §5): RSA PKCS#1 v1.5 and ECDSA
//     signatures with SHA-256/384/512, SHA-1 only with [ParseOptions.AllowLegacy], MD5
//     never. The signature over the signed attributes is verified on the bytes as
//     received (RFC 5652 §5.4), and the verification time is the caller's, never the
//     sender's signingTime. Indefinite-length BER input is accepted.
//   - The envelope (CMS EnvelopedData, RFC 5652 §6): AES-128/192/256-CBC and 3DES-CBC,
//     single DES only with AllowLegacy, RC2 and others refused with badAlg; RSA PKCS#1
//     v1.5 and RSA-OAEP key transport through crypto.Decrypter; recipients matched by
//     issuer and serial or subject key identifier. Every decryption failure returns the
//     same [ErrDecrypt].
//   - Replies use the request's cipher, digest and key transport; their senderNonce is
//     fresh; recipientNonce is the request's senderNonce (RFC 8894 §3.2.1.5). FAILURE
//     and PENDING carry an empty id-data eContent, which OpenSSL verifies (without any
//     eContent it takes the reply for a detached signature).
//   - Subjects whose only fault is a PrintableString or IA5String holding other
//     characters (certmonger's CN=bob@example.com) are read for what they say
//     ([ParseCertificateRequest]); nothing else crypto/x509 refuses is accepted.
//   - GET PKIOperation in every base64 shape real clients send ([DecodeGETMessage]),
//     POST with any content type, body and query limits answered 413 and 414.
//
// # Failures
//
// A request that cannot be parsed far enough to address a reply (no transactionID)
// gets HTTP 400. Every other failure is a signed CertRep FAILURE whose failInfo comes
// from [FailInfoOf]: badAlg for refused algorithms, badMessageCheck for signatures and
// envelopes that do not verify or decrypt or are not for us, badRequest otherwise,
// unless a Responder chose another with [Fail]. Error text goes to the Server's Logger,
// never to the client.
//
// # Compatibility
//
// Tested against Debian's scepclient (micromdm 2.1.0: SHA-1, 3DES or DES, POST;
// needs AllowLegacy; with -ca-fingerprint it also needs [Server.CAKey]), certmonger
// 0.79 (GET, AES-256, SHA-256), captured Apple and NDES messages, and OpenSSL's CMS
// implementation for the envelope and every CertRep.
package scep
