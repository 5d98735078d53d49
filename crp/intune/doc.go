// Package intune lets any Go CA serve Microsoft Intune's SCEP profiles: it plugs the
// verdict of Intune's SCEP validation service into a [crp.RegistrationPoint], tells
// Intune about issued (or failed) certificates, and carries out the revocations
// Intune asks for.
//
// Intune mints an opaque, encrypted and signed challenge that only Intune's cloud can
// judge. Microsoft publishes the client for that judgement in C# and Java
// (github.com/microsoft/Intune-Resource-Access, src/CsrValidation); this package
// speaks the same protocol:
//
//   - sign-in: Microsoft Entra client credentials (a client secret, or a certificate
//     credential whose key is any crypto.Signer), tokens cached until shortly before
//     they expire ([Client]);
//   - discovery: the services' addresses from Microsoft Graph's service-principal
//     endpoints of Intune's application, cached, and asked again after a failure;
//   - validation: validateRequest with the SCEP transactionID and the DER CSR; only
//     Success passes, every other [Code] refuses in its phase ([Code.Verdict]);
//   - notification: successNotification before the certificate goes back to the
//     device (a failure withholds it), failureNotification when issuance fails after
//     a successful validation ([Notifier]);
//   - revocation: a [Poller] downloads revocation requests, hands each to a
//     [Revoker] ([CARevoker] for scepkit's built-in CA) and uploads the results.
//
// # Wiring a gateway
//
// Put a [Validator] in RegistrationPoint.Validators and a [Notifier] in
// RegistrationPoint.Notifier, and set RequireNotification ([Tenant.Wire] does all
// three). A certificate the Validator judged is withheld when its successNotification
// fails whether or not RequireNotification is set (the Validator is a
// crp.NotifiedValidator), and a registration point with the Validator but no
// Notifier fails Validate. The Validator accepts every challenge that is not one of scepkit's own JWT
// challenges (challenge.LooksLikeToken), so one gateway serves both. Intune checked
// the CSR against its profile, so the template that issues for Intune should take
// subject and SANs from the request (catemplate.Template.SubjectFromRequest and
// SANsFromRequest), chosen for example with a catemplate.ProfileResolver on
// Validator.Profile's ID.
//
// Several tenants in one process: Intune's challenges are opaque, so each tenant
// gets its own gateway path and registration point, set up by [Tenant.Wire] with
// its own Client (credentials, token and discovery caches), Validator and Notifier.
//
// Renewal: an Intune device renews by a new enrollment with a new key and a fresh
// challenge; crp sends every request carrying a challenge the Validator accepts to
// it, PKCSReq or RenewalReq, whatever certificate signs it. A template that needs
// approval answers PENDING; crp's Approve and Reject then notify Intune.
//
// # Failures
//
// A request is never passed without Intune's Success. A refusal is definitive (its
// crp.Error carries the phase: badTime for ChallengeExpired and
// ChallengeInvalidTimestamp, badRequest otherwise). When no verdict is obtained
// (sign-in refused, discovery failed, a non-2xx answer, a timeout, a malformed or
// oversized answer) the error matches crp.ErrUnavailable and one of [ErrSignIn],
// [ErrDiscovery], [ErrService], [ErrTransport], [ErrResponse]: the device gets
// FAILURE badRequest and may try again with the same challenge.
//
// Every HTTP exchange is bounded by Client.Timeout and Client.MaxResponse. Calls are
// retried (Client.Retries, with doubling backoff) after a transport error or a 429,
// 502, 503 or 504, never after a 500 or a verdict: validateRequest and the
// notifications name their SCEP transactionID, so a repeat asks the same question or
// reports the same fact; downloads only read Intune's queue; uploads report results by
// requestContext. Microsoft's library itself never retries. The client secret,
// tokens, challenges and CSRs are never logged; each exchange is logged with its
// client-request-id, for Microsoft support.
//
// # Testing
//
// Package intunetest emulates Entra, Graph and both services locally: it judges each
// CSR against what its challenge was minted for, keeps scripted verdicts and
// faults for tests, and holds clients to the wire forms of Microsoft's library.
//
// # Limits
//
// Certificate credentials must be RSA (Microsoft Entra's rule). The Azure AD Graph
// discovery fallback of Microsoft's library (retired by Microsoft) is not
// implemented. docs/intune.md lists what was verified against Microsoft's code and
// what against its documentation only.
package intune
