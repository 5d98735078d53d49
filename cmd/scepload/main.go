// Command scepload drives a running SCEP gateway over real HTTP with N concurrent
// devices and reports what it measured: enrollments per second, latency percentiles,
// failures by failInfo, and the server's CPU time and resident memory growth per
// enrollment (read from /proc/PID/stat and /proc/PID/status when -pid is given).
//
// Each enrollment is what a device does: GetCACaps, then a PKCSReq carrying a fresh
// challenge (from a scepkit MDM endpoint with -mdm, or a static one with -challenge),
// signed with the device's key, and the CertRep decrypted and checked. Device keys are
// made before the clock starts. The run is bounded by -n and -d, and only loopback
// addresses are accepted as targets. -ca-fingerprint pins the CA as a device does;
// without it scepload trusts whatever the server presents (scep.Client's
// InsecureSkipCAVerify, said on stderr), which it allows only because the target is
// on loopback.
//
//	go run ./examples/quickstart -serve 127.0.0.1:8080 &
//	go run ./cmd/scepload -url http://127.0.0.1:8080/scep \
//	    -mdm http://127.0.0.1:8080/mdm/profile -c 8 -n 400 -pid $(pgrep -n quickstart)
//
// Against a server with a static challenge (micromdm's scepserver, for example):
//
//	go run ./cmd/scepload -url http://127.0.0.1:2016/scep -challenge secret -c 8 -n 400
package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/scepkit/scepkit/scep"
)

type config struct {
	url, mdm, challenge, cn string
	cnSuffix                bool
	fingerprint             string
	conc, n, keySize        int
	warmup                  int
	dur                     time.Duration
	pid                     int
	latencies               string // -latencies: the file each enrollment is written to
	prebuild, skipDecrypt   bool
	verify                  bool
	device                  string
	// runID is this run's random prefix of the transactionIDs, in hex: a gateway
	// keeps a transactionID's record (24 hours in scepkit) and refuses it to another
	// requester, so IDs that repeated from run to run refused a second run entirely.
	runID string
}

func main() {
	c := &config{}
	flag.StringVar(&c.url, "url", "", "SCEP endpoint `URL` (loopback only)")
	flag.StringVar(&c.mdm, "mdm", "", "scepkit MDM profile endpoint `URL` giving a fresh challenge per enrollment")
	flag.StringVar(&c.challenge, "challenge", "", "static challenge password (instead of -mdm)")
	flag.StringVar(&c.fingerprint, "ca-fingerprint", "", "SHA-256 of the CA certificate, `hex`: pins the CA (without it the CA is not checked)")
	flag.StringVar(&c.cn, "cn", "scepload", "subject CN with -challenge")
	flag.BoolVar(&c.cnSuffix, "cn-suffix", false, "with -challenge, append -DEVICE-ENROLLMENT to -cn so that every request has its own CN (for servers that name stored certificates by CN, such as micromdm's scepserver)")
	flag.StringVar(&c.device, "device", "", "with -mdm, enroll every time for this one device `ID` (default: a new device per enrollment, which the MDM registers)")
	flag.IntVar(&c.conc, "c", 8, "concurrent devices")
	flag.IntVar(&c.n, "n", 200, "enrollments measured (after -warmup)")
	flag.IntVar(&c.warmup, "warmup", 0, "send this many enrollments first, then measure the -n that follow (the server's CPU and RSS growth then leave out its warm-up)")
	flag.DurationVar(&c.dur, "d", time.Minute, "stop the enrollments (warm-up and measured) after this long at the latest (at most 10m); building requests with -prebuild comes before and is not counted")
	flag.StringVar(&c.latencies, "latencies", "", "write each measured enrollment to `FILE`, one line each: when it was sent (ms since the clock started), its latency (ms), ok or its failure; to see when the slow ones came")
	flag.IntVar(&c.pid, "pid", 0, "server process id, to report its CPU time per enrollment")
	flag.IntVar(&c.keySize, "keysize", 2048, "device RSA key size")
	flag.BoolVar(&c.prebuild, "prebuild", false, "build every request (challenge, CSR, signature) before the clock starts, so the generator spends little CPU while measuring")
	flag.BoolVar(&c.skipDecrypt, "skip-decrypt", false, "check each SUCCESS CertRep's signature and nonce but do not decrypt the certificate (saves the generator one RSA decryption per enrollment)")
	flag.BoolVar(&c.verify, "verify", true, "verify each CertRep's signature; -verify=false reads status, failInfo and nonce from the reply without checking its signature (and does not decrypt), so that on a machine where the generator shares the server's cores it takes less of them; for measuring a server you trust only")
	flag.Parse()
	if err := run(c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "scepload:", err)
		os.Exit(1)
	}
}

