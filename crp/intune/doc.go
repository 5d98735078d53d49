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
// RegistrationPoint.Notifier, and set RequireNotification. The Validator accepts every
// challenge that is not one of scepkit's own JWT challenges (challenge.LooksLikeToken),
// so one gateway serves both. Intune checked the CSR against its profile, so the
// template that issues for Intune should take subject and SANs from the request
// (catemplate.Template.SubjectFromRequest and SANsFromRequest), chosen for example with
// a catemplate.ProfileResolver on Validator.Profile's ID.
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
// Package intunetest emulates Entra, Graph and both services locally, with scripted
// verdicts and faults.
//
// # Limits
//
// Renewals without a challenge (a RenewalReq signed by a certificate issued through
// Intune) run crp's renewal path, which looks the user up by the empty user id of such
// a certificate and so refuses them; Intune renews by a new enrollment with a fresh
// challenge, which this package serves. Templates that require approval
// (PENDING) are not supported for Intune requests. The Azure AD Graph discovery
// fallback of Microsoft's library (retired by Microsoft) is not implemented.
package intune
