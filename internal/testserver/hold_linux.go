package testserver

import "syscall"

// HoldPort binds a TCP socket to 127.0.0.1:port without listening on it: a client
// that connects is refused, as by a server that is down, and the kernel gives the port
// to no one who asks for a free one (another test's server, go test ./... running
// packages side by side), so that Restart finds it free. The returned func lets go.
func HoldPort(port int) func() {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return func() {}
	}
	// The killed server's connections may linger in TIME_WAIT on the port.
	syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return func() {}
	}
	return func() { syscall.Close(fd) }
}
