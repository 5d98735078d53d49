package boltstore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// An fdatasync(2) made from Go holds its goroutine's processor (P) for as long as the
// disk takes: the runtime hands a P over from a system call only when sysmon sees it
// there, and sysmon, which sleeps up to 10 ms between looks when it finds little to do,
// rarely sees a sync that lasts a fraction of a millisecond. With GOMAXPROCS=1 (one
// core, or a container limited to one CPU) no other goroutine runs meanwhile: measured
// over HTTP, 6–7 % of the core stood idle during the journal's syncs while requests
// waited to be decrypted and signed.
//
// asyncSync makes the same fdatasync through Linux's native AIO (IOCB_CMD_FDSYNC, which
// the kernel runs as vfs_fsync(file, 1), the call fdatasync(2) makes) and waits for its
// completion on an eventfd read through the runtime's poller, so that the goroutine is
// parked and its processor free while the disk works. Where AIO is not available (no
// io_setup, a seccomp profile refusing it, a file system refusing the command), the
// journal falls back to fdatasync(2).
type asyncSync struct {
	ctx   uintptr  // aio_context_t
	ev    *os.File // eventfd, non-blocking: read through the poller
	evfd  int
	event ioEvent
}

// iocb is struct iocb of linux/aio_abi.h (the key and rw_flags fields, swapped on big
// endian machines, are left zero).
type iocb struct {
	data      uint64
	key       uint32
	rwFlags   int32
	opcode    uint16
	reqprio   int16
	fildes    uint32
	buf       uint64
	nbytes    uint64
	offset    int64
	reserved2 uint64
	flags     uint32
	resfd     uint32
}

// ioEvent is struct io_event of linux/aio_abi.h.
type ioEvent struct {
	data, obj uint64
	res, res2 int64
}

const (
	iocbCmdFdsync = 3 // IOCB_CMD_FDSYNC
	iocbFlagResfd = 1 // IOCB_FLAG_RESFD: signal completion on aio_resfd
)

// newAsyncSync sets up an AIO context of one request and its eventfd.
func newAsyncSync() (*asyncSync, error) {
	var ctx uintptr
	if _, _, e := unix.Syscall(unix.SYS_IO_SETUP, 1, uintptr(unsafe.Pointer(&ctx)), 0); e != 0 {
		return nil, fmt.Errorf("io_setup: %w", e)
	}
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Syscall(unix.SYS_IO_DESTROY, ctx, 0, 0)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	return &asyncSync{ctx: ctx, ev: os.NewFile(uintptr(fd), "boltstore-aio"), evfd: fd}, nil
}

// errAsyncRefused marks a submission the kernel refused (nothing of it ran): the
// caller syncs with fdatasync(2) instead.
var errAsyncRefused = errors.New("boltstore: asynchronous fdatasync refused")

// fdatasync flushes f's data (not its times) to the disk; it is called by one
// goroutine at a time.
func (a *asyncSync) fdatasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var submitErr error
	if err := rc.Control(func(fd uintptr) {
		cb := &iocb{opcode: iocbCmdFdsync, fildes: uint32(fd), flags: iocbFlagResfd, resfd: uint32(a.evfd)}
		cbs := [1]*iocb{cb}
		// A refused submission started nothing: fdatasync(2) may take its place, and
		// answers for the file itself (EBADF, EINVAL, EIO) if the cause was there.
		n, _, e := unix.Syscall(unix.SYS_IO_SUBMIT, a.ctx, 1, uintptr(unsafe.Pointer(&cbs[0])))
		switch {
		case e != 0:
			submitErr = fmt.Errorf("%w: io_submit: %w", errAsyncRefused, e)
		case n != 1:
			submitErr = fmt.Errorf("%w: io_submit took %d requests", errAsyncRefused, n)
		}
	}); err != nil {
		return err
	}
	if submitErr != nil {
		return submitErr
	}
	// The completion: the eventfd's counter, then the event itself, ready by then.
	var cnt [8]byte
	if _, err := io.ReadFull(a.ev, cnt[:]); err != nil {
		return fmt.Errorf("boltstore: waiting for fdatasync: %w", err)
	}
	for {
		n, _, e := unix.Syscall6(unix.SYS_IO_GETEVENTS, a.ctx, 1, 1, uintptr(unsafe.Pointer(&a.event)), 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return fmt.Errorf("boltstore: io_getevents: %w", e)
		}
		if n != 1 {
			return fmt.Errorf("boltstore: io_getevents returned %d events", n)
		}
		break
	}
	if a.event.res < 0 {
		return syscall.Errno(-a.event.res)
	}
	return nil
}

// close releases the AIO context and the eventfd. No request is in flight: each
// fdatasync waits for its own.
func (a *asyncSync) close() error {
	_, _, e := unix.Syscall(unix.SYS_IO_DESTROY, a.ctx, 0, 0)
	err := a.ev.Close()
	if e != 0 {
		return fmt.Errorf("io_destroy: %w", e)
	}
	return err
}