// loopback refuses any target that is not on this machine's loopback interface.
func loopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s: only loopback targets (127.0.0.0/8, ::1, localhost) are allowed", raw)
	}
	return nil
}

type result struct {
	at      time.Time // when the enrollment was sent
	latency time.Duration
	fail    string // "" for success
}

func run(c *config, out io.Writer) error {
	if c.url == "" || (c.mdm == "") == (c.challenge == "") {
		return errors.New("need -url and one of -mdm or -challenge")
	}
	for _, u := range []string{c.url, c.mdm} {
		if u != "" {
			if err := loopback(u); err != nil {
				return err
			}
		}
	}
	if c.conc < 1 || c.n < 1 || c.warmup < 0 || c.dur <= 0 || c.dur > 10*time.Minute {
		return errors.New("-c and -n must be positive, -warmup not negative, -d in (0, 10m]")
	}
	var err error
	if c.runID, err = newRunID(); err != nil {
		return err
	}
	// Getting ready (the CA's certificates, and with -prebuild every request) has a
	// bound of its own; -d bounds the enrollments, from after it.
	setup, cancelSetup := context.WithTimeout(context.Background(), setupLimit)
	defer cancelSetup()
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: c.conc}}
	client := &scep.Client{URL: c.url, HTTPClient: hc}
	if c.fingerprint == "" {
		fmt.Fprintln(os.Stderr, "scepload: no -ca-fingerprint: trusting whatever CA the loopback server presents")
		client.InsecureSkipCAVerify = true
	} else {
		fp, err := hex.DecodeString(strings.ReplaceAll(c.fingerprint, ":", ""))
		if err != nil {
			return fmt.Errorf("-ca-fingerprint: %v", err)
		}
		client.CAFingerprint = fp
	}
	certs, err := client.GetCACert(setup)
	if err != nil {
		return fmt.Errorf("GetCACert: %w", err)
	}
	recipient := pickRecipient(certs)
	devs := make([]*device, c.conc)
	for i := range devs {
		if devs[i], err = newDevice(i, c); err != nil {
			return err
		}
	}
	total := c.warmup + c.n
	var pre []*prepared
	if c.prebuild {
		caps, err := client.GetCACaps(setup)
		if err != nil {
			return fmt.Errorf("GetCACaps: %w", err)
		}
		pre = make([]*prepared, total)
		var bw sync.WaitGroup
		for w, d := range devs {
			bw.Add(1)
			go func(w int, d *device) {
				defer bw.Done()
				for i := w; i < total; i += len(devs) {
					pre[i] = d.build(setup, hc, c, caps, recipient, i)
				}
			}(w, d)
		}
		bw.Wait()
		if err := setup.Err(); err != nil {
			return fmt.Errorf("building the requests took over %v: %w", setupLimit, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.dur)
	defer cancel()
	// drive sends enrollments lo to hi-1 from the devices at once.
	drive := func(lo, hi int) chan result {
		jobs := make(chan int)
		results := make(chan result, hi-lo)
		var wg sync.WaitGroup
		for _, d := range devs {
			wg.Add(1)
			go func(d *device) {
				defer wg.Done()
				for i := range jobs {
					var p *prepared
					if pre != nil {
						p = pre[i]
					}
					t0 := time.Now()
					fail := d.enroll(ctx, hc, client, c, recipient, certs, i, p)
					results <- result{t0, time.Since(t0), fail}
				}
			}(d)
		}
	feed:
		for i := lo; i < hi; i++ {
			select {
			case jobs <- i:
			case <-ctx.Done():
				break feed
			}
		}
		close(jobs)
		wg.Wait()
		close(results)
		return results
	}
	if c.warmup > 0 {
		failed := 0
		for r := range drive(0, c.warmup) {
			if r.fail != "" {
				failed++
			}
		}
		fmt.Fprintf(out, "scepload: warm-up of %d enrollments done (%d failed)\n", c.warmup, failed)
	}
	fmt.Fprintf(out, "scepload: %d devices, %d enrollments, target %s, transactionIDs %s\n", c.conc, c.n, c.url,
		transactionID(c.runID, 0, 0))
	cpu0, _ := cpuTime(c.pid)
	self0, _ := cpuTime(os.Getpid())
	rss0, _ := rss(c.pid)
	start := time.Now()
	results := drive(c.warmup, total)
	elapsed := time.Since(start)
	cpu1, cpuErr := cpuTime(c.pid)
	self1, selfErr := cpuTime(os.Getpid())
	rss1, rssErr := rss(c.pid)
	n := len(results)
	if c.latencies != "" {
		collected := make(chan result, cap(results))
		var lines []result
		for r := range results {
			lines = append(lines, r)
			collected <- r
		}
		close(collected)
		results = collected
		if err := writeLatencies(c.latencies, start, lines); err != nil {
			return err
		}
	}
	report(out, results, elapsed, c.pid, cpu1-cpu0, cpuErr)
	if rssErr == nil && n > 0 {
		mb := func(b int64) float64 { return float64(b) / (1 << 20) }
		fmt.Fprintf(out, "server RSS   anonymous %.1f MB -> %.1f MB, %+.0f bytes per enrollment; "+
			"file-backed %.1f MB -> %.1f MB, %+.0f bytes per enrollment (pid %d)\n",
			mb(rss0.anon), mb(rss1.anon), float64(rss1.anon-rss0.anon)/float64(n),
			mb(rss0.file), mb(rss1.file), float64(rss1.file-rss0.file)/float64(n), c.pid)
	}
	if selfErr == nil && c.n > 0 {
		fmt.Fprintf(out, "generator    %v CPU in all, %.2f ms per request sent (this process)\n", self1-self0,
			float64((self1-self0).Microseconds())/1000/float64(c.n))
	}
	return nil
}

// runIDBytes is the number of random bytes of a run's prefix: 8 hex digits, so that
// two runs share it with a chance of one in 4 billion.
const runIDBytes = 4

// newRunID returns a new random run prefix, hex from crypto/rand.
func newRunID() (string, error) {
	b := make([]byte, runIDBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("run ID: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// transactionID names enrollment i of device dev in the run whose prefix is run:
// load-RUN-DEV-I, printable and far below the 256 bytes a scep parser accepts.
func transactionID(run string, dev, i int) string {
	return fmt.Sprintf("load-%s-%d-%d", run, dev, i)
}

// pickRecipient chooses the RA encryption certificate (or the CA).
func pickRecipient(certs []*x509.Certificate) *x509.Certificate {
	for _, c := range certs {
		if !c.IsCA && c.KeyUsage&x509.KeyUsageKeyEncipherment != 0 {
			return c
		}
	}
	for _, c := range certs {
		if !c.IsCA {
			return c
		}
	}
	return certs[0]
}

type device struct {
	id   int
	key  *rsa.PrivateKey
	self *x509.Certificate
	csr  map[string][]byte // subject -> CSR without challenge
}

func newDevice(i int, c *config) (*device, error) {
	key, err := rsa.GenerateKey(rand.Reader, c.keySize)
	if err != nil {
		return nil, err
	}
	self, err := scep.SelfSigned(key, pkix.Name{CommonName: fmt.Sprintf("scepload device %d", i)}, nil)
	if err != nil {
		return nil, err
	}
	return &device{id: i, key: key, self: self, csr: map[string][]byte{}}, nil
}

// baseCSR returns (and keeps) the device's CSR for a subject, without challenge.
func (d *device) baseCSR(cn string) ([]byte, error) {
	if b, ok := d.csr[cn]; ok {
		return b, nil
	}
	b, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, d.key)
	if err == nil {
		d.csr[cn] = b
	}
	return b, err
}

// prepared is a request built ahead of sending.
type prepared struct {
	dev        *device // whose key signed it, and will read the reply
	msg, nonce []byte
	fail       string
}

// enroll runs one enrollment (GetCACaps, then the PKCSReq, built now unless pre is
// given) and returns "" or the failure's name.
func (d *device) enroll(ctx context.Context, hc *http.Client, client *scep.Client, c *config,
	recipient *x509.Certificate, certs []*x509.Certificate, i int, pre *prepared) string {
	caps, err := client.GetCACaps(ctx)
	if err != nil {
		return "GetCACaps: " + short(err)
	}
	if pre == nil {
		pre = d.build(ctx, hc, c, caps, recipient, i)
	}
	if pre.fail != "" {
		return pre.fail
	}
	return pre.dev.send(ctx, hc, c, certs, pre.msg, pre.nonce)
}

// build makes enrollment i's PKCSReq: a fresh challenge (from the MDM) or the static
// one, in the device's CSR, signed with the device's key.
func (d *device) build(ctx context.Context, hc *http.Client, c *config, caps scep.Caps,
	recipient *x509.Certificate, i int) *prepared {
	ch, cn := c.challenge, c.cn
	if c.mdm != "" {
		var err error
		if ch, cn, err = fetchChallenge(ctx, hc, c.mdm, c.device, d.id, i); err != nil {
			return &prepared{fail: "mdm: " + short(err)}
		}
	}
	if c.mdm == "" && c.cnSuffix {
		cn = fmt.Sprintf("%s-%d-%d", cn, d.id, i)
	}
	base, err := d.baseCSR(cn)
	if err != nil {
		return &prepared{fail: "csr: " + short(err)}
	}
	csr, err := scep.AddChallengePassword(base, ch, d.key, nil)
	if err != nil {
		return &prepared{fail: "csr: " + short(err)}
	}
	digest := crypto.SHA256
	if !caps.Has(scep.CapSHA256) && !caps.Has(scep.CapSCEPStandard) && caps.Has(scep.CapSHA1) {
		digest = crypto.SHA1
	}
	msg, nonce, err := scep.NewRequest(scep.RequestOptions{Type: scep.PKCSReq, TransactionID: transactionID(c.runID, d.id, i),
		Payload: csr, Recipient: recipient, Cipher: caps.Cipher(), Digest: digest, SignerCert: d.self, Signer: d.key})
	if err != nil {
		return &prepared{fail: "build: " + short(err)}
	}
	return &prepared{dev: d, msg: msg, nonce: nonce}
}

// send posts one PKCSReq and checks the CertRep: signed by the gateway, our nonce,
// SUCCESS, and (unless -skip-decrypt) an issued certificate in it.
func (d *device) send(ctx context.Context, hc *http.Client, c *config, certs []*x509.Certificate, msg, nonce []byte) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+"?operation=PKIOperation", bytes.NewReader(msg))
	if err != nil {
		return "http: " + short(err)
	}
	req.Header.Set("Content-Type", "application/x-pki-message")
	resp, err := hc.Do(req)
	if err != nil {
		return "http: " + short(err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return "HTTP " + strconv.Itoa(resp.StatusCode)
	}
	if !c.verify {
		if p, err := peekCertRep(body); err == nil {
			return outcome(p.status, p.failInfo, p.nonce, nonce)
		}
	}
	rep, err := scep.ParsePKIMessage(body, scep.ParseOptions{AllowLegacy: true, Certificates: certs})
	if err != nil {
		return "reply: " + short(err)
	}
	if o := outcome(rep.Status, rep.FailInfo, rep.RecipientNonce, nonce); o != "" || c.skipDecrypt || !c.verify {
		return o
	}
	if err := rep.Decrypt(scep.Recipient{Certificate: d.self, Key: d.key}); err != nil || len(rep.Issued) == 0 {
		return "reply: undecryptable"
	}
	return ""
}

// outcome names a CertRep's result: "" for SUCCESS to our nonce.
func outcome(status scep.PKIStatus, info scep.FailInfo, got, sent []byte) string {
	if !bytes.Equal(got, sent) {
		return "reply: recipientNonce mismatch"
	}
	switch status {
	case scep.Success:
		return ""
	case scep.Failure:
		return "FAILURE " + info.String()
	case scep.Pending:
		return "PENDING"
	}
	return "reply: status " + status.String()
}

// setupLimit bounds what scepload does before the clock starts: fetching the CA's
// certificates and, with -prebuild, building every request.
const setupLimit = 10 * time.Minute

// short shortens an error for the tally: a *url.Error loses its method and URL (the
// same for every request) and keeps its cause, and what is left is cut at 120 bytes.
func short(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	s := err.Error()
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

// fetchChallenge asks the MDM for a profile: its challenge and subject CN. The device
// is the one given, or a new one for enrollment i of device dev.
func fetchChallenge(ctx context.Context, hc *http.Client, mdm, device string, dev, i int) (string, string, error) {
	if device == "" {
		device = fmt.Sprintf("load-%d-%d", dev, i)
	}
	u := fmt.Sprintf("%s?user=alice@example.com&device=%s", mdm, url.QueryEscape(device))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	var p struct {
		Challenge string `json:"challenge"`
		Subject   string `json:"subject"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&p); err != nil {
		return "", "", err
	}
	cn, ok := strings.CutPrefix(p.Subject, "CN=")
	if !ok || strings.Contains(cn, ",") {
		return "", "", fmt.Errorf("subject %q is not a single CN", p.Subject)
	}
	return p.Challenge, cn, nil
}

// memory is a process's resident memory, from /proc/PID/status: anonymous (the heap
// and stacks) and file-backed (mapped files, such as an embedded database's).
type memory struct{ anon, file int64 }

func rss(pid int) (memory, error) {
	var m memory
	if pid <= 0 {
		return m, errors.New("no -pid")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, err
	}
	found := 0
	for _, line := range strings.Split(string(b), "\n") {
		for key, dst := range map[string]*int64{"RssAnon:": &m.anon, "RssFile:": &m.file} {
			if v, ok := strings.CutPrefix(line, key); ok {
				if f := strings.Fields(v); len(f) == 2 && f[1] == "kB" {
					kb, err := strconv.ParseInt(f[0], 10, 64)
					if err != nil {
						return m, err
					}
					*dst = kb << 10
					found++
				}
			}
		}
	}
	if found != 2 {
		return m, errors.New("no RssAnon/RssFile in /proc status")
	}
	return m, nil
}

// cpuTime returns a process's user+system CPU time from /proc/PID/stat.
func cpuTime(pid int) (time.Duration, error) {
	if pid <= 0 {
		return 0, errors.New("no -pid")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("bad /proc stat")
	}
	const clockTicks = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// writeLatencies writes rs to the file path, one line each, in the order they were
// sent: the time since start and the latency, in milliseconds, and "ok" or the failure.
func writeLatencies(path string, start time.Time, rs []result) error {
	sort.Slice(rs, func(i, j int) bool { return rs[i].at.Before(rs[j].at) })
	var b strings.Builder
	for _, r := range rs {
		outcome := "ok"
		if r.fail != "" {
			outcome = strconv.Quote(r.fail)
		}
		fmt.Fprintf(&b, "%.3f %.3f %s\n", float64(r.at.Sub(start).Microseconds())/1000, float64(r.latency.Microseconds())/1000, outcome)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func report(out io.Writer, results <-chan result, elapsed time.Duration, pid int, cpu time.Duration, cpuErr error) {
	var lat []time.Duration
	fails := map[string]int{}
	for r := range results {
		if r.fail == "" {
			lat = append(lat, r.latency)
		} else {
			fails[r.fail]++
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[int(p*float64(len(lat)-1))]
	}
	fmt.Fprintf(out, "enrollments  %d ok in %v: %.1f/s\n", len(lat), elapsed.Round(time.Millisecond),
		float64(len(lat))/elapsed.Seconds())
	fmt.Fprintf(out, "latency      p50 %v  p90 %v  p99 %v\n", pct(.5).Round(time.Microsecond*100),
		pct(.9).Round(time.Microsecond*100), pct(.99).Round(time.Microsecond*100))
	if len(fails) == 0 {
		fmt.Fprintln(out, "errors       none")
	}
	keys := make([]string, 0, len(fails))
	for k := range fails {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(out, "errors       %d × %s\n", fails[k], k)
	}
	if cpuErr == nil && len(lat) > 0 {
		fmt.Fprintf(out, "server CPU   %v in all, %.2f ms per enrollment (pid %d)\n", cpu,
			float64(cpu.Microseconds())/1000/float64(len(lat)), pid)
	}
}
