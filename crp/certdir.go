package crp

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/scepkit/scepkit/internal/atomicfile"
)

// CertificateDir is a CertificateStore that keeps each issued certificate, with
// the user, device, profile and template it was issued for, as one JSON file in a
// directory, and serves lookups from memory. It lets renewals and GetCert work across
// restarts, and between gateways that share the directory. A real deployment keeps
// this in its CA database.
type CertificateDir struct {
	dir string
	mem MemoryCertificates
	// syncDir makes the directory's entries durable; nil means atomicfile.SyncDir.
	// Tests make it fail.
	syncDir func(dir string) error
}

type certificateFile struct {
	Certificate []byte `json:"certificate"` // DER
	UserID      string `json:"user_id"`
	DeviceID    string `json:"device_id"`
	ProfileID   string `json:"profile_id"`
	Template    string `json:"template"`
	// Added later: absent (zero) in files written before.
	TransactionID string `json:"transaction_id,omitempty"`
	IssuedAt      int64  `json:"issued_at,omitempty"` // unix ns
	Withheld      bool   `json:"withheld,omitempty"`
}

// OpenCertificateDir creates dir if needed and loads the certificates it holds.
func OpenCertificateDir(dir string) (*CertificateDir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	d := &CertificateDir{dir: dir}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		ic, err := readCertificateFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		d.mem.Add(context.Background(), ic)
	}
	return d, nil
}

// Add implements CertificateStore: the file is written (to a temporary file, synced,
// renamed into place) and the directory synced before the certificate is known in
// memory. When the directory cannot be synced, Add returns that error, wrapped: the
// file is in place, and known in memory as other gateways sharing the directory see
// it, but may not last a power loss, so the certificate is not reported stored (a
// RegistrationPoint then withholds it, as after any failed inventory write).
func (d *CertificateDir) Add(ctx context.Context, c *IssuedCertificate) error {
	if err := checkIssued(c); err != nil {
		return err
	}
	f := certificateFile{Certificate: c.Certificate.Raw, UserID: c.UserID, DeviceID: c.DeviceID,
		ProfileID: c.ProfileID, Template: c.Template, TransactionID: c.TransactionID, Withheld: c.Withheld}
	if !c.IssuedAt.IsZero() {
		f.IssuedAt = c.IssuedAt.UnixNano()
	}
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("%x.json", c.Certificate.SerialNumber)
	if err := atomicfile.Replace(filepath.Join(d.dir, name), b, 0o600); err != nil {
		return err
	}
	sync := d.syncDir
	if sync == nil {
		sync = atomicfile.SyncDir
	}
	serr := sync(d.dir)
	if err := d.mem.Add(ctx, c); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("crp: certificate %x written but its directory not synced (the file may not last a power loss): %w",
			c.Certificate.SerialNumber, serr)
	}
	return nil
}

// Lookup implements CertificateStore. A serial not in memory is looked for on
// disk, so that gateways sharing the directory see what the others issued.
func (d *CertificateDir) Lookup(ctx context.Context, serial *big.Int) (*IssuedCertificate, error) {
	c, err := d.mem.Lookup(ctx, serial)
	if err == nil || serial == nil || serial.Sign() <= 0 {
		return c, err
	}
	ic, ferr := readCertificateFile(filepath.Join(d.dir, fmt.Sprintf("%x.json", serial)))
	if ferr != nil || ic.Certificate.SerialNumber.Cmp(serial) != 0 {
		return nil, err // not found, as memory said
	}
	d.mem.Add(ctx, ic)
	return ic, nil
}

func readCertificateFile(path string) (*IssuedCertificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f certificateFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	c, err := x509.ParseCertificate(f.Certificate)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	ic := &IssuedCertificate{Certificate: c, UserID: f.UserID, DeviceID: f.DeviceID,
		ProfileID: f.ProfileID, Template: f.Template, TransactionID: f.TransactionID, Withheld: f.Withheld}
	if f.IssuedAt != 0 {
		ic.IssuedAt = time.Unix(0, f.IssuedAt)
	}
	return ic, nil
}

// Len returns how many certificates are stored.
func (d *CertificateDir) Len() int { return d.mem.Len() }

// Certificates implements CertificateQuerier, from memory.
func (d *CertificateDir) Certificates(ctx context.Context, q CertificateQuery) ([]*IssuedCertificate, error) {
	return d.mem.Certificates(ctx, q)
}

// MigrateCertificateDir copies the certificates of a CertificateDir (the layout of
// earlier versions: one JSON file per certificate) into to, then renames dir to
// dir+".migrated", so that it runs once: on the first open of a new store over an
// old state directory. When that name is taken (a dir written again by an earlier
// version after a first migration), dir+".migrated.2", ".3" and so on. A dir that
// does not exist is not an error (nothing to migrate). It returns how many
// certificates were copied. Interrupted, it can be run again: adding a certificate
// again replaces it with the same record.
func MigrateCertificateDir(ctx context.Context, dir string, to CertificateStore) (int, error) {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	old, err := OpenCertificateDir(dir)
	if err != nil {
		return 0, fmt.Errorf("crp: migrating %s: %w", dir, err)
	}
	n := 0
	q := CertificateQuery{Limit: MaxListLimit}
	for {
		page, err := old.Certificates(ctx, q)
		if err != nil {
			return n, err
		}
		added, err := addAll(ctx, to, page)
		n += added
		if err != nil {
			return n, fmt.Errorf("crp: migrating %s: %w", dir, err)
		}
		if len(page) < q.Limit {
			break
		}
		q.After = page[len(page)-1]
	}
	for i := 1; ; i++ {
		dst := dir + ".migrated"
		if i > 1 {
			dst += "." + strconv.Itoa(i)
		}
		if _, err := os.Lstat(dst); err == nil {
			continue
		}
		if err := os.Rename(dir, dst); err != nil {
			return n, fmt.Errorf("crp: migrating %s: %w", dir, err)
		}
		// Durable, or a power loss could undo the rename and run the migration again.
		if err := atomicfile.SyncDir(filepath.Dir(filepath.Clean(dir))); err != nil {
			return n, fmt.Errorf("crp: migrating %s: %w", dir, err)
		}
		return n, nil
	}
}

// migrateWorkers is how many Adds of a migration run at once: a store that commits
// concurrent writes together (boltstore) then shares its fsyncs among them.
const migrateWorkers = 32

// addAll adds every certificate of page to to, migrateWorkers at a time. It returns
// how many were added and the first error.
func addAll(ctx context.Context, to CertificateStore, page []*IssuedCertificate) (int, error) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		added int
		first error
	)
	next := make(chan *IssuedCertificate)
	for w := 0; w < migrateWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range next {
				err := to.Add(ctx, c)
				mu.Lock()
				if err == nil {
					added++
				} else if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	for _, c := range page {
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed {
			break
		}
		next <- c
	}
	close(next)
	wg.Wait()
	return added, first
}
