package boltstore

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
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
// io_setup, a seccomp profile refusing it with an error, a file system refusing the
// command, an eventfd the poller cannot watch), the journal falls back to fdatasync(2).
//
// The runtime polls its network poller only when a processor has nothing else to run
// (or every 10 ms, from sysmon): on a busy core an eventfd that became readable could
// wait that long. So the wait also has a deadline of pollEvery, whose timer is checked
// at every scheduling point, after which the completion is looked for without waiting;
// the eventfd is only a wake-up, and the completion is always taken from the ring with
// io_getevents, never waited for there (that would hold the processor again).
type asyncSync struct {
	ctx    uintptr  // aio_context_t
	ev     *os.File // eventfd, non-blocking: read through the poller
	evfd   int
	event  ioEvent
	closed bool
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
	a := &asyncSync{ctx: ctx, ev: os.NewFile(uintptr(fd), "boltstore-aio"), evfd: fd}
	// A file the poller does not watch (epoll_ctl failed: the user's watches are
	// used up) has no deadlines, and its Read would not wait: no AIO then.
	if err := a.ev.SetReadDeadline(time.Time{}); err != nil {
		a.close()
		return nil, fmt.Errorf("eventfd not pollable: %w", err)
	}
	return a, nil
}

// pollEvery bounds how long a completion waits to be noticed on a busy core.
const pollEvery = 200 * time.Microsecond

// fdatasync flushes f's data (not its times) to the disk; it is called by one
// goroutine at a time.
func (a *asyncSync) fdatasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("%w: %w", errAsyncRefused, err)
	}
	var submitErr error
	if err := rc.Control(func(fd uintptr) {
		cb := &iocb{opcode: iocbCmdFdsync, fildes: uint32(fd), flags: iocbFlagResfd, resfd: uint32(a.evfd)}
		cbs := [1]*iocb{cb}
		// A refused submission started nothing: fdatasync(2) may take its place, and
		// answers for the file itself (EBADF, EINVAL, EIO) if the cause was there.
		n, _, e := unix.Syscall(unix.SYS_IO_SUBMIT, a.ctx, 1, uintptr(unsafe.Pointer(&cbs[0])))
		for e == syscall.EINTR {
			n, _, e = unix.Syscall(unix.SYS_IO_SUBMIT, a.ctx, 1, uintptr(unsafe.Pointer(&cbs[0])))
		}
		switch {
		case e != 0:
			submitErr = fmt.Errorf("%w: io_submit: %w", errAsyncRefused, e)
		case n != 1:
			submitErr = fmt.Errorf("%w: io_submit took %d requests", errAsyncRefused, n)
		}
	}); err != nil {
		return fmt.Errorf("%w: %w", errAsyncRefused, err)
	}
	if submitErr != nil {
		return submitErr
	}
	res, err := a.wait()
	if err != nil {
		// The caller closes a (io_destroy waits for the request in flight).
		return fmt.Errorf("%w: %w", errAsyncBroken, err)
	}
	if res < 0 {
		return syscall.Errno(-res)
	}
	return nil
}

// wait returns the result of the one request in flight.
func (a *asyncSync) wait() (int64, error) {
	var cnt [8]byte
	for {
		if ok, err := a.reap(); ok || err != nil {
			return a.event.res, err
		}
		if err := a.ev.SetReadDeadline(time.Now().Add(pollEvery)); err != nil {
			return 0, err
		}
		// A count left from an earlier completion only wakes this loop early.
		if _, err := a.ev.Read(cnt[:]); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, fmt.Errorf("reading the eventfd: %w", err)
		}
	}
}

// reap takes the completed event from the ring without waiting (a zero timeout).
func (a *asyncSync) reap() (bool, error) {
	var zero unix.Timespec
	for {
		n, _, e := unix.Syscall6(unix.SYS_IO_GETEVENTS, a.ctx, 0, 1, uintptr(unsafe.Pointer(&a.event)),
			uintptr(unsafe.Pointer(&zero)), 0)
		switch {
		case e == syscall.EINTR:
			continue
		case e != 0:
			return false, fmt.Errorf("io_getevents: %w", e)
		}
		return n == 1, nil
	}
}

// close releases the AIO context (io_destroy waits for a request in flight) and the
// eventfd; a second close does nothing.
func (a *asyncSync) close() error {
	if a.closed {
		return nil
	}
	a.closed = true
	_, _, e := unix.Syscall(unix.SYS_IO_DESTROY, a.ctx, 0, 0)
	err := a.ev.Close()
	if e != 0 {
		return fmt.Errorf("io_destroy: %w", e)
	}
	return err
}
