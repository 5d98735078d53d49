// Package challenge mints and verifies SCEP challenge passwords (RFC 8894,
// the PKCS#9 challengePassword attribute of the CSR) as signed
// JWTs, the way an MDM such as Intune hands a device a one-hour, one-time
// challenge for one user, one device and one gateway.
//
// An [Issuer] (the MDM) mints a challenge for a [Request]. A [Verifier]
// (the Certificate Registration Point behind the gateway) checks it
// offline against a [KeySet] of the MDM's public keys, which may come from
// a JWKS document ([ParseJWKS]), and records one-time use in a
// [ReplayStore] ([MemoryReplayStore] in one process). Signing and
// verification use github.com/golang-jwt/jwt/v5 algorithms: EdDSA
// (Ed25519, the default), ES256, RS256 and PS256 with any crypto.Signer,
// and HS256 with a shared secret only where a verifier lists it.
//
// The package imports no other scepkit package; the crp package puts its
// errors into the CRP's phases.
//
// # Token
//
// The header is {"alg":…,"kid":…,"typ":"scep+jwt"} ([TokenType], required
// on verify). The claims are jti (16 random bytes, base64url), iss, sub
// (the user), aud (the gateway, a single string), iat, nbf (= iat) and exp
// (at most one hour after iat), and the private claims "dev" (device),
// "prof" (profile) and "x" (a JSON object of extra claims), all optional.
//
// # Encoding
//
// A challenge travels inside the CSR, where some clients are picky:
// Windows refuses '_'. [Issuer.Issue] therefore maps the base64url
// alphabet of the compact JWS, '-' to '+' and '_' to '/', so that the
// whole challenge is letters, digits, '+', '/' and '.', all of them
// PrintableString characters (X.680). The verifier maps them back; it also
// accepts the plain base64url form. The tests put challenges in CSRs
// encoded as PrintableString, built with crypto/x509 and with the openssl
// command, and parse them back.
//
// # Length
//
// PKCS#9 (RFC 2985) bounds challengePassword at 255 characters
// (ub-challengePassword, [PKCS9MaxLength]). A JWT with the claims above
// cannot fit: the Ed25519 signature alone is 86 characters, the header 67,
// and jti, iat, nbf and exp take about 110 more before any user, device,
// issuer or audience. Measured (TestLength, iss "mdm.example", aud
// "gw-a.example", GUID ids):
//
//	                 user+device+profile   user only   short ids ("u1", "gw1")
//	Ed25519 (EdDSA)         501               380            322
//	ES256 (P-256)           501               380            322
//	RS256/PS256-2048        757               636            578
//	HS256                   450               329            271
//
// Above 255: Go's encoding/asn1 and crypto/x509 encode and parse the
// attribute whatever its length, and openssl req (3.0) writes a 500-character
// challengePassword without complaint (both tested); a strict PKCS#9
// decoder or a device may refuse it. Keep ids short, leave DeviceID,
// ProfileID and Extra empty when the CRP does not need them, and prefer
// Ed25519 or ES256 to RSA. Challenges over [MaxLength] (4096) are refused.
//
// # Check order
//
// [Verifier.Check] runs these checks in this order and stops at the first
// failure, returning an error that matches exactly one sentinel:
//
//  1. well-formed: length, alphabet, three segments, base64url, JSON
//     header and claims, integer numeric dates ([ErrMalformed]);
//  2. algorithm on the allow-list, never "none", never HS256 unless listed
//     ([ErrAlgorithm]);
//  3. typ is [TokenType] ([ErrType]); a crit header is refused
//     ([ErrMalformed]);
//  4. kid names a key of the KeySet ([ErrUnknownKey]), and that key's type
//     fits the alg: an HS256 token whose kid names a public key, or an
//     ES256 token naming an Ed25519 key, is refused ([ErrAlgorithm]);
//  5. signature ([ErrSignature]);
//  6. jti, iss, sub, aud, iat, nbf and exp present ([ErrMissingClaim]),
//     dates between 1970 and 9999 ([ErrMalformed]);
//  7. issuer ([ErrIssuer]);
//  8. audience: exactly one, this gateway's ([ErrAudience]);
//  9. nbf and iat not in the future, beyond the leeway ([ErrNotYetValid]);
//  10. exp not passed, beyond the leeway ([ErrExpired]);
//  11. exp - iat at most one hour with no leeway, nbf not after exp
//     ([ErrLifetime]), so a compromised or misconfigured signer cannot
//     mint a longer-lived challenge.
//
// [Verifier.Verify] adds, 12, one-time use: [Verifier.Claim] records the
// jti in the ReplayStore until exp plus the leeway plus [ClaimMargin], a day
// ([ErrReplayed]): a store forgets a claim by the clock of whoever sweeps it,
// and clocks that disagree (a clock stepped forward and back, gateways minutes
// apart sharing a store) must not reopen a used challenge.
// Nothing about a challenge's content is trusted before step 5.
//
// # Errors and CRP phases
//
// Phase 1, expiry (SCEP failInfo badTime): [ErrNotYetValid], [ErrExpired],
// [ErrLifetime]; see [IsExpiry]. Phase 2, genuineness (badRequest):
// [ErrMalformed], [ErrAlgorithm], [ErrType], [ErrUnknownKey],
// [ErrSignature], [ErrMissingClaim], [ErrIssuer], [ErrAudience],
// [ErrReplayed]; see [IsGenuineness]. [ErrConfig] is an operator error,
// and an error of the replay store itself matches no sentinel: both are
// internal failures, not the device's. Errors never contain the challenge;
// log [Fingerprint] instead.
//
// # One-time use and retries
//
// The CRP (package crp) calls [Verifier.Check] once, in its gateway phase,
// and judges the result phase by phase: the audience, then the lifetime
// (phase 1), then genuineness (phase 2). It calls [Verifier.Claim] at the
// end of phase 2, after the challenge is found genuine and the user it
// names active (step "challenge-unused"), and so before phase 3 (device
// mapping, profile match), the template and issuance: of concurrent
// requests with one challenge, only one runs them.
//
// A refusal after the claim burns the challenge unless it is no fault of
// the device's: a transient failure (a directory, registry, store or CA
// that could not be reached or did not answer in time: an error matching
// crp.ErrUnavailable) or an operator fault (crp.ReasonMisconfigured, a
// profile or template the gateway cannot use). Those call
// [Verifier.Release], so that the device can retry with the same
// challenge, provided nothing was issued yet and the ReplayStore is a
// [Releaser]. Every other refusal (an unknown device or one enrolled to
// another user, a CSR that does not match the profile, a template or a CA
// that refuses the request) leaves it claimed: the device needs a new
// challenge. A PENDING answer leaves it claimed too, and so does any
// failure once the CA has signed. [Verifier.Verify] is Check plus Claim for
// callers without that need.
//
// # Performance and memory
//
// Measured on a shared 2-vCPU VM (Intel Xeon, Go 1.26, load from other
// jobs; medians resist it):
//
//	BenchmarkVerify      Check median 59 µs, raw ed25519.Verify median 57 µs
//	                     on the same bytes in the same loop: x-floor 1.04
//	                     (-cpu 2, three runs); 0.93 to 1.12 at -cpu 1,
//	                     where the two medians jitter more
//	BenchmarkCheckAllocs 48 allocs, 4192 B per Check
//	BenchmarkReplayClaim 520 to 650 ns per claim (-cpu 1 and 2), with about
//	                     360,000 live entries, the id's base64 encoding and
//	                     a shared test clock included; 1 alloc (the id).
//	                     Since every id is hashed (SHA-256), 0.99 to 1.05 µs
//	                     against 0.95 to 0.97 µs before, alternating runs on
//	                     one core with another job on the second
//	1,000,000 live entries in MemoryReplayStore: 79.8 MiB of heap
//	                     (84 bytes per entry; target <= 128 MiB)
//	FuzzVerify           3,255,760 executions in 3 minutes, no failure
//
// Reproduce with:
//
//	go test ./challenge/ -run '^$' -bench . -benchtime 2s -count 3
//	go test ./challenge/ -run 'TestMemoryReplayStoreMillion|TestLength' -v
//	go test ./challenge/ -run '^$' -fuzz '^FuzzVerify$' -fuzztime 180s
//
// # Compatibility
//
// The claim names, [TokenType] and the encoding are part of the wire
// format: a change would strand challenges already in devices' profiles,
// so it would come with a new typ and a transition in which verifiers
// accept both.
package challenge
