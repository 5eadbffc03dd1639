package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/backend/testmodel"
)

// longTextBytes is the text size of the messages scriptedBackend returns
// for "long-" requests: well over the 64 KiB line limit of bufio.Scanner.
const longTextBytes = 200_000

// scriptedBackend passes requests to the test model, except by custom_id
// prefix: "long-" requests get a message with a text of longTextBytes, and
// "hold-" requests wait until release is closed.
type scriptedBackend struct {
	model   *testmodel.Model
	release chan struct{}
}

func newScriptedBackend() *scriptedBackend {
	return &scriptedBackend{model: testmodel.New(testmodel.Config{}), release: make(chan struct{})}
}

func (b *scriptedBackend) Send(ctx context.Context, req backend.Request) (backend.Response, error) {
	switch {
	case strings.HasPrefix(req.CustomID, "long-"):
		return backend.Response{Message: longMessage(req.CustomID), Limits: backend.NoLimits}, nil
	case strings.HasPrefix(req.CustomID, "hold-"):
		select {
		case <-b.release:
		case <-ctx.Done():
			return backend.Response{}, ctx.Err()
		}
	}
	return b.model.Send(ctx, req)
}

// longText is the text returned for the "long-" request customID. It ends
// with the custom_id so that a cut-off line shows.
func longText(customID string) string {
	return strings.Repeat("0123456789", longTextBytes/10) + " end of " + customID
}

func longMessage(customID string) []byte {
	msg := map[string]any{
		"id":            "msg_" + strings.ReplaceAll(customID, "-", ""),
		"type":          "message",
		"role":          "assistant",
		"model":         "claude-test",
		"content":       []any{map[string]any{"type": "text", "text": longText(customID)}},
		"stop_reason":   "end_turn",
		"stop_sequence": nil,
		"usage":         map[string]any{"input_tokens": 5, "output_tokens": longTextBytes / 4},
	}
	data, err := json.Marshal(msg)
	if err != nil {
		panic(err)
	}
	return data
}

func TestCreateFromJSONL(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{captureCreates: true})

	// Unknown fields and odd spacing inside params must reach the server
	// unchanged; blank lines and CRLF line ends are dropped.
	lines := []string{
		request("a", "first"),
		`{"custom_id": "b", "params": {"model":"claude-test", "max_tokens": 64, "x_unknown": ` +
			`{"z": [1, 2.50, "\u00e9"]}, "messages":[{"role":"user","content":"second"}]}}`,
		request("c", "third"),
	}
	content := lines[0] + "\n\n  " + lines[1] + "  \r\n" + lines[2] // no final newline
	path := writeFile(t, "in.jsonl", content)

	r := s.mustRun(t, "create", path)
	id := strings.TrimSpace(r.stdout)
	if !strings.HasPrefix(id, "msgbatch_") {
		t.Errorf("stdout = %q, want a batch id", r.stdout)
	}
	if !strings.Contains(r.stderr, "3 requests") {
		t.Errorf("stderr = %q, want it to mention 3 requests", r.stderr)
	}

	bodies := s.createBodies()
	if len(bodies) != 1 {
		t.Fatalf("server got %d create requests, want 1", len(bodies))
	}
	want := `{"requests":[` + strings.Join(lines, ",") + `]}`
	if string(bodies[0]) != want {
		t.Errorf("create body =\n%s\nwant\n%s", bodies[0], want)
	}

	b := s.waitEnded(t, id)
	if b.RequestCounts.Succeeded != 3 {
		t.Errorf("succeeded = %d, want 3", b.RequestCounts.Succeeded)
	}
}

func TestCreateFromJSONBody(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{captureCreates: true})

	// A pretty-printed body whose first key is not "requests" still counts
	// as a body; it is sent byte for byte.
	body := "\n  {\n  \"requests\": [\n    " + request("a", "one") + ",\n    " +
		request("b", "two") + "\n  ]\n}\n"
	path := writeFile(t, "body.json", body)

	r := s.mustRun(t, "create", "--json", path)
	b := decodeBatch(t, r.stdout)
	if b.ProcessingStatus != "in_progress" {
		t.Errorf("processing_status = %q, want in_progress", b.ProcessingStatus)
	}
	if b.RequestCounts.Processing != 2 {
		t.Errorf("processing = %d, want 2", b.RequestCounts.Processing)
	}

	bodies := s.createBodies()
	if len(bodies) != 1 || string(bodies[0]) != body {
		t.Errorf("create bodies = %q, want [%q]", bodies, body)
	}
}

