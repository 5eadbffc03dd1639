package anthropic

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/backend/upstreamtest"
)

// testMessage is a Message as the Messages API returns it.
const testMessage = `{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant",` +
	`"model":"claude-opus-5-5","content":[{"type":"text","text":"Hello!","citations":null}],` +
	`"stop_reason":"end_turn","stop_sequence":null,"stop_details":null,` +
	`"usage":{"input_tokens":12,"output_tokens":6},"diagnostics":null,"container":null}`

// capturedRequest is the request that the official Go SDK 2.17.0 sent to
// create a batch, as stored in testdata: its headers and the params of its
// single batch request, byte for byte.
type capturedRequest struct {
	header http.Header
	params json.RawMessage
}

// loadCapturedRequest reads a testdata file that holds a request line,
// headers written as "Name: [value]", a blank line and the JSON body.
func loadCapturedRequest(t *testing.T, name string) capturedRequest {
	t.Helper()

	raw, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	head, body, ok := bytes.Cut(raw, []byte("\n\n"))
	if !ok {
		t.Fatalf("%s: no blank line between the headers and the body", name)
	}

	header := http.Header{}
	scanner := bufio.NewScanner(bytes.NewReader(head))
	scanner.Scan() // the request line
	for scanner.Scan() {
		key, value, ok := strings.Cut(scanner.Text(), ": ")
		if !ok {
			t.Fatalf("%s: invalid header line %q", name, scanner.Text())
		}
		header.Add(key, strings.TrimSuffix(strings.TrimPrefix(value, "["), "]"))
	}

	if got, want := strconv.Itoa(len(body)), header.Get("Content-Length"); got != want {
		t.Fatalf("%s: body is %s bytes, but Content-Length is %s", name, got, want)
	}

	// json.RawMessage keeps the bytes of params exactly as they are in the
	// body, so the test compares against what the SDK sent.
	var create struct {
		Requests []struct {
			Params json.RawMessage `json:"params"`
		} `json:"requests"`
	}
	if err := json.Unmarshal(body, &create); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if len(create.Requests) != 1 {
		t.Fatalf("%s: got %d requests, want 1", name, len(create.Requests))
	}
	params := create.Requests[0].Params
	if !bytes.Contains(body, params) {
		t.Fatalf("%s: params are not a substring of the body", name)
	}
	return capturedRequest{header: header, params: params}
}

func newTestBackend(t *testing.T, cfg Config) *Backend {
	t.Helper()

	b, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return b
}

// sendError calls Send and returns its *backend.Error, failing the test when
// Send succeeds or returns another kind of error.
func sendError(t *testing.T, b *Backend, params string) *backend.Error {
	t.Helper()

	_, err := b.Send(context.Background(), backend.Request{Params: json.RawMessage(params)})
	if err == nil {
		t.Fatal("Send succeeded, want an error")
	}
	var be *backend.Error
	if !errors.As(err, &be) {
		t.Fatalf("Send error = %v (%T), want a *backend.Error", err, err)
	}
	return be
}

