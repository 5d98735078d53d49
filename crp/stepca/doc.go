// Package stepca puts scepkit's registration point behind step-ca's SCEP provisioner
// (github.com/smallstep/certificates), through the two webhooks that provisioner
// calls: SCEPCHALLENGE, before it issues (the challenge, the SCEP transactionID and
// the CSR; it issues only on {"allow": true}, and its X.509 template can read the
// answer's data), and NOTIFYING, after (the issued certificate, or an error code and
// description).
//
// [Handler] answers both with crp.RegistrationPoint's Decide and Complete: step-ca
// then issues under scepkit's one-hour signed challenges, its three phases, profile
// matching, template resolution, and its notifier (Intune's validation and
// notifications too, with package crp/intune's Validator and Notifier in the
// registration point). [Template] is the step-ca X.509 template that writes exactly
// the decided subject, subjectAltName, key usages and validity; Complete refuses a
// certificate that differs.
//
// [Validator] is the other direction: a crp.ChallengeValidator that asks any service
// speaking the SCEPCHALLENGE format (an MDM that already serves step-ca) to judge a
// scepkit gateway's challenges.
//
// The wire format (JSON bodies, the X-Smallstep-Signature HMAC-SHA256 of the body in
// hex, bearer or basic authentication, step-ca's TLS client certificate) is read from
// step-ca's webhook code and tested against step-ca v0.30.2; this package does not
// import step-ca.
package stepca