func TestCreateFromStdin(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{captureCreates: true})

	input := request("a", "from stdin") + "\n"
	r := runCommand(t, vars{baseURLEnv: s.url, apiKeyEnv: testKey}, input, "create", "-")
	if r.code != 0 {
		t.Fatalf("exit code %d, want 0; stderr %s", r.code, r.stderr)
	}
	want := `{"requests":[` + strings.TrimSpace(input) + `]}`
	if bodies := s.createBodies(); len(bodies) != 1 || string(bodies[0]) != want {
		t.Errorf("create bodies = %q, want [%q]", bodies, want)
	}
}

func TestCreateIdempotencyKey(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	path := writeFile(t, "in.jsonl", request("a", "x")+"\n")

	first := s.mustRun(t, "create", "--idempotency-key", "run-1", path).stdout
	again := s.mustRun(t, "create", "--idempotency-key", "run-1", path).stdout
	other := s.mustRun(t, "create", "--idempotency-key", "run-2", path).stdout
	if again != first {
		t.Errorf("create with the same key printed %q, want the first batch %q", again, first)
	}
	if other == first {
		t.Errorf("create with another key printed the first batch %q", first)
	}
}

func TestCreateWait(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	path := writeFile(t, "in.jsonl", request("a", "x")+"\n"+request("b", "y")+"\n")

	r := s.mustRun(t, "create", "--wait", "--poll-interval", "20ms", "--json", path)
	b := decodeBatch(t, r.stdout)
	if b.ProcessingStatus != "ended" {
		t.Errorf("processing_status = %q, want ended", b.ProcessingStatus)
	}
	if b.RequestCounts.Succeeded != 2 {
		t.Errorf("succeeded = %d, want 2", b.RequestCounts.Succeeded)
	}

	r = s.mustRun(t, "create", "--wait", "--poll-interval", "20ms", path)
	if !strings.Contains(r.stdout, "processing_status") || !strings.Contains(r.stdout, "ended") {
		t.Errorf("stdout = %q, want the fields of an ended batch", r.stdout)
	}
}

func TestCreateRejectsBadInput(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{captureCreates: true})

	tests := []struct {
		name    string
		content string
		want    string // in stderr
	}{
		{"empty", "  \n", "is empty"},
		{"array", `[` + request("a", "x") + `]`, `starts with '['`},
		{"not json", "hello\n", `starts with 'h'`},
		{"byte order mark", "\uFEFF" + request("a", "x"), "byte order mark"},
		{"bad line", request("a", "x") + "\n\n{\"custom_id\": \"b\", \n", "line 3: invalid JSON"},
		{"line not object", request("a", "x") + "\n42\n", "line 2: want a JSON object"},
		{"missing custom_id", request("a", "x") + "\n" + `{"params":{},"x":1}` + "\n",
			"line 2: missing custom_id"},
		{"custom_id number", `{"custom_id":7,"params":{}}`, "custom_id must be a string, got 7"},
		{"missing params", `{"custom_id":"a"}`, "line 1: missing params"},
		{"null params", `{"custom_id":"a","params":null}`, "line 1: missing params"},
		{"params array", `{"custom_id":"a","params":[1]}`, "params must be a JSON object"},
		{"duplicate", request("a", "x") + "\n" + request("b", "y") + "\n" + request("a", "z"),
			`line 3: custom_id "a" is already used by line 1`},
		{"neither form", `{"model":"x"}`, `neither "requests"`},
		{"body duplicate", `{"requests":[` + request("a", "x") + `,` + request("a", "y") + `]}`,
			`requests.1: custom_id "a" is already used by requests.0`},
		{"body syntax", "{\"requests\":[\n" + request("a", "x") + ",\n{\"custom_id\":]}",
			"invalid JSON in the value that starts on line 3"},
		{"body syntax spaced", "{\n\n\"requests\": [\n\n  " + request("a", "x") +
			",\n\n\n  {\"custom_id\": \n \"b\", ]}",
			"invalid JSON in the value that starts on line 8"},
		{"body syntax in key", "{\"requests\":[" + request("a", "x") + "],\n\n x}",
			"invalid JSON in the value that starts on line 3"},
		{"body truncated", `{"requests":[` + request("a", "x"), "the input ends too early"},
		{"body empty", `{"requests":[]}`, "contains no requests"},
		{"body not array", `{"requests":{}}`, `"requests" must be an array`},
		{"body trailing", `{"requests":[` + request("a", "x") + `]} {}`, "unexpected data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "in", tt.content)
			r := s.run(t, "create", path)
			if r.code != 1 {
				t.Errorf("exit code = %d, want 1", r.code)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr = %q, want it to contain %q", r.stderr, tt.want)
			}
			if !strings.HasPrefix(r.stderr, "batchd create: "+path) &&
				!strings.HasPrefix(r.stderr, "batchd create: the first object in "+path) {
				t.Errorf("stderr = %q, want it to name %s", r.stderr, path)
			}
		})
	}
	if n := len(s.createBodies()); n != 0 {
		t.Errorf("server got %d create requests, want 0", n)
	}
}