func TestSendForwardsCapturedParams(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name      string
		file      string
		betas     []string
		wantBetas []string
	}{
		{
			name:      "messages",
			file:      "create-all-params.http",
			betas:     []string{"message-batches-2024-09-24"},
			wantBetas: nil,
		},
		{
			name:      "beta messages",
			file:      "beta-create-all-params.http",
			betas:     nil, // taken from the captured anthropic-beta header
			wantBetas: []string{"computer-use-2024-10-22"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			captured := loadCapturedRequest(t, tt.file)
			betas := tt.betas
			if betas == nil {
				betas = append([]string{"message-batches-2024-09-24"}, captured.header.Values("Anthropic-Beta")...)
			}

			server, requests := upstreamtest.Start(t, upstreamtest.Reply(http.StatusOK,
				map[string]string{"Content-Type": "application/json"}, testMessage))
			b := newTestBackend(t, Config{BaseURL: server.URL, APIKey: "sk-test-key"})

			resp, err := b.Send(context.Background(), backend.Request{
				BatchID:  "msgbatch_test",
				CustomID: "my-custom-id-1",
				Params:   captured.params,
				Model:    "claude-opus-5-5",
				Betas:    betas,
			})
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if string(resp.Message) != testMessage {
				t.Errorf("Message = %s, want %s", resp.Message, testMessage)
			}

			got := requests()
			if len(got) != 1 {
				t.Fatalf("upstream received %d requests, want 1", len(got))
			}
			r := got[0]
			if !bytes.Equal(r.Body, captured.params) {
				t.Errorf("upstream body differs from the captured params:\ngot  %s\nwant %s", r.Body, captured.params)
			}
			if r.Method != http.MethodPost {
				t.Errorf("method = %s, want POST", r.Method)
			}
			if r.Path != "/v1/messages" {
				t.Errorf("path = %s, want /v1/messages", r.Path)
			}
			wantHeaders := map[string]string{
				"X-Api-Key":         "sk-test-key",
				"Anthropic-Version": "2023-06-01",
				"Content-Type":      "application/json",
			}
			for k, want := range wantHeaders {
				if got := r.Header.Get(k); got != want {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
			if got := r.Header.Get("Content-Length"); got != strconv.Itoa(len(captured.params)) {
				t.Errorf("Content-Length = %s, want %d", got, len(captured.params))
			}
			if got := r.Header.Values("Anthropic-Beta"); !equalStrings(got, tt.wantBetas) {
				t.Errorf("Anthropic-Beta = %q, want %q", got, tt.wantBetas)
			}
			if got := r.Header.Get("Authorization"); got != "" {
				t.Errorf("Authorization = %q, want none", got)
			}
		})
	}
}

func TestSendConfiguredHeaders(t *testing.T) {
	t.Parallel()

	server, requests := upstreamtest.Start(t, upstreamtest.Reply(http.StatusOK, nil, testMessage))
	b := newTestBackend(t, Config{BaseURL: server.URL + "/proxy/anthropic/", Version: "2026-10-21"})

	_, err := b.Send(context.Background(), backend.Request{
		Params: json.RawMessage(`{"model":"m","max_tokens":1,"messages":[]}`),
		Betas:  []string{"a-beta, message-batches-2024-09-24", "b-beta", "a-beta"},
	})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}

	r := requests()[0]
	if r.Path != "/proxy/anthropic/v1/messages" {
		t.Errorf("path = %s, want /proxy/anthropic/v1/messages", r.Path)
	}
	if got := r.Header.Get("Anthropic-Version"); got != "2026-10-21" {
		t.Errorf("Anthropic-Version = %q, want 2026-10-21", got)
	}
	if got := r.Header.Values("X-Api-Key"); len(got) != 0 {
		t.Errorf("X-Api-Key = %q, want none when no key is configured", got)
	}
	if got := r.Header.Values("Anthropic-Beta"); !equalStrings(got, []string{"a-beta,b-beta"}) {
		t.Errorf("Anthropic-Beta = %q, want [a-beta,b-beta]", got)
	}
}

func TestForwardedBetas(t *testing.T) {
	t.Parallel()

	tests := []struct {
		betas []string
		want  string
	}{
		{nil, ""},
		{[]string{"message-batches-2024-09-24"}, ""},
		{[]string{"x"}, "x"},
		{[]string{"message-batches-2024-09-24", "x", "y"}, "x,y"},
		{[]string{" x , y ", "x", ""}, "x,y"},
		{[]string{",,"}, ""},
	}
	for _, tt := range tests {
		if got := forwardedBetas(tt.betas); got != tt.want {
			t.Errorf("forwardedBetas(%q) = %q, want %q", tt.betas, got, tt.want)
		}
	}
}

