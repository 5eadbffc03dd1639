package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// realBatchScript returns the path of the script that builds a batch from
// real text on this machine, one request per license file under
// /usr/share/doc: $BATCHD_REAL_BATCH_SCRIPT, or shared/data/make-real-batch
// in the folder beside the repository.
func realBatchScript() string {
	if path := os.Getenv("BATCHD_REAL_BATCH_SCRIPT"); path != "" {
		return path
	}
	return filepath.Join("..", "..", "..", "shared", "data", "make-real-batch")
}

// skipOrFail skips the test, unless BATCHD_REQUIRE_REAL_BATCH is set (as in
// CI), where a missing input is an error.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("BATCHD_REQUIRE_REAL_BATCH") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// TestRealInput sends a batch built from real third-party text, about 700
// requests of which some lines exceed 64 KiB, through create, waits for it
// to end and downloads its results with -o.
func TestRealInput(t *testing.T) {
	t.Parallel()
	makeRealBatch := realBatchScript()
	if _, err := os.Stat(makeRealBatch); err != nil {
		skipOrFail(t, "skipping: %s is not available (%v); set BATCHD_REAL_BATCH_SCRIPT",
			makeRealBatch, err)
	}
	if _, err := exec.LookPath("python3"); err != nil {
		skipOrFail(t, "skipping: python3 is not installed; %s needs it", makeRealBatch)
	}

	dir := t.TempDir()
	input := filepath.Join(dir, "real.jsonl")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "python3", makeRealBatch, "--jsonl")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s --jsonl: %v\n%s", makeRealBatch, err, stderr.String())
	}
	if err := os.WriteFile(input, stdout.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	want := customIDs(t, stdout.Bytes())
	if len(want) == 0 {
		skipOrFail(t, "skipping: %s produced no requests on this machine", makeRealBatch)
	}
	t.Logf("real input: %d requests, %d bytes", len(want), stdout.Len())

	s := startServer(t, serverOptions{})
	r := s.mustRun(t, "create", "--wait", "--poll-interval", "50ms", "--json", input)
	b := decodeBatch(t, r.stdout)
	if b.ProcessingStatus != "ended" {
		t.Fatalf("processing_status = %q, want ended", b.ProcessingStatus)
	}
	c := b.RequestCounts
	if total := c.Succeeded + c.Errored + c.Canceled + c.Expired; total != int64(len(want)) {
		t.Errorf("request_counts = %+v, want %d requests in all", c, len(want))
	}

	out := filepath.Join(dir, "results.jsonl")
	s.mustRun(t, "results", "-o", out, b.ID)
	results, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(results, []byte("\n")) {
		t.Error("the results file does not end with a newline")
	}

	got := customIDs(t, results)
	for id, n := range got {
		if n != 1 {
			t.Errorf("custom_id %q appears %d times in the results, want once", id, n)
		}
		if want[id] == 0 {
			t.Errorf("custom_id %q in the results is not in the input", id)
		}
	}
	for id := range want {
		if got[id] == 0 {
			t.Errorf("custom_id %q of the input has no result", id)
		}
	}
}

// customIDs decodes every line of a JSONL document, failing the test at a
// line that is not a complete JSON object, and counts the custom_ids.
func customIDs(t *testing.T, data []byte) map[string]int {
	t.Helper()
	ids := make(map[string]int)
	br := bufio.NewReader(bytes.NewReader(data))
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadBytes('\n')
		if len(strings.TrimSpace(string(line))) > 0 {
			var v struct {
				CustomID string `json:"custom_id"`
			}
			if err := json.Unmarshal(line, &v); err != nil {
				t.Fatalf("line %d (%d bytes) is not complete JSON: %v", lineNo, len(line), err)
			}
			ids[v.CustomID]++
		}
		if err != nil {
			return ids
		}
	}
}

// TestCreateLargeInput streams a JSONL input of about 90 MB through create.
func TestCreateLargeInput(t *testing.T) {
	t.Parallel()
	if testing.Short() || raceEnabled {
		t.Skip("skipping the 90 MB input in -short mode and under the race detector; " +
			"TestRealInput covers the same code with 18 MB")
	}

	const requests = 300
	text := strings.Repeat("lorem ipsum ", 25_000) // 300,000 bytes
	path := filepath.Join(t.TempDir(), "large.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for i := range requests {
		w.WriteString(`{"custom_id":"big-` + strconv.Itoa(i) + `","params":{"model":"claude-test",` +
			`"max_tokens":16,"messages":[{"role":"user","content":"` + text + `"}]}}` + "\n")
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	s := startServer(t, serverOptions{})
	r := s.mustRun(t, "create", "--json", path)
	if b := decodeBatch(t, r.stdout); b.RequestCounts.Processing != requests {
		t.Errorf("processing = %d, want %d", b.RequestCounts.Processing, requests)
	}
}
