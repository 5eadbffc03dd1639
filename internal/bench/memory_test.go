package bench_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// makeRealBatch is the script that writes the man-page batch, relative to
// this package's directory: shared/data beside the repository.
var makeRealBatch = filepath.Join("..", "..", "..", "shared", "data", "make-real-batch")

const (
	// serveStartTimeout bounds the wait for a child server to respond.
	serveStartTimeout = 30 * time.Second

	// serveStopTimeout bounds the wait for a child server to exit after
	// SIGTERM before it is killed.
	serveStopTimeout = time.Minute

	// idleSettle is how long an idle server runs before its memory is read.
	idleSettle = time.Second

	bytesPerMB = 1 << 20
)

var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error

	manPagesOnce sync.Once
	manPagesPath string
	manPagesErr  error
	manPagesSkip string
	manPagesNote string // the script's summary line, such as "17843 requests from manpages"
)

// BenchmarkCreateMemory measures the peak resident memory (VmHWM) of a
// `batchd serve` child process that accepts the man-page batch, about 18,000
// requests and 90 MB, in one POST. Each run starts a new server on an empty
// store, reads VmHWM once the idle server has settled (the baseline), posts
// the body and reads VmHWM again when the create has returned. It also
// reports the create time and, for information, VmHWM once the batch has
// ended. The body is generated once per process by make-real-batch; the
// benchmark skips when the script is missing.
func BenchmarkCreateMemory(b *testing.B) {
	for _, bc := range []struct {
		name string
		args func(b *testing.B) []string
	}{
		{name: "sqlite", args: func(*testing.B) []string { return nil }},
		{name: "postgres", args: func(b *testing.B) []string {
			schemaURL, drop := newSchema(b)
			b.Cleanup(drop)
			return []string{"--database-url", schemaURL}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			benchCreateMemory(b, bc.args)
		})
	}
}

func benchCreateMemory(b *testing.B, args func(b *testing.B) []string) {
	b.StopTimer()
	body := manPagesBody(b)
	bin := batchdBinary(b)
	info, err := os.Stat(body)
	if err != nil {
		b.Fatalf("stat batch body: %v", err)
	}

	var idle, peak, endedPeak int64
	var createTime time.Duration
	for range b.N {
		run := runCreateMemory(b, bin, body, info.Size(), args(b))
		idle = max(idle, run.idleHWM)
		peak = max(peak, run.createHWM)
		endedPeak = max(endedPeak, run.endedHWM)
		createTime += run.createTime
	}

	b.ReportMetric(float64(info.Size())/bytesPerMB, "body_MB")
	b.ReportMetric(float64(idle)/bytesPerMB, "idle_MB")
	b.ReportMetric(float64(peak)/bytesPerMB, "peak_MB")
	b.ReportMetric(float64(peak)/float64(idle), "peak/idle")
	b.ReportMetric(createTime.Seconds()/float64(b.N), "create_s")
	b.ReportMetric(float64(endedPeak)/bytesPerMB, "ended_peak_MB")
}

// memoryRun is what one run of BenchmarkCreateMemory measured. Memory is in
// bytes.
type memoryRun struct {
	idleHWM    int64
	createHWM  int64
	endedHWM   int64
	createTime time.Duration
}

func runCreateMemory(b *testing.B, bin, body string, size int64, args []string) memoryRun {
	child := startServe(b, bin, args)
	defer child.stop(b)

	time.Sleep(idleSettle)
	var run memoryRun
	run.idleHWM = child.peakRSS(b)

	file, err := os.Open(body)
	if err != nil {
		b.Fatalf("open batch body: %v", err)
	}
	defer file.Close()
	req, err := newAPIRequest(http.MethodPost, child.url+"/v1/messages/batches", file)
	if err != nil {
		b.Fatalf("new request: %v", err)
	}
	req.ContentLength = size
	client := &http.Client{Timeout: endTimeout}

	b.StartTimer()
	start := time.Now()
	created, err := doBatch(client, req)
	run.createTime = time.Since(start)
	b.StopTimer()
	if err != nil {
		b.Fatalf("create: %v\nserver log:\n%s", err, child.log())
	}
	run.createHWM = child.peakRSS(b)

	if _, err := waitEnded(client, child.url, created.ID, 200*time.Millisecond,
		endTimeout); err != nil {
		b.Fatalf("wait for the batch to end: %v", err)
	}
	run.endedHWM = child.peakRSS(b)
	return run
}

// serveProcess is a running `batchd serve` child process.
type serveProcess struct {
	cmd    *exec.Cmd
	url    string
	stderr *lockedBuffer
	done   chan error
}

