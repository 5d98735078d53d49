package crp

import "sync/atomic"

// CountSignatureChecks counts the certificate signature checks the registration
// point makes from now on, until the returned func, which reports the count.
func CountSignatureChecks() (stop func() int) {
	var n atomic.Int64
	count := func() { n.Add(1) }
	signatureCheckHook.Store(&count)
	return func() int {
		signatureCheckHook.Store(nil)
		return int(n.Load())
	}
}

// SetDirSync has d sync its directory with sync instead of fsync.
func SetDirSync(d *CertificateDir, sync func(dir string) error) { d.syncDir = sync }
