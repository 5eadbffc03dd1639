package bench_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/store/sqlite"
)

const (
	// wrkDuration is how long each wrk run lasts.
	wrkDuration = 10 * time.Second

	// wrkThreads is the number of wrk threads, one per core here.
	wrkThreads = 2
)

// BenchmarkListLatencyProcess measures list latency with the server in a
// process of its own, as in production. batchd serve runs on a SQLite data
// directory holding listBatches batches. wrk (Debian's package), a separate
// process written in C, drives listClients connections at it for
// wrkDuration, each sending its next call as soon as the reply to the last
// one is read. Calls are those of BenchmarkListLatency: limit 20, a third
// each with no cursor, after_id and before_id at a random stored batch.
//
// Baseline, in the same op: the same wrk run on GET /healthz first.
//
// Metrics: p50_ms, p99_ms and calls/s of the list, the same for healthz,
// and srv_cpu_us/call, the server process's CPU time per call. The batches
// are created once per process through the store. The server's engine then
// runs their requests; the measurement starts after the last one ended.
func BenchmarkListLatencyProcess(b *testing.B) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Skip("wrk is not installed (Debian: apt-get install wrk); it drives the load")
	}
	srv := startListServer(b)

	var list, health wrkResult
	for range b.N {
		health = runWrk(b, wrk, srv, srv.baseURL+"/healthz")
		list = runWrk(b, wrk, srv, srv.baseURL+"/v1/messages/batches")
	}

	b.ReportMetric(list.p50ms, "p50_ms")
	b.ReportMetric(list.p99ms, "p99_ms")
	b.ReportMetric(list.callsPerSecond, "calls/s")
	b.ReportMetric(list.serverCPUus, "srv_cpu_us/call")
	b.ReportMetric(health.p50ms, "healthz_p50_ms")
	b.ReportMetric(health.p99ms, "healthz_p99_ms")
	b.ReportMetric(health.callsPerSecond, "healthz_calls/s")
	b.ReportMetric(health.serverCPUus, "healthz_srv_cpu_us/call")
	b.ReportMetric(list.p99ms/health.p99ms, "p99/healthz")
}

// listServer is a batchd serve process over the list fixture.
type listServer struct {
	baseURL    string
	pid        int
	idsPath    string
	scriptPath string
}

var (
	listServerMu     sync.Mutex
	listServerShared *listServer
)

// startListServer builds batchd, fills a data directory with listBatches
// batches, starts batchd serve on it and waits until every batch ended. The
// server is started once per process and stopped when the process ends.
func startListServer(b *testing.B) *listServer {
	b.Helper()
	listServerMu.Lock()
	defer listServerMu.Unlock()
	if listServerShared != nil {
		return listServerShared
	}

	dir := filepath.Join(sharedTempDir(b), "list-process")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	binary := filepath.Join(dir, "batchd")
	build := exec.Command("go", "build", "-o", binary, "github.com/batchd/batchd/cmd/batchd")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build batchd: %v\n%s", err, out)
	}

	dataDir := filepath.Join(dir, "data")
	idsPath := filepath.Join(dir, "ids.txt")
	fillDataDir(b, dataDir, idsPath)

	cmd := exec.Command(binary, "serve", "--addr", "127.0.0.1:0", "--data-dir", dataDir,
		"--api-key", benchKey+"="+benchWorkspace)
	cmd.Env = append(os.Environ(), "BATCHD_API_KEYS=", "BATCHD_DATABASE_URL=")
	scriptPath := filepath.Join(dir, "list.lua")
	if err := os.WriteFile(scriptPath, []byte(wrkScript), 0o600); err != nil {
		b.Fatal(err)
	}

	srv := &listServer{idsPath: idsPath, scriptPath: scriptPath}
	srv.baseURL = startProcess(b, cmd, filepath.Join(dir, "batchd.log"))
	srv.pid = cmd.Process.Pid

	waitAllEnded(b, srv.baseURL)
	listServerShared = srv
	return srv
}

// fillDataDir creates the list fixture in a SQLite store in dataDir and
// writes the batch ids to idsPath, one per line.
func fillDataDir(b *testing.B, dataDir, idsPath string) {
	b.Helper()
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		b.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(dataDir, "batchd.db"),
		sqlite.Options{})
	if err != nil {
		b.Fatalf("open store: %v", err)
	}
	defer st.Close()

	start := time.Now()
	ids, err := createListBatches(st)
	if err != nil {
		b.Fatalf("create batches: %v", err)
	}
	b.Logf("created %d batches in %s", ids.len(), time.Since(start).Round(time.Millisecond))

	var lines strings.Builder
	for i := range ids.len() {
		lines.WriteString(ids.at(i))
		lines.WriteByte('\n')
	}
	if err := os.WriteFile(idsPath, []byte(lines.String()), 0o600); err != nil {
		b.Fatal(err)
	}
}

