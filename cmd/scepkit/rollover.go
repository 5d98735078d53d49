package main

import (
	"context"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/scepkit/scepkit/catemplate"
)

// rolloverPrepare writes the next CA and RA (or the next RA only) into a directory
// for rollover.dir: software keys, the current CA read from state_dir.
func rolloverPrepare(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rollover-prepare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", os.Getenv("SCEPKIT_CONFIG"), "TOML configuration `FILE` of the gateway (also SCEPKIT_CONFIG)")
	dir := fs.String("dir", "", "`DIR`ectory to write the next CA and RA to (created; must not hold a CA or RA yet)")
	raOnly := fs.Bool("ra-only", false, "issue a next RA under the current CA instead of making a next CA and its RA")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: scepkit rollover-prepare [-config FILE] -dir DIR [-ra-only]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		fs.Usage()
		return errors.New("-dir is required")
	}
	c, err := LoadConfig(*path, os.LookupEnv)
	if err != nil {
		return err
	}
	if c.PKCS11.Module != "" {
		return errors.New("rollover-prepare writes software keys; with pkcs11, generate the next keys in the token " +
			"under the rollover.*_key labels and put their certificates in rollover.dir (see docs/operations.md)")
	}
	for _, f := range []string{catemplate.CACertFile, catemplate.RASigningCertFile} {
		if _, err := os.Stat(filepath.Join(*dir, f)); err == nil {
			return fmt.Errorf("%s already holds %s: choose an empty directory", *dir, f)
		}
	}
	current, err := catemplate.LoadCA(c.StateDir)
	if err != nil {
		return &SettingError{"state_dir", "SCEPKIT_STATE_DIR", fmt.Errorf("the current CA: %w", err)}
	}
	suffix := time.Now().UTC().Format("2006-01-02")
	if *raOnly {
		ra, err := catemplate.NewRA(current, catemplate.RAOptions{Subject: pkix.Name{CommonName: "scepkit RA " + suffix}})
		if err != nil {
			return err
		}
		if err := catemplate.SaveRA(*dir, ra); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote a next RA issued by %q to %s (RA valid until %s)\n", current.Certificate.Subject.String(),
			*dir, ra.SigningCertificate.NotAfter.UTC().Format(time.RFC3339))
	} else {
		ca, ra, err := newPKI(pkix.Name{CommonName: "scepkit CA " + suffix, Organization: []string{"scepkit"}}, nil, nil, nil)
		if err != nil {
			return err
		}
		if err := catemplate.SaveCA(*dir, ca); err != nil {
			return err
		}
		if err := catemplate.SaveRA(*dir, ra); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote a next CA %q and its RA to %s; distribute %s to relying parties before the switch\n",
			ca.Certificate.Subject.String(), *dir, filepath.Join(*dir, catemplate.CACertFile))
	}
	fmt.Fprintf(stdout, "then set rollover.dir = %q and rollover.at (RFC 3339) and restart the gateway\n", *dir)
	return nil
}
