// Package profile models the SCEP certificate profile an Intune admin defines, binds it
// to one user and one device, checks a device's certificate request against the
// result, and exports it in the forms devices consume.
//
// In scepkit's flow it is where the MDM builds the profile, and half of phase 3 (the
// CSR matches the profile rendered for the user and device; package crp runs the
// phases). It does no I/O and knows nothing of
// challenges, SCEP messages or CAs; package catemplate applies a [Rendered] profile to
// a certificate template.
//
// # Settings
//
// [Profile] carries every setting of an Intune SCEP profile: certificate type, platform,
// subject name format, subject alternative names, validity, key storage provider, key
// usage, key type and size, hash, extended key usages, renewal threshold, SCEP server
// URLs and the root CA (or its SHA-1 fingerprint). [Profile.Validate] checks each
// against the bounds Intune and the device payloads allow and returns one [*FieldError]
// per bad setting.
//
// # Variables and rendering
//
// Subject formats and SAN values may contain variables in Intune's spelling, such as
// {{UserPrincipalName}} or {{AAD_Device_ID}}; [BuiltinVariables] lists them, and names
// match ignoring ASCII case. Callers add their own through [Values]. [Render] fills them
// from a [User] and a [Device]:
//
//   - The format is parsed first ([ParseSubjectFormat]) into a fixed sequence of RDNs
//     over a fixed attribute-type table; variables then fill attribute values only. A
//     value is used verbatim as one attribute value, whatever it contains (",CN=admin",
//     "+", quotes, backslashes), so no value can add an RDN or a SAN.
//   - Values containing NUL or any other control character, or invalid UTF-8, are
//     refused ([ErrInvalidValue]), not stripped: a certificate never carries them, and
//     silently changing a name is worse than failing.
//   - SAN values may not contain { } | ; (Intune's rule; ";" separates names in the
//     Windows CSP), DNS names must be host names, email addresses and URIs ASCII.
//   - An unknown variable is [ErrUnknownVariable]; an empty one [ErrEmptyVariable];
//     a user variable in a device certificate [ErrVariableNotAllowed].
//
// [Rendered.RawSubject] is the DER subject to put in a CSR or certificate (it keeps
// multi-valued RDNs); [Rendered.Subject] holds the same attributes in order as
// pkix.Name.ExtraNames.
//
// # Checking a request
//
// [Check] compares a CSR with a [Rendered] profile: the subject as a multiset of
// (attribute type, value) pairs, exactly, with no extra attribute allowed; each SAN
// kind as a multiset (UPNs are read from the otherName 1.3.6.1.4.1.311.20.2.3 that
// crypto/x509 does not expose, see [AltNames]); key type and size; requested key usage
// and EKUs when present; the hash on platforms where the profile sets it; and requested
// extensions (no CA, no unknown critical ones). Each difference is a [*MismatchError]
// naming the field; several are joined. Check does not verify the CSR's signature.
//
// # Exports
//
// [ExportJSON] writes a [JSONProfile] with stable field names; [MobileConfig] an
// unsigned Apple configuration profile with a com.apple.security.scep payload;
// [SyncML] the Windows ClientCertificateInstall CSP commands. Golden copies of each live
// in testdata/.
//
// # Bundles
//
// A certificate alone is of no use to a device: [Bundle] adds the trusted root (and
// intermediates) and the networks that authenticate with the certificate, an EAP-TLS
// Wi-Fi network ([WiFi]) and an IKEv2 VPN ([VPN]). [Bundle.MobileConfig] links them
// by payload UUID (the Wi-Fi's PayloadCertificateUUID is the SCEP payload, its
// PayloadCertificateAnchorUUID the root payload); [Bundle.SyncML] installs the root
// through RootCATrustedCertificates, enrolls through ClientCertificateInstall and adds
// a WLAN profile ([Bundle.WLANProfile]) that picks the SCEP certificate by the root's
// hash; [Bundle.JSON] carries the same parts for MDMs that render their own formats.
// UUIDs derive from the profile and the device, so a re-deployed bundle replaces the
// installed one. SSIDs, server names and VPN settings are checked like rendered
// values: a control character, a ";" in a server name or an over-long SSID is a
// [*FieldError], never stripped.
//
// # Compatibility
//
// Exported names follow semantic versioning once scepkit reaches v1. The JSON field
// names, the enum String values used in it, and the set of built-in variables only
// grow. Values of enum constants may be renumbered before v1; use the names.
package profile
