// Package scepkit issues device and user certificates the way Microsoft Intune does
// through NDES, as a set of Go packages a program assembles.
//
// An MDM gives a device a SCEP profile and a one-hour, one-time challenge (packages
// profile and challenge). The device enrolls over SCEP (RFC 8894) at a gateway (package
// scep). A Certificate Registration Point verifies the request in three phases, the
// challenge not expired, the challenge and user genuine, the device mapped to the user,
// and resolves a certificate template (packages crp and catemplate); a CA issues and the
// MDM is told.
//
// # Packages
//
//   - scep: the wire protocol: PKIMessage codec, http.Handler server, client.
//   - challenge: challenge passwords as signed, short-lived, one-time JWTs.
//   - crp: the Certificate Registration Point: phases, interfaces, errors, traces.
//   - profile: SCEP profiles as an MDM admin defines them; rendering and CSR checks.
//   - catemplate: certificate templates, NDES-style resolution, a built-in CA.
//   - boltstore: everything a gateway remembers, in one local file (bbolt): the
//     default for a single gateway.
//   - pgstore: the same in PostgreSQL, shared by gateways running side by side.
//   - redisstore: challenge claims and transaction records in Redis, shared by
//     gateways.
//   - crp/storetest: the conformance suite of storage backends; run it on your own.
//   - pkcs11key: CA and RA keys held in a PKCS#11 token (an HSM); needs cgo.
//   - crp/intune: Microsoft Intune's challenges, notifications and revocations for a
//     registration point.
//   - crp/stepca: the registration point behind step-ca's SCEP provisioner, through
//     its webhooks.
//   - examples: runnable programs assembling the packages (start with quickstart and
//     minimal).
//
// # Assembling a gateway
//
// A gateway is a scep.Server whose Responder decides. With scepkit's registration
// point and its built-in CA and RA:
//
//	rp := &crp.RegistrationPoint{Verifier: verifier, Users: users, Devices: devices,
//		Profiles: profiles, Templates: templates, Issuer: crp.CAIssuer{CA: ca}}
//	srv := crp.NewServer(rp, ra) // the CA chain, the RA's keys, rp deciding
//	scep.Mount(http.DefaultServeMux, "/certsrv/mscep/mscep.dll", srv) // and .../pkiclient.exe
//
// Any other scep.Responder works the same way in a scep.Server of its own. The program
// examples/minimal is a whole gateway, MDM and device in about 70 lines.
//
// This package itself holds only documentation.
package scepkit