// startServe starts `batchd serve` on a free loopback port with a new data
// directory and the benchmark key, and waits until GET /healthz returns 200.
func startServe(b *testing.B, bin string, extraArgs []string) *serveProcess {
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", b.TempDir(),
		"--api-key", benchKey + "=" + benchWorkspace}, extraArgs...)
	cmd := exec.Command(bin, args...)
	cmd.Env = withoutBatchdEnv(os.Environ())
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatalf("stdout pipe: %v", err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start batchd serve: %v", err)
	}

	p := &serveProcess{cmd: cmd, stderr: stderr, done: make(chan error, 1)}
	urls := make(chan string, 1)
	go func() {
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			if u, ok := strings.CutPrefix(scanner.Text(), "ANTHROPIC_BASE_URL="); ok {
				urls <- u
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		p.done <- cmd.Wait()
	}()

	select {
	case p.url = <-urls:
	case err := <-p.done:
		b.Fatalf("batchd serve exited before it listened: %v\n%s", err, stderr.String())
	case <-time.After(serveStartTimeout):
		p.kill()
		b.Fatalf("batchd serve printed no address within %s\n%s", serveStartTimeout,
			stderr.String())
	}

	if err := waitHealthy(p.url, serveStartTimeout); err != nil {
		p.kill()
		b.Fatalf("%v\n%s", err, stderr.String())
	}
	return p
}

// withoutBatchdEnv drops BATCHD_* variables, which would change the child's
// store and keys.
func withoutBatchdEnv(env []string) []string {
	var filtered []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "BATCHD_") {
			filtered = append(filtered, kv)
		}
	}
	return filtered
}

func waitHealthy(baseURL string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(baseURL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("batchd serve at %s not healthy within %s: %v", baseURL,
				timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// peakRSS returns the process's peak resident set size, VmHWM, in bytes.
func (p *serveProcess) peakRSS(b *testing.B) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		b.Fatalf("read process status: %v", err)
	}
	kB, err := statusKB(data, "VmHWM")
	if err != nil {
		b.Fatalf("process status: %v", err)
	}
	return kB * 1024
}

// statusKB returns the value in kB of field in the text of /proc/PID/status,
// where such lines read "VmHWM:	  123456 kB".
func statusKB(status []byte, field string) (int64, error) {
	for line := range strings.Lines(string(status)) {
		value, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		number, ok := strings.CutSuffix(strings.TrimSpace(value), " kB")
		if !ok {
			return 0, fmt.Errorf("field %s has no kB unit: %q", field, strings.TrimSpace(line))
		}
		n, err := strconv.ParseInt(strings.TrimSpace(number), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("field %s: %w", field, err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("field %s not found", field)
}

func (p *serveProcess) log() string {
	return p.stderr.String()
}

// stop sends SIGTERM and waits for the process to exit, killing it after
// serveStopTimeout.
func (p *serveProcess) stop(b *testing.B) {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		b.Logf("signal batchd serve: %v", err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			b.Logf("batchd serve exited: %v\n%s", err, p.log())
		}
	case <-time.After(serveStopTimeout):
		b.Logf("batchd serve did not exit within %s after SIGTERM; killing it",
			serveStopTimeout)
		p.kill()
	}
}

func (p *serveProcess) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// lockedBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// batchdBinary builds cmd/batchd once per process and returns its path.
func batchdBinary(b *testing.B) string {
	binaryOnce.Do(func() {
		binaryPath = filepath.Join(sharedTempDir(b), "batchd")
		out, err := exec.Command("go", "build", "-o", binaryPath,
			"github.com/batchd/batchd/cmd/batchd").CombinedOutput()
		if err != nil {
			binaryErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if binaryErr != nil {
		b.Fatal(binaryErr)
	}
	return binaryPath
}

// manPagesBody writes the man-page create body once per process and returns
// the file's path. It skips when the script or python3 is missing.
func manPagesBody(b *testing.B) string {
	manPagesOnce.Do(func() {
		if _, err := os.Stat(makeRealBatch); errors.Is(err, os.ErrNotExist) {
			manPagesSkip = "make-real-batch not found at " + makeRealBatch
			return
		}
		if _, err := exec.LookPath("python3"); err != nil {
			manPagesSkip = "python3, which make-real-batch needs, is not installed"
			return
		}

		manPagesPath = filepath.Join(sharedTempDir(b), "manpages.json")
		out, err := os.Create(manPagesPath)
		if err != nil {
			manPagesErr = fmt.Errorf("create batch body file: %w", err)
			return
		}
		defer out.Close()
		var stderr bytes.Buffer
		cmd := exec.Command("python3", makeRealBatch, "--source", "manpages")
		cmd.Stdout = out
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			manPagesErr = fmt.Errorf("make-real-batch: %w\n%s", err, stderr.String())
		}
		manPagesNote = strings.TrimSpace(stderr.String())
	})
	if manPagesSkip != "" {
		b.Skip(manPagesSkip)
	}
	if manPagesErr != nil {
		b.Fatal(manPagesErr)
	}
	b.Logf("make-real-batch: %s", manPagesNote)
	return manPagesPath
}