func TestSendMessageBody(t *testing.T) {
	t.Parallel()

	pretty := "{\n  \"id\": \"msg_1\",\n  \"content\": [ {\"type\": \"text\", \"text\": \"a\\nb\"} ]\n}\n"
	tests := []struct {
		name string
		body string
		want string
	}{
		{"unchanged", testMessage, testMessage},
		{"spaces kept", `{"id": "msg_1", "type": "message"}`, `{"id": "msg_1", "type": "message"}`},
		{"trailing newline trimmed", testMessage + "\n", testMessage},
		{"line breaks compacted", pretty, `{"id":"msg_1","content":[{"type":"text","text":"a\nb"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			server, _ := upstreamtest.Start(t, upstreamtest.Reply(http.StatusOK, nil, tt.body))
			b := newTestBackend(t, Config{BaseURL: server.URL})

			resp, err := b.Send(context.Background(), backend.Request{Params: json.RawMessage(`{}`)})
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if string(resp.Message) != tt.want {
				t.Errorf("Message = %q, want %q", resp.Message, tt.want)
			}
		})
	}
}

func TestSendMalformedMessage(t *testing.T) {
	t.Parallel()

	bodies := map[string]string{
		"empty":     "",
		"text":      "Hello!",
		"array":     `[{"type":"message"}]`,
		"string":    `"message"`,
		"truncated": `{"id":"msg_1","content":[`,
		"two":       `{"id":"msg_1"}{"id":"msg_2"}`,
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			t.Parallel()

			server, _ := upstreamtest.Start(t, upstreamtest.Reply(http.StatusOK, nil, body))
			b := newTestBackend(t, Config{BaseURL: server.URL})

			e := sendError(t, b, `{}`)
			if e.Type != backend.TypeAPI {
				t.Errorf("Type = %q, want api_error", e.Type)
			}
			if !e.Temporary() {
				t.Error("Temporary() = false, want true")
			}
			if e.StatusCode != http.StatusOK {
				t.Errorf("StatusCode = %d, want 200", e.StatusCode)
			}
			if !strings.Contains(e.Message, "invalid Message") {
				t.Errorf("Message = %q, want it to mention the invalid Message", e.Message)
			}
		})
	}
}

func TestSendErrorEnvelope(t *testing.T) {
	t.Parallel()

	envelope := func(typ, message string) string {
		return `{"type":"error","error":{"type":"` + typ + `","message":"` + message +
			`"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}`
	}

	tests := []struct {
		name        string
		status      int
		body        string
		wantType    string
		wantMessage string
	}{
		{
			"invalid request", 400, envelope("invalid_request_error", "max_tokens: Field required"),
			"invalid_request_error", "max_tokens: Field required",
		},
		{
			"authentication", 401, envelope("authentication_error", "invalid x-api-key"),
			"authentication_error", "invalid x-api-key",
		},
		{
			"billing", 402, envelope("billing_error", "Your credit balance is too low"),
			"billing_error", "Your credit balance is too low",
		},
		{
			"permission", 403, envelope("permission_error", "not allowed"),
			"permission_error", "not allowed",
		},
		{
			"not found", 404, envelope("not_found_error", "model: claude-x"),
			"not_found_error", "model: claude-x",
		},
		{
			"rate limit", 429, envelope("rate_limit_error", "Number of request tokens has exceeded your rate limit"),
			"rate_limit_error", "Number of request tokens has exceeded your rate limit",
		},
		{"api", 500, envelope("api_error", "Internal server error"), "api_error", "Internal server error"},
		{"timeout", 504, envelope("timeout_error", "Request timeout"), "timeout_error", "Request timeout"},
		{"overloaded", 529, envelope("overloaded_error", "Overloaded"), "overloaded_error", "Overloaded"},
		{
			"upstream type wins over status", 500, envelope("overloaded_error", "Overloaded"),
			"overloaded_error", "Overloaded",
		},
		{
			"type not valid in results", 413, envelope("request_too_large", "Request exceeds the maximum size"),
			"invalid_request_error", "request_too_large: Request exceeds the maximum size",
		},
		{
			"conflict", 409, envelope("conflict_error", "Conflict"),
			"api_error", "conflict_error: Conflict",
		},
		{
			"message missing", 529, `{"type":"error","error":{"type":"overloaded_error"}}`,
			"overloaded_error", "the model server returned HTTP 529 with no error message",
		},
		{"type missing", 503, `{"error":{"message":"try later"}}`, "api_error", "try later"},
		{
			"extra fields", 400,
			`{"type":"error","error":{"type":"invalid_request_error","message":"bad","details":{"x":1}},"extra":true}`,
			"invalid_request_error", "bad",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			server, _ := upstreamtest.Start(t, upstreamtest.Reply(tt.status,
				map[string]string{"Content-Type": "application/json"}, tt.body))
			b := newTestBackend(t, Config{BaseURL: server.URL})

			e := sendError(t, b, `{}`)
			if e.Type != tt.wantType {
				t.Errorf("Type = %q, want %q", e.Type, tt.wantType)
			}
			if e.Message != tt.wantMessage {
				t.Errorf("Message = %q, want %q", e.Message, tt.wantMessage)
			}
			if e.StatusCode != tt.status {
				t.Errorf("StatusCode = %d, want %d", e.StatusCode, tt.status)
			}
			if e.RetryAfter != 0 {
				t.Errorf("RetryAfter = %v, want 0 without retry headers", e.RetryAfter)
			}
		})
	}
}

func TestSendNonJSONErrorBody(t *testing.T) {
	t.Parallel()

	tests := []struct {
		status   int
		body     string
		wantType string
	}{
		{400, "Bad Request", "invalid_request_error"},
		{401, "", "authentication_error"},
		{403, "<html>Forbidden</html>", "permission_error"},
		{404, "404 page not found", "not_found_error"},
		{408, "", "timeout_error"},
		{413, "<html><body>413 Request Entity Too Large</body></html>", "invalid_request_error"},
		{422, "unprocessable", "invalid_request_error"},
		{429, "slow down", "rate_limit_error"},
		{500, "internal error", "api_error"},
		{502, "<html>\r\n<h1>502 Bad Gateway</h1>\r\n</html>", "api_error"},
		{503, "upstream connect error", "api_error"},
		{504, "gateway timeout", "timeout_error"},
		{529, "overloaded", "overloaded_error"},
		{400, `{"detail":"not the envelope"}`, "invalid_request_error"},
		{500, `[1,2,3]`, "api_error"},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			t.Parallel()

			html := map[string]string{"Content-Type": "text/html"}
			server, _ := upstreamtest.Start(t, upstreamtest.Reply(tt.status, html, tt.body))
			b := newTestBackend(t, Config{BaseURL: server.URL})

			e := sendError(t, b, `{}`)
			if e.Type != tt.wantType {
				t.Errorf("Type = %q, want %q", e.Type, tt.wantType)
			}
			if e.StatusCode != tt.status {
				t.Errorf("StatusCode = %d, want %d", e.StatusCode, tt.status)
			}
			if !strings.Contains(e.Message, "HTTP "+strconv.Itoa(tt.status)) {
				t.Errorf("Message = %q, want it to name HTTP %d", e.Message, tt.status)
			}
			if strings.ContainsAny(e.Message, "\r\n") {
				t.Errorf("Message = %q, want a single line", e.Message)
			}
			if words := strings.Fields(tt.body); len(words) > 0 && !strings.Contains(e.Message, words[0]) {
				t.Errorf("Message = %q, want it to quote the body %q", e.Message, tt.body)
			}
		})
	}
}

func TestSendRetryAfter(t *testing.T) {
	t.Parallel()

	date := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		headers map[string]string
		want    time.Duration
	}{
		{"milliseconds", map[string]string{"Retry-After-Ms": "1234.5"}, 1234500 * time.Microsecond},
		{"seconds", map[string]string{"Retry-After": "17"}, 17 * time.Second},
		{"both", map[string]string{"Retry-After-Ms": "800", "Retry-After": "1"}, 800 * time.Millisecond},
		{
			"HTTP-date",
			map[string]string{
				"Date":        date.Format(http.TimeFormat),
				"Retry-After": date.Add(45 * time.Second).Format(http.TimeFormat),
			},
			45 * time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			server, _ := upstreamtest.Start(t, upstreamtest.Reply(http.StatusTooManyRequests, tt.headers,
				`{"type":"error","error":{"type":"rate_limit_error","message":"rate limited"}}`))
			b := newTestBackend(t, Config{BaseURL: server.URL})

			e := sendError(t, b, `{}`)
			if e.RetryAfter != tt.want {
				t.Errorf("RetryAfter = %v, want %v", e.RetryAfter, tt.want)
			}
			if e.Type != backend.TypeRateLimit {
				t.Errorf("Type = %q, want rate_limit_error", e.Type)
			}
		})
	}
}

