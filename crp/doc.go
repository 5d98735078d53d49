// Package crp is the Certificate Registration Point: what Intune's certificate
// connector and the NDES policy module do between "a SCEP request arrived" and "a
// certificate was issued".
//
// A [RegistrationPoint] decides each request in named phases:
//
//   - gateway: the CSR proves possession of its key, and the challenge was minted for
//     this gateway (its audience is the Verifier's);
//   - phase 1, expiry: the challenge is within its lifetime, at most one hour;
//   - phase 2, genuineness: the challenge's signature, key, issuer; the user it names
//     exists and is active; the challenge was not used before (claimed now);
//   - phase 3, mapping: the device exists, is enrolled to that user and compliant; the
//     CSR matches the profile rendered for them;
//   - template: a published template is resolved and accepts the CSR;
//   - issue: the CA signs, or queues (PENDING);
//   - notify: the MDM is told, success or failure.
//
// Each step is traced ([Trace]) and logged with the transactionID and the challenge's
// fingerprint, never the challenge. Users insert their own [Check] before or after any
// phase. A refusal is an *[Error] carrying its phase and [Reason]; on the wire the
// device sees only the failInfo: badTime for phase 1, badRequest otherwise (badCertId
// for a poll or GetCert naming nothing, and for an operator fault,
// [ReasonMisconfigured]: a profile or template the gateway cannot use).
//
// # One certificate per challenge
//
// The challenge is claimed at the end of phase 2 (step "challenge-unused", once the
// user is found active), before phase 3, the template and issuance, through the
// Verifier's replay store: of many concurrent requests with one challenge, one
// proceeds. A transient failure after the claim (an error matching [ErrUnavailable],
// a CA that cannot be reached) releases it, when the replay store is a
// challenge.Releaser and nothing was issued, so the device retries with the same
// challenge, and so does an operator fault ([ReasonMisconfigured]); a definitive
// refusal (phase 3, the template, the CA's [ErrRefused], any other error of the
// Issuer, a certificate that does not match the decision) burns it, and a PENDING
// answer keeps it. A step whose code panics (the user's directory, registry, check,
// Issuer or notifier) fails its request with [ReasonInternal], logged with its stack:
// the challenge is given back when the panic came before the issue phase, kept from
// it on (the CA may have signed). [RegistrationPoint.Validate] validates the profiles of
// a [MemoryProfiles], so that a profile no device could enroll with stops the gateway
// at start. A
// request resent with the same transactionID gets the recorded answer, and polls must
// come from the key of the original request. A challenge one of the Validators accepted (Intune's) is
// claimed the same way, right after the validator's verdict, by a digest of it in
// RegistrationPoint.Replay (or the Verifier's store) for [ExternalClaimLifetime]: the
// MDM's service may accept it again, the gateway does not.
//
// # Renewal
//
// A RenewalReq, or a PKCSReq signed by a certificate this CA issued, renews without a
// challenge: the signer must chain to CACert, be valid now (or within
// RenewalPolicy.Grace), not be revoked, be known to the CertificateStore and not
// withheld from its requester ([IssuedCertificate].Withheld), and the new
// CSR must keep its subject; phases 2 (user) and 3 (device, profile) still run.
// Revocation is always checked, by RegistrationPoint.Revocation or an Issuer that is a
// [RevocationChecker] ([CAIssuer] is): with neither, renewals are refused unless
// RenewalPolicy.InsecureSkipRevocationCheck. Through [RegistrationPoint.Enroll] a
// renewal needs a [Proof] that the requester holds the certificate's key; through
// SCEP the scep.Server verified the message's signature with it.
//
// # External validators
//
// Some MDMs mint opaque challenges that only their own service can judge (Intune's,
// see package crp/intune). A [ChallengeValidator] in RegistrationPoint.Validators
// claims such a challenge by its shape, without a network call, and its verdict
// replaces the built-in challenge, user, device and profile steps of the gateway and
// phases 1-3 (steps "challenge-external" and "external-<phase>" in the trace); the
// template, issue and notify phases run as usual, and the [Notification] names the
// validator so that the right MDM is told. One gateway so serves scepkit's own
// challenges and an MDM's side by side.
//
// # Embedding
//
// A CA with its own front end calls [RegistrationPoint.Enroll] with a CSR and a
// challenge, and gets the same phases, errors and trace without SCEP.
//
// A CA that issues by itself (step-ca, say, through its SCEP webhooks: package
// crp/stepca) calls [RegistrationPoint.Decide], which runs the gateway step, phases
// 1-3 and the template and claims the challenge without issuing, and returns what the
// certificate must contain; once the CA acted, [RegistrationPoint.Complete] checks
// the certificate against that decision, records it and notifies (or releases or
// burns the challenge after the CA's failure). Enroll runs the same steps with the
// Issuer in between. A decision not completed within DecisionTTL lapses.
package crp