func TestCreateServerErrorNamesLine(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})

	// The server rejects the unknown field of the second request; the
	// message should point at line 3, because of the blank line.
	content := request("a", "x") + "\n\n" + `{"custom_id":"b","params":{},"extra":1}` + "\n"
	path := writeFile(t, "in.jsonl", content)

	r := s.run(t, "create", path)
	if r.code != 1 {
		t.Fatalf("exit code = %d, want 1; stderr %q", r.code, r.stderr)
	}
	if !strings.HasPrefix(r.stderr, "batchd create: 400 invalid_request_error: requests.1.extra") {
		t.Errorf("stderr = %q, want the server's 400 about requests.1.extra", r.stderr)
	}
	if !strings.Contains(r.stderr, "requests.1 is line 3 of "+path) {
		t.Errorf("stderr = %q, want it to name line 3", r.stderr)
	}
}

func TestGet(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	id := s.createBatch(t, request("a", "x"))
	s.waitEnded(t, id)

	r := s.mustRun(t, "get", "--json", id)
	if want := string(s.get(t, "/v1/messages/batches/"+id)) + "\n"; r.stdout != want {
		t.Errorf("get --json printed\n%s\nwant the server's body\n%s", r.stdout, want)
	}

	r = s.mustRun(t, "get", id)
	for _, want := range []string{"id", id, "processing_status", "ended", "succeeded 1",
		"results_url", "/v1/messages/batches/" + id + "/results", "archived_at          -"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("get printed\n%s\nwant it to contain %q", r.stdout, want)
		}
	}
}

func TestAPIErrors(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{backend: newScriptedBackend()})
	running := s.createBatch(t, request("hold-1", "x"))

	tests := []struct {
		name string
		args []string
		want string // stderr prefix
	}{
		{"get unknown", []string{"get", "msgbatch_unknown"},
			"batchd get: 404 not_found_error: "},
		{"cancel unknown", []string{"cancel", "msgbatch_unknown"},
			"batchd cancel: 404 not_found_error: "},
		{"delete running", []string{"delete", running},
			"batchd delete: 400 invalid_request_error: "},
		{"results running", []string{"results", running},
			"batchd results: 400 invalid_request_error: "},
		{"list bad limit", []string{"list", "--limit", "0"},
			"batchd list: 400 invalid_request_error: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.run(t, tt.args...)
			if r.code != 1 {
				t.Errorf("exit code = %d, want 1", r.code)
			}
			if !strings.HasPrefix(r.stderr, tt.want) || len(r.stderr) <= len(tt.want)+1 {
				t.Errorf("stderr = %q, want %q and a message", r.stderr, tt.want)
			}
			if strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("stderr = %q, want one line", r.stderr)
			}
		})
	}
}