func TestSendRetryAfterDateWithoutDateHeader(t *testing.T) {
	t.Parallel()

	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Setting Date to nil stops net/http from adding the current time.
		w.Header()["Date"] = nil
		w.Header().Set("Retry-After", now.Add(time.Minute).Format(http.TimeFormat))
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(server.Close)

	b := newTestBackend(t, Config{BaseURL: server.URL})
	b.now = func() time.Time { return now }

	e := sendError(t, b, `{}`)
	if e.RetryAfter != time.Minute {
		t.Errorf("RetryAfter = %v, want 1m0s", e.RetryAfter)
	}
}

func TestSendRateLimitHeaders(t *testing.T) {
	t.Parallel()

	reset1 := time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC)
	reset2 := time.Date(2026, 3, 1, 12, 1, 0, 0, time.UTC)
	reset3 := time.Date(2026, 3, 1, 12, 2, 0, 0, time.UTC)
	rfc := func(t time.Time) string { return t.Format(time.RFC3339) }

	tests := []struct {
		name    string
		headers map[string]string
		want    backend.Limits
	}{
		{"none", nil, backend.NoLimits},
		{
			"requests and tokens",
			map[string]string{
				"Anthropic-Ratelimit-Requests-Limit":     "4000",
				"Anthropic-Ratelimit-Requests-Remaining": "3999",
				"Anthropic-Ratelimit-Requests-Reset":     rfc(reset1),
				"Anthropic-Ratelimit-Tokens-Limit":       "480000",
				"Anthropic-Ratelimit-Tokens-Remaining":   "470000",
				"Anthropic-Ratelimit-Tokens-Reset":       rfc(reset2),
				// The tokens-* headers are the most restrictive limit already.
				"Anthropic-Ratelimit-Output-Tokens-Limit":     "80000",
				"Anthropic-Ratelimit-Output-Tokens-Remaining": "1",
			},
			backend.Limits{
				RequestsLimit: 4000, RequestsRemaining: 3999, RequestsReset: reset1,
				TokensLimit: 480000, TokensRemaining: 470000, TokensReset: reset2,
			},
		},
		{
			"input tokens tighter",
			map[string]string{
				"Anthropic-Ratelimit-Input-Tokens-Limit":      "400000",
				"Anthropic-Ratelimit-Input-Tokens-Remaining":  "1000",
				"Anthropic-Ratelimit-Input-Tokens-Reset":      rfc(reset2),
				"Anthropic-Ratelimit-Output-Tokens-Limit":     "80000",
				"Anthropic-Ratelimit-Output-Tokens-Remaining": "50000",
				"Anthropic-Ratelimit-Output-Tokens-Reset":     rfc(reset3),
			},
			backend.Limits{
				RequestsLimit: -1, RequestsRemaining: -1,
				TokensLimit: 400000, TokensRemaining: 1000, TokensReset: reset2,
			},
		},
		{
			"output tokens tighter",
			map[string]string{
				"Anthropic-Ratelimit-Input-Tokens-Limit":      "400000",
				"Anthropic-Ratelimit-Input-Tokens-Remaining":  "300000",
				"Anthropic-Ratelimit-Output-Tokens-Limit":     "80000",
				"Anthropic-Ratelimit-Output-Tokens-Remaining": "8000",
				"Anthropic-Ratelimit-Output-Tokens-Reset":     rfc(reset3),
			},
			backend.Limits{
				RequestsLimit: -1, RequestsRemaining: -1,
				TokensLimit: 80000, TokensRemaining: 8000, TokensReset: reset3,
			},
		},
		{
			"only output tokens",
			map[string]string{"Anthropic-Ratelimit-Output-Tokens-Remaining": "5"},
			backend.Limits{RequestsLimit: -1, RequestsRemaining: -1, TokensLimit: -1, TokensRemaining: 5},
		},
		{
			"invalid values ignored",
			map[string]string{
				"Anthropic-Ratelimit-Requests-Limit":     "many",
				"Anthropic-Ratelimit-Requests-Remaining": "-4",
				"Anthropic-Ratelimit-Requests-Reset":     "in a minute",
				"Anthropic-Ratelimit-Tokens-Remaining":   "12",
			},
			backend.Limits{RequestsLimit: -1, RequestsRemaining: -1, TokensLimit: -1, TokensRemaining: 12},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			server, _ := upstreamtest.Start(t, upstreamtest.Reply(http.StatusOK, tt.headers, testMessage))
			b := newTestBackend(t, Config{BaseURL: server.URL})
			resp, err := b.Send(context.Background(), backend.Request{Params: json.RawMessage(`{}`)})
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			checkLimits(t, "success", resp.Limits, tt.want)

			server, _ = upstreamtest.Start(t, upstreamtest.Reply(http.StatusTooManyRequests, tt.headers,
				`{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}`))
			b = newTestBackend(t, Config{BaseURL: server.URL})
			e := sendError(t, b, `{}`)
			checkLimits(t, "error", e.Limits, tt.want)
		})
	}
}

