//go:build !linux

package boltstore

import (
	"errors"
	"os"
)

// asyncSync is Linux's asynchronous fdatasync (see aio_linux.go); elsewhere the
// journal syncs with fdatasync(2) or fsync(2).
type asyncSync struct{}

func newAsyncSync() (*asyncSync, error) { return nil, errors.ErrUnsupported }

func (*asyncSync) fdatasync(*os.File) error { return errAsyncRefused }

func (*asyncSync) close() error { return nil }
