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
//   - examples: runnable programs assembling the packages (start with quickstart).
//
// # Assembling a gateway
//
// A gateway is a scep.Server whose Responder decides:
//
//	srv := &scep.Server{
//		CACerts:    []*x509.Certificate{caCert},
//		SignerCert: raSignCert, Signer: raSignKey,
//		Recipients: []scep.Recipient{{Certificate: raEncCert, Key: raEncKey}},
//		Responder:  registrationPoint, // a crp value, or any scep.Responder
//	}
//	scep.Mount(http.DefaultServeMux, "/certsrv/mscep/mscep.dll", srv) // and .../pkiclient.exe
//
// This package itself holds only documentation.
package scepkit