func checkLimits(t *testing.T, reply string, got, want backend.Limits) {
	t.Helper()

	if got.RequestsLimit != want.RequestsLimit {
		t.Errorf("%s: RequestsLimit = %d, want %d", reply, got.RequestsLimit, want.RequestsLimit)
	}
	if got.RequestsRemaining != want.RequestsRemaining {
		t.Errorf("%s: RequestsRemaining = %d, want %d", reply, got.RequestsRemaining, want.RequestsRemaining)
	}
	if !got.RequestsReset.Equal(want.RequestsReset) {
		t.Errorf("%s: RequestsReset = %v, want %v", reply, got.RequestsReset, want.RequestsReset)
	}
	if got.TokensLimit != want.TokensLimit {
		t.Errorf("%s: TokensLimit = %d, want %d", reply, got.TokensLimit, want.TokensLimit)
	}
	if got.TokensRemaining != want.TokensRemaining {
		t.Errorf("%s: TokensRemaining = %d, want %d", reply, got.TokensRemaining, want.TokensRemaining)
	}
	if !got.TokensReset.Equal(want.TokensReset) {
		t.Errorf("%s: TokensReset = %v, want %v", reply, got.TokensReset, want.TokensReset)
	}
}

// closingListener accepts connections on loopback and closes each one as soon
// as the request headers start to arrive, so the client sees the connection
// end without a reply.
func closingListener(t *testing.T) string {
	t.Helper()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})

	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			conn.Read(make([]byte, 1))
			if tcp, ok := conn.(*net.TCPConn); ok {
				tcp.SetLinger(0) // send a reset instead of a clean close
			}
			conn.Close()
		}
	}()
	return "http://" + ln.Addr().String()
}

