// Package catemplate holds certificate templates, resolves them NDES-style, applies
// them to a CSR, and provides a built-in CA and RA that sign through a crypto.Signer.
package catemplate
