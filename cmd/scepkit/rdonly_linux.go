package main

import "golang.org/x/sys/unix"

// readOnlyFS reports whether dir is on a file system mounted read-only, which nobody
// may write whatever the modes say: a Kubernetes ConfigMap or Secret volume is
// mounted so, its directory mode 0777.
func readOnlyFS(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Flags&unix.ST_RDONLY != 0
}