func TestSendConnectionReset(t *testing.T) {
	t.Parallel()

	b := newTestBackend(t, Config{BaseURL: closingListener(t)})

	_, err := b.Send(context.Background(), backend.Request{Params: json.RawMessage(`{}`)})
	if err == nil {
		t.Fatal("Send succeeded, want an error")
	}
	var be *backend.Error
	if errors.As(err, &be) {
		t.Fatalf("Send error = %v, want a plain error, not a *backend.Error", err)
	}
	if got := backend.AsError(err); got.Type != backend.TypeAPI || !got.Temporary() {
		t.Errorf("AsError(%v) = %+v, want a temporary api_error", err, got)
	}
}

func TestSendConnectionRefused(t *testing.T) {
	t.Parallel()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ln.Close()

	b := newTestBackend(t, Config{BaseURL: base})
	_, err = b.Send(context.Background(), backend.Request{Params: json.RawMessage(`{}`)})
	if err == nil {
		t.Fatal("Send succeeded, want an error")
	}
	if got := backend.AsError(err); got.Type != backend.TypeAPI {
		t.Errorf("AsError(%v).Type = %q, want api_error", err, got.Type)
	}
}

// blockingUpstream starts a server whose handler reports each arrival on the
// returned channel and then waits until the client goes away, or 10 seconds
// at most.
func blockingUpstream(t *testing.T) (*httptest.Server, <-chan struct{}) {
	t.Helper()

	arrived := make(chan struct{}, 1)
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// net/http notices a closed connection, and cancels r.Context(),
		// only once the body has been read.
		io.Copy(io.Discard, r.Body)
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	t.Cleanup(server.Close)
	return server, arrived
}