// startProcess starts cmd, logging its stderr to logPath, and returns the
// base URL that batchd serve prints. The process is killed when the test
// process ends.
func startProcess(b *testing.B, cmd *exec.Cmd, logPath string) string {
	b.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start batchd: %v", err)
	}
	atProcessEnd(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logFile.Close()
	})

	found := make(chan string, 1)
	go func() {
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			if url, ok := strings.CutPrefix(scanner.Text(), "ANTHROPIC_BASE_URL="); ok {
				found <- url
			}
		}
	}()
	select {
	case url := <-found:
		return url
	case <-time.After(30 * time.Second):
		b.Fatalf("batchd printed no ANTHROPIC_BASE_URL within 30s; see %s", logPath)
		return ""
	}
}

// waitAllEnded waits until the newest batch has ended. The engine runs
// batches oldest first, so by then every batch has.
func waitAllEnded(b *testing.B, baseURL string) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		status, err := newestStatus(baseURL)
		if err != nil {
			b.Fatalf("list: %v", err)
		}
		if status == "ended" {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	b.Fatal("the batches did not end within 5 minutes")
}

func newestStatus(baseURL string) (string, error) {
	req, err := newAPIRequest(http.MethodGet, baseURL+"/v1/messages/batches?limit=1", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()

	var page struct {
		Data []struct {
			Status string `json:"processing_status"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		return "", err
	}
	if len(page.Data) == 0 {
		return "", fmt.Errorf("status %d and no batches", resp.StatusCode)
	}
	return page.Data[0].Status, nil
}

// wrkResult is what one wrk run measured.
type wrkResult struct {
	p50ms, p99ms   float64
	callsPerSecond float64
	serverCPUus    float64
}

// wrkScript makes the list calls and prints the figures on one line. wrk
// gives it the ids file, the API key and the mode ("list" or "plain") as
// arguments.
const wrkScript = `
local ids, mode = {}, "plain"
function init(args)
  for line in io.lines(args[1]) do ids[#ids + 1] = line end
  wrk.headers["x-api-key"] = args[2]
  wrk.headers["anthropic-version"] = "2023-06-01"
  mode = args[3]
  math.randomseed(math.floor(os.clock() * 1e6) + #ids)
end
function request()
  if mode ~= "list" then return wrk.format("GET") end
  local path, pick = wrk.path .. "?limit=20", math.random(3)
  if pick == 2 then path = path .. "&after_id=" .. ids[math.random(#ids)] end
  if pick == 3 then path = path .. "&before_id=" .. ids[math.random(#ids)] end
  return wrk.format("GET", path)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("wrk-result %d %d %d %d %d\n", summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
`

// runWrk runs wrk against url with listClients connections for wrkDuration
// and returns its figures and the server's CPU time per call.
func runWrk(b *testing.B, wrk string, srv *listServer, url string) wrkResult {
	b.Helper()
	mode := "plain"
	if strings.Contains(url, "/v1/messages/batches") {
		mode = "list"
	}
	cpu := processCPU(b, srv.pid)
	cmd := exec.Command(wrk, "-t", strconv.Itoa(wrkThreads), "-c", strconv.Itoa(listClients),
		"-d", wrkDuration.String(), "-s", srv.scriptPath, url, "--", srv.idsPath, benchKey, mode)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("wrk: %v\n%s", err, out)
	}
	serverCPU := processCPU(b, srv.pid) - cpu

	return parseWrk(b, string(out), serverCPU)
}

// parseWrk reads the line that wrkScript prints.
func parseWrk(b *testing.B, out string, serverCPU time.Duration) wrkResult {
	b.Helper()
	for line := range strings.Lines(out) {
		fields, ok := strings.CutPrefix(strings.TrimSpace(line), "wrk-result ")
		if !ok {
			continue
		}
		var requests, durationUS, p50, p99, errors int64
		_, err := fmt.Sscan(fields, &requests, &durationUS, &p50, &p99, &errors)
		if err != nil || requests == 0 {
			b.Fatalf("wrk result %q: %v", line, err)
		}
		if errors > 0 {
			b.Fatalf("wrk saw %d errors in %d calls:\n%s", errors, requests, out)
		}
		return wrkResult{
			p50ms:          float64(p50) / 1000,
			p99ms:          float64(p99) / 1000,
			callsPerSecond: float64(requests) / (float64(durationUS) / 1e6),
			serverCPUus:    micros(serverCPU) / float64(requests),
		}
	}
	b.Fatalf("no result line in wrk's output:\n%s", out)
	return wrkResult{}
}

// processCPU returns the user and system CPU time of process pid so far,
// from /proc, which counts it in clock ticks of clockTick.
func processCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatalf("read CPU time of batchd: %v", err)
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	_, rest, _ := strings.Cut(string(data), ") ")
	fields := strings.Fields(rest)
	// Fields 14 and 15 of the file are utime and stime; rest starts at 3.
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("parse %s: %v %v", data, err1, err2)
	}
	return time.Duration(utime+stime) * clockTick(b)
}

// clockTick returns the length of the kernel's clock tick for user programs,
// as getconf CLK_TCK reports it (100 per second on most Linux systems).
func clockTick(b *testing.B) time.Duration {
	b.Helper()
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err != nil {
		b.Fatalf("getconf CLK_TCK: %v", err)
	}
	perSecond, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || perSecond <= 0 {
		b.Fatalf("getconf CLK_TCK printed %q", out)
	}
	return time.Second / time.Duration(perSecond)
}