func TestCancelAndDelete(t *testing.T) {
	t.Parallel()
	sb := newScriptedBackend()
	s := startServer(t, serverOptions{backend: sb})
	id := s.createBatch(t, request("hold-1", "x"), request("hold-2", "y"))

	r := s.mustRun(t, "cancel", "--json", id)
	if b := decodeBatch(t, r.stdout); b.ProcessingStatus != "canceling" &&
		b.ProcessingStatus != "ended" {
		t.Errorf("processing_status after cancel = %q, want canceling or ended",
			b.ProcessingStatus)
	}
	close(sb.release)

	b := s.waitEnded(t, id)
	c := b.RequestCounts
	if c.Canceled+c.Succeeded+c.Errored != 2 {
		t.Errorf("request_counts = %+v, want 2 requests canceled, succeeded or errored", c)
	}

	r = s.mustRun(t, "delete", id)
	if r.stdout != "deleted "+id+"\n" {
		t.Errorf("delete printed %q, want %q", r.stdout, "deleted "+id+"\n")
	}
	r = s.run(t, "get", id)
	if r.code != 1 || !strings.Contains(r.stderr, "404 not_found_error") {
		t.Errorf("get after delete: exit code %d, stderr %q; want 1 and a 404", r.code, r.stderr)
	}

	other := s.createBatch(t, request("a", "x"))
	s.waitEnded(t, other)
	r = s.mustRun(t, "delete", "--json", other)
	var deleted struct{ ID, Type string }
	if err := json.Unmarshal([]byte(r.stdout), &deleted); err != nil {
		t.Fatalf("decode %q: %v", r.stdout, err)
	}
	if deleted.ID != other || deleted.Type != "message_batch_deleted" {
		t.Errorf("delete --json printed %q, want id %s and type message_batch_deleted",
			r.stdout, other)
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})

	// ids[0] is the oldest.
	var ids []string
	for i := range 5 {
		ids = append(ids, s.createBatch(t, request(fmt.Sprint("r", i), "x")))
	}
	for _, id := range ids {
		s.waitEnded(t, id) // so that two reads of a page are equal
	}
	newestFirst := slices.Clone(ids)
	slices.Reverse(newestFirst)

	t.Run("page", func(t *testing.T) {
		r := s.mustRun(t, "list", "--limit", "2")
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		if len(lines) != 3 {
			t.Fatalf("list printed %d lines, want a header and 2 rows:\n%s", len(lines), r.stdout)
		}
		if !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[0], "CREATED_AT") {
			t.Errorf("header = %q", lines[0])
		}
		for i, line := range lines[1:] {
			if !strings.HasPrefix(line, newestFirst[i]+" ") {
				t.Errorf("row %d = %q, want batch %s", i, line, newestFirst[i])
			}
		}
		if !strings.Contains(r.stderr, "--after-id "+newestFirst[1]) {
			t.Errorf("stderr = %q, want a hint with --after-id %s", r.stderr, newestFirst[1])
		}
	})

	t.Run("json page", func(t *testing.T) {
		query := "?after_id=" + newestFirst[0] + "&limit=2"
		r := s.mustRun(t, "list", "--json", "--limit", "2", "--after-id", newestFirst[0])
		if want := string(s.get(t, "/v1/messages/batches"+query)) + "\n"; r.stdout != want {
			t.Errorf("list --json printed\n%s\nwant the server's page\n%s", r.stdout, want)
		}
	})

	t.Run("all forwards", func(t *testing.T) {
		r := s.mustRun(t, "list", "--all", "--json", "--limit", "2")
		if got := decodeIDs(t, r.stdout); !slices.Equal(got, newestFirst) {
			t.Errorf("list --all ids = %v, want %v", got, newestFirst)
		}
	})

	t.Run("all backwards", func(t *testing.T) {
		r := s.mustRun(t, "list", "--all", "--json", "--limit", "2", "--before-id", ids[0])
		got := decodeIDs(t, r.stdout)
		slices.Sort(got)
		if !slices.Equal(got, ids[1:]) {
			t.Errorf("list --all --before-id ids, sorted = %v, want %v", got, ids[1:])
		}
	})

	t.Run("all table", func(t *testing.T) {
		r := s.mustRun(t, "list", "--all", "--limit", "2")
		if n := strings.Count(r.stdout, "msgbatch_"); n != 5 {
			t.Errorf("list --all printed %d batches, want 5:\n%s", n, r.stdout)
		}
	})

	t.Run("all empty", func(t *testing.T) {
		r := s.mustRun(t, "list", "--all", "--json", "--after-id", ids[0])
		if r.stdout != "[]\n" {
			t.Errorf("list --all after the oldest batch printed %q, want []", r.stdout)
		}
	})
}