func TestSendTimeout(t *testing.T) {
	t.Parallel()

	server, _ := blockingUpstream(t)
	b := newTestBackend(t, Config{BaseURL: server.URL, Timeout: 50 * time.Millisecond})

	_, err := b.Send(context.Background(), backend.Request{Params: json.RawMessage(`{}`)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send error = %v, want context.DeadlineExceeded", err)
	}
	if got := backend.AsError(err); got.Type != backend.TypeTimeout {
		t.Errorf("AsError(%v).Type = %q, want timeout_error", err, got.Type)
	}
}

func TestSendContextCanceled(t *testing.T) {
	t.Parallel()

	server, arrived := blockingUpstream(t)
	b := newTestBackend(t, Config{BaseURL: server.URL})

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-arrived
		cancel()
	}()
	t.Cleanup(cancel)

	_, err := b.Send(ctx, backend.Request{Params: json.RawMessage(`{}`)})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Send error = %v, want context.Canceled", err)
	}
}

func TestSendEmptyParams(t *testing.T) {
	t.Parallel()

	server, requests := upstreamtest.Start(t, upstreamtest.Reply(http.StatusOK, nil, testMessage))
	b := newTestBackend(t, Config{BaseURL: server.URL})

	e := sendError(t, b, ``)
	if e.Type != backend.TypeInvalidRequest {
		t.Errorf("Type = %q, want invalid_request_error", e.Type)
	}
	if n := len(requests()); n != 0 {
		t.Errorf("upstream received %d requests, want 0", n)
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	t.Parallel()

	configs := map[string]Config{
		"no base URL":      {},
		"relative URL":     {BaseURL: "api.anthropic.com"},
		"bad scheme":       {BaseURL: "ws://127.0.0.1:1"},
		"negative timeout": {BaseURL: "http://127.0.0.1:1", Timeout: -time.Second},
	}
	for name, cfg := range configs {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New(%+v) succeeded, want an error", name, cfg)
		}
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSendDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()

	server, requests := upstreamtest.Start(t, upstreamtest.Reply(http.StatusPermanentRedirect,
		map[string]string{"Location": "https://127.0.0.1:1/v1/messages"}, ""))
	b := newTestBackend(t, Config{BaseURL: server.URL})

	e := sendError(t, b, `{}`)
	if n := len(requests()); n != 1 {
		t.Errorf("upstream received %d requests, want 1", n)
	}
	if e.StatusCode != http.StatusPermanentRedirect {
		t.Errorf("StatusCode = %d, want 308", e.StatusCode)
	}
	if e.Type != backend.TypeAPI {
		t.Errorf("Type = %q, want api_error", e.Type)
	}
	if !strings.Contains(e.Message, "https://127.0.0.1:1/v1/messages") {
		t.Errorf("Message = %q, want it to name the Location", e.Message)
	}
}
