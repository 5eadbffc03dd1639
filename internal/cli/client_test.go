package cli

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

func TestClientSettings(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})

	// A loopback port with nothing listening: requests sent there fail.
	closed := httptest.NewServer(http.NotFoundHandler())
	deadURL := closed.URL
	closed.Close()

	tests := []struct {
		name    string
		environ vars
		args    []string
		code    int
		stderr  string // substring
	}{
		{"no base url", vars{apiKeyEnv: testKey}, nil, 1, "set ANTHROPIC_BASE_URL"},
		{"bad base url", vars{baseURLEnv: "127.0.0.1:8080", apiKeyEnv: testKey}, nil, 1,
			"want http:// or https://"},
		{"no key", vars{baseURLEnv: s.url}, nil, 1, "set ANTHROPIC_API_KEY"},
		{"env", vars{baseURLEnv: s.url, apiKeyEnv: testKey}, nil, 0, ""},
		{"auth token", vars{baseURLEnv: s.url, authTokenEnv: testKey}, nil, 0, ""},
		{"api key before auth token", vars{baseURLEnv: s.url, apiKeyEnv: testKey,
			authTokenEnv: "wrong"}, nil, 0, ""},
		{"wrong key", vars{baseURLEnv: s.url, apiKeyEnv: "wrong"}, nil, 1,
			"401 authentication_error: "},
		{"flags override env", vars{baseURLEnv: deadURL, apiKeyEnv: "wrong"},
			[]string{"--base-url", s.url, "--api-key", testKey}, 0, ""},
		{"base url flag only", vars{apiKeyEnv: testKey}, []string{"--base-url", s.url}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"list", "--json"}, tt.args...)
			r := runCommand(t, tt.environ, "", args...)
			if r.code != tt.code {
				t.Errorf("exit code = %d, want %d; stderr %q", r.code, tt.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("stderr = %q, want it to contain %q", r.stderr, tt.stderr)
			}
		})
	}
}

func TestCustomHeadersFromEnv(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})

	environ := vars{baseURLEnv: s.url, apiKeyEnv: testKey,
		customHeadersEnv: "X-Trace: abc\nno colon here\nX-Other:  two words "}
	if r := runCommand(t, environ, "", "list"); r.code != 0 {
		t.Fatalf("exit code %d, stderr %q", r.code, r.stderr)
	}
	h := s.lastHeaders()
	if got := h.Get("X-Trace"); got != "abc" {
		t.Errorf("X-Trace = %q, want abc", got)
	}
	if got := h.Get("X-Other"); got != "two words" {
		t.Errorf("X-Other = %q, want %q", got, "two words")
	}
	if got := h.Get("Authorization"); got != "Bearer "+testKey {
		t.Errorf("Authorization = %q, want the test key as a bearer token", got)
	}
}

// TestProcessEnvIgnored checks that the SDK does not read the process
// environment behind the command's back. It cannot run in parallel because
// it sets process environment variables.
func TestProcessEnvIgnored(t *testing.T) {
	s := startServer(t, serverOptions{})
	t.Setenv(baseURLEnv, s.url)
	t.Setenv(apiKeyEnv, testKey)

	r := runCommand(t, vars{}, "", "list")
	if r.code != 1 || !strings.Contains(r.stderr, "set ANTHROPIC_BASE_URL") {
		t.Errorf("exit code %d, stderr %q; want 1 and a request to set ANTHROPIC_BASE_URL",
			r.code, r.stderr)
	}
	r = runCommand(t, vars{baseURLEnv: s.url}, "", "list")
	if r.code != 1 || !strings.Contains(r.stderr, "set ANTHROPIC_API_KEY") {
		t.Errorf("exit code %d, stderr %q; want 1 and a request to set ANTHROPIC_API_KEY",
			r.code, r.stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	environ := vars{baseURLEnv: "http://127.0.0.1:1", apiKeyEnv: testKey}
	tests := [][]string{
		{"get"},
		{"get", "a", "b"},
		{"cancel"},
		{"delete"},
		{"results"},
		{"create"},
		{"create", "a", "b"},
		{"list", "extra"},
		{"list", "--no-such-flag"},
		{"get", ""},
		{"create", "--poll-interval", "0s", "f"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			r := runCommand(t, environ, "", args...)
			if r.code != 2 {
				t.Errorf("exit code = %d, want 2; stderr %q", r.code, r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
		})
	}
}

func TestHelpListsClientCommands(t *testing.T) {
	t.Parallel()
	r := runCommand(t, vars{}, "", "help")
	for _, name := range []string{"list", "get", "create", "cancel", "delete", "results"} {
		if !strings.Contains(r.stdout, "  "+name+" ") {
			t.Errorf("help does not list %s:\n%s", name, r.stdout)
		}
	}
}

// fakeResults serves one ended batch "msgbatch_fake" of three requests,
// whose results endpoint sends body and then, with abort, cuts the
// connection.
func fakeResults(t *testing.T, body string, abort bool) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/messages/batches/msgbatch_fake", func(w http.ResponseWriter,
		r *http.Request) {
		w.Header().Set("content-type", "application/json")
		io.WriteString(w, `{"id":"msgbatch_fake","type":"message_batch",`+
			`"processing_status":"ended","request_counts":{"processing":0,"succeeded":3,`+
			`"errored":0,"canceled":0,"expired":0},"created_at":"2026-01-02T03:04:05Z",`+
			`"expires_at":"2026-01-03T03:04:05Z","ended_at":"2026-01-02T03:05:05Z",`+
			`"cancel_initiated_at":null,"archived_at":null,"results_url":null}`)
	})
	mux.HandleFunc("GET /v1/messages/batches/msgbatch_fake/results", func(w http.ResponseWriter,
		r *http.Request) {
		w.Header().Set("content-type", "application/x-jsonl")
		io.WriteString(w, body)
		if abort {
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
	})
	server := httptest.NewServer(mux)
	t.Cleanup(server.Close)
	return server.URL
}

func TestResultsIncomplete(t *testing.T) {
	t.Parallel()
	line := `{"custom_id":"a","result":{"type":"canceled"}}` + "\n"
	tests := []struct {
		name   string
		body   string
		abort  bool
		stderr string
	}{
		{"too few lines", line + line, false, "got 2 result lines, want 3"},
		{"no final newline", line + line + strings.TrimSuffix(line, "\n"), false,
			"the results end in the middle of line 3"},
		{"not json", line + "{\"custom_id\":\n" + line, false, "result line 2 is not valid JSON"},
		{"blank line", line + "\n" + line, false, "result line 2 is not valid JSON"},
		{"connection cut", line + line + `{"custom_id":"c","res`, true, "download stopped"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url := fakeResults(t, tt.body, tt.abort)
			dir := t.TempDir()
			path := filepath.Join(dir, "out.jsonl")
			r := runCommand(t, vars{baseURLEnv: url, apiKeyEnv: testKey}, "",
				"results", "-o", path, "msgbatch_fake")
			if r.code != 1 {
				t.Errorf("exit code = %d, want 1", r.code)
			}
			if !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("stderr = %q, want it to contain %q", r.stderr, tt.stderr)
			}
			checkOnlyFile(t, dir, "")
		})
	}

	t.Run("complete", func(t *testing.T) {
		t.Parallel()
		url := fakeResults(t, line+line+line, false)
		r := runCommand(t, vars{baseURLEnv: url, apiKeyEnv: testKey}, "",
			"results", "msgbatch_fake")
		if r.code != 0 || r.stdout != line+line+line {
			t.Errorf("exit code %d, stdout %q, stderr %q; want 0 and the three lines",
				r.code, r.stdout, r.stderr)
		}
	})
}

