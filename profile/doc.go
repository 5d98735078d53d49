// Package profile models the SCEP certificate profile an Intune admin defines, binds it
// to one user and device, checks a device's CSR against the result, and exports it in
// the formats devices consume.
//
// (Full package documentation follows in doc.go.)
package profile
