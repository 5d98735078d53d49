package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"unicode/utf8"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/profile"
)

// maxEnrolledDevices bounds the devices the demo MDM enrolls: its endpoint is
// unauthenticated, and each device stays in memory and in its file (about 200 bytes).
const maxEnrolledDevices = 200_000

var (
	// errDeviceTaken: the device is enrolled to another user. A real MDM retires a
	// device before another user enrolls it.
	errDeviceTaken = errors.New("device enrolled to another user")
	// errTooManyDevices: maxEnrolledDevices are enrolled.
	errTooManyDevices = errors.New("too many devices enrolled")
)

// deviceBook is the demo MDM's record of the devices its endpoint enrolled, each to
// one user. It keeps them in a file of the state directory, one JSON line appended per
// device, so that a gateway restarted on the same state still maps them: a challenge
// minted before the restart, and the renewals of their certificates, keep working.
// Lines are written, not synced, one by one (a crash of the process loses none; a
// power loss may lose the latest); Close syncs the file. A real MDM keeps its devices
// in its own database.
type deviceBook struct {
	reg *crp.MemoryRegistry

	mu   sync.Mutex
	f    *os.File
	size int64 // of f's lines, all whole
	n    int   // devices in f (reg holds them, and the demo's own)
}

type deviceLine struct {
	Device string `json:"device"`
	User   string `json:"user"`
}

// openDeviceBook loads the devices enrolled before from path into reg, and opens path
// to append the next ones.
func openDeviceBook(path string, reg *crp.MemoryRegistry) (*deviceBook, error) {
	b := &deviceBook{reg: reg}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	if err := b.load(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	b.f = f
	return b, nil
}

// load reads the lines of f. A last line without its newline was cut by a crash
// mid-write: it is dropped, so that the next line appended starts clean. Any other
// line that does not parse is damage, and refused: nothing written whole is cut.
func (b *deviceBook) load(f *os.File) error {
	r := bufio.NewReader(f)
	var good int64
	for {
		line, err := r.ReadBytes('\n')
		switch {
		case err == io.EOF && len(line) == 0:
			b.size = good
			return nil
		case err == io.EOF:
			b.size = good
			return f.Truncate(good)
		case err != nil:
			return err
		}
		var d deviceLine
		if json.Unmarshal(line, &d) != nil || d.Device == "" || d.User == "" {
			return fmt.Errorf("line at byte %d is not a device", good)
		}
		if b.n >= maxEnrolledDevices {
			return fmt.Errorf("over %d devices", maxEnrolledDevices)
		}
		good += int64(len(line))
		b.n++
		b.put(d.Device, d.User)
	}
}

func (b *deviceBook) put(device, user string) {
	b.reg.Put(crp.Device{Device: profile.Device{ID: device, AADDeviceID: device, Name: device},
		UserID: user, Compliant: true})
}

// enroll enrolls device to user: at once if it is already theirs, refused if it is
// another user's (enrolled here, or one of the demo's own devices).
func (b *deviceBook) enroll(device, user string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if d, err := b.reg.LookupDevice(context.Background(), device); err == nil {
		if d.UserID != user {
			return errDeviceTaken
		}
		return nil
	}
	if b.n >= maxEnrolledDevices {
		return errTooManyDevices
	}
	if !utf8.ValidString(device) || !utf8.ValidString(user) {
		// JSON would write U+FFFD in place of the invalid bytes: two devices here would
		// be one after a restart.
		return errBadName
	}
	line, err := json.Marshal(deviceLine{Device: device, User: user})
	if err != nil {
		return err
	}
	line = append(line, '\n')
	if _, err := b.f.Write(line); err != nil {
		b.f.Truncate(b.size) // no torn line for the next to follow
		return err
	}
	b.size += int64(len(line))
	b.n++
	b.put(device, user)
	return nil
}

// Close syncs and closes the file.
func (b *deviceBook) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.f == nil {
		return nil
	}
	err := b.f.Sync()
	if cerr := b.f.Close(); err == nil {
		err = cerr
	}
	b.f = nil
	return err
}
