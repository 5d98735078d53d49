// Package logtext bounds text that reaches log records: what a requester chose (a
// CSR's subject, a path, a certificate's subject) must not make a record of its own
// size.
package logtext

import "strings"

// Cut returns s when it has at most n bytes, else its first n bytes (less a UTF-8
// sequence cut in the middle) followed by "…".
func Cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