func TestLineWriterSplitWrites(t *testing.T) {
	t.Parallel()
	long := `{"text":"` + strings.Repeat("x", 100_000) + `"}`
	input := `{"a":1}` + "\n" + long + "\n" + `[2]` + "\n"
	for _, size := range []int{1, 7, 4096, len(input)} {
		var out bytes.Buffer
		lw := &lineWriter{w: &out}
		for rest := input; len(rest) > 0; {
			n := min(size, len(rest))
			if _, err := lw.Write([]byte(rest[:n])); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		if out.String() != input {
			t.Errorf("chunks of %d: output differs from input", size)
		}
		if err := lw.check(3); err != nil {
			t.Errorf("chunks of %d: check: %v", size, err)
		}
		if err := lw.check(4); err == nil {
			t.Errorf("chunks of %d: check(4) passed with 3 lines", size)
		}
	}
}

func TestJSONLBodyReader(t *testing.T) {
	t.Parallel()
	lines := []string{`{"custom_id":"a","params":{"x":1}}`,
		`{"custom_id":"b","params":{"y":"` + strings.Repeat("é", 50_000) + `"}}`}
	content := "\n" + lines[0] + "\r\n\n\t" + lines[1]
	want := `{"requests":[` + lines[0] + "," + lines[1] + `]}`

	body := &jsonlBody{src: newBufReader(content), want: 2}
	if err := iotest.TestReader(body, []byte(want)); err != nil {
		t.Error(err)
	}

	changed := &jsonlBody{src: newBufReader(content), want: 3}
	if _, err := io.ReadAll(changed); err == nil || !strings.Contains(err.Error(), "changed") {
		t.Errorf("read with a wrong count: err = %v, want an error about a changed input", err)
	}
}

func TestDetectForm(t *testing.T) {
	t.Parallel()
	tests := []struct {
		content string
		jsonl   bool
	}{
		{`{"custom_id":"a","params":{}}`, true},
		{` {"params":{},"custom_id":"a"}`, true},
		{`{"requests":[]}`, false},
		{"\n{\n\"other\": {\"requests\": 1},\n\"requests\": []}", false},
		{`{"x":[1,2],"custom_id":"a"}`, true},
	}
	for _, tt := range tests {
		path := writeFile(t, "in", tt.content)
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		jsonl, err := detectForm(f, "in")
		f.Close()
		if err != nil || jsonl != tt.jsonl {
			t.Errorf("detectForm(%q) = %v, %v; want %v, nil", tt.content, jsonl, err, tt.jsonl)
		}
	}
}

func newBufReader(s string) *bufio.Reader {
	return bufio.NewReader(strings.NewReader(s))
}

func TestParseFlagsAfterArguments(t *testing.T) {
	e := &env{stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
	fs := newFlagSet(e, "results", "ID [-o FILE]")
	out := fs.String("o", "", "output file")
	verbose := fs.Bool("v", false, "verbose")

	if err := parseFlags(fs, []string{"msgbatch_1", "-o", "r.jsonl", "-v", "-"}); err != nil {
		t.Fatalf("parseFlags: %v", err)
	}
	if *out != "r.jsonl" {
		t.Errorf("-o = %q, want r.jsonl", *out)
	}
	if !*verbose {
		t.Error("-v after the id was not parsed")
	}
	if got := fs.Args(); len(got) != 2 || got[0] != "msgbatch_1" || got[1] != "-" {
		t.Errorf("arguments = %q, want [msgbatch_1 -]", got)
	}
}