// decodeIDs returns the ids of a JSON array of batches.
func decodeIDs(t *testing.T, data string) []string {
	t.Helper()
	var batches []batchView
	if err := json.Unmarshal([]byte(data), &batches); err != nil {
		t.Fatalf("decode %q: %v", data, err)
	}
	ids := make([]string, 0, len(batches))
	for _, b := range batches {
		ids = append(ids, b.ID)
	}
	return ids
}

func TestResultsLongLines(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{backend: newScriptedBackend()})
	id := s.createBatch(t, request("long-1", "x"), request("short", "y"),
		request("long-2", "z"))
	s.waitEnded(t, id)
	want := string(s.get(t, "/v1/messages/batches/"+id+"/results"))

	t.Run("stdout", func(t *testing.T) {
		r := s.mustRun(t, "results", id)
		if r.stdout != want {
			t.Errorf("results printed %d bytes, want the server's %d", len(r.stdout), len(want))
		}
		checkLongResults(t, r.stdout)
	})

	t.Run("file", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "out.jsonl")
		r := s.mustRun(t, "results", "-o", path, id)
		if r.stdout != "" {
			t.Errorf("stdout = %q, want nothing", r.stdout)
		}
		if !strings.Contains(r.stderr, "wrote 3 results") {
			t.Errorf("stderr = %q, want a note about 3 results", r.stderr)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(data) != want {
			t.Errorf("file has %d bytes, want the server's %d", len(data), len(want))
		}
		checkLongResults(t, string(data))
		checkOnlyFile(t, dir, "out.jsonl")
	})
}

// checkLongResults checks that results holds the three results of
// TestResultsLongLines, each line complete.
func checkLongResults(t *testing.T, results string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(results))
	sc.Buffer(nil, 10*longTextBytes)
	seen := map[string]bool{}
	for sc.Scan() {
		var line struct {
			CustomID string `json:"custom_id"`
			Result   struct {
				Type    string `json:"type"`
				Message struct {
					Content []struct{ Text string } `json:"content"`
				} `json:"message"`
			} `json:"result"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("result line of %d bytes is not JSON: %v", len(sc.Bytes()), err)
		}
		seen[line.CustomID] = true
		if line.Result.Type != "succeeded" {
			t.Errorf("%s: result type %q, want succeeded", line.CustomID, line.Result.Type)
		}
		if !strings.HasPrefix(line.CustomID, "long-") {
			continue
		}
		if len(sc.Bytes()) <= 64<<10 {
			t.Errorf("%s: line has %d bytes, want over 64 KiB", line.CustomID, len(sc.Bytes()))
		}
		if c := line.Result.Message.Content; len(c) != 1 || c[0].Text != longText(line.CustomID) {
			t.Errorf("%s: the text of the message is not complete", line.CustomID)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 3 || !seen["long-1"] || !seen["long-2"] || !seen["short"] {
		t.Errorf("results have custom_ids %v, want long-1, long-2 and short", seen)
	}
}

// checkOnlyFile checks that dir contains exactly the file name, so no
// temporary file was left behind.
func checkOnlyFile(t *testing.T, dir, name string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if name == "" && len(names) == 0 {
		return
	}
	if len(names) != 1 || names[0] != name {
		t.Errorf("directory contains %v, want only %q", names, name)
	}
}

func TestResultsFailureLeavesNoFile(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{backend: newScriptedBackend()})
	running := s.createBatch(t, request("hold-1", "x"))

	dir := t.TempDir()
	path := filepath.Join(dir, "out.jsonl")
	r := s.run(t, "results", "-o", path, running)
	if r.code != 1 {
		t.Errorf("exit code = %d, want 1", r.code)
	}
	checkOnlyFile(t, dir, "")
}
