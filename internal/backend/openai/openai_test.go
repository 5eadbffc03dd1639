package openai

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/backend/upstreamtest"
)

const textParams = `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`

func TestSendErrorReply(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name        string
		status      int
		headers     map[string]string
		body        string
		wantType    string
		wantMessage string
		wantRetry   time.Duration
	}{
		{
			name:   "OpenAI envelope",
			status: 400,
			body: `{"error":{"message":"This model's maximum context length is 4096 tokens.",` +
				`"type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`,
			wantType: "invalid_request_error",
			wantMessage: "This model's maximum context length is 4096 tokens. " +
				"(type invalid_request_error, code context_length_exceeded)",
		},
		{
			name:        "authentication",
			status:      401,
			body:        `{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}`,
			wantType:    "authentication_error",
			wantMessage: "Incorrect API key provided (type invalid_request_error, code invalid_api_key)",
		},
		{
			name:        "llama.cpp numeric code",
			status:      404,
			body:        `{"error":{"code":404,"message":"model not found","type":"not_found_error"}}`,
			wantType:    "not_found_error",
			wantMessage: "model not found (type not_found_error, code 404)",
		},
		{
			name:        "Ollama string error",
			status:      404,
			body:        `{"error":"model \"llama9\" not found, try pulling it first"}`,
			wantType:    "not_found_error",
			wantMessage: `model "llama9" not found, try pulling it first`,
		},
		{
			name:   "rate limit with retry-after-ms",
			status: 429,
			headers: map[string]string{
				"Retry-After-Ms": "750",
				"Retry-After":    "1",
			},
			body:        `{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`,
			wantType:    "rate_limit_error",
			wantMessage: "Rate limit reached (type requests, code rate_limit_exceeded)",
			wantRetry:   750 * time.Millisecond,
		},
		{
			name:        "insufficient quota",
			status:      429,
			body:        `{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}`,
			wantType:    "billing_error",
			wantMessage: "You exceeded your current quota (type insufficient_quota, code insufficient_quota)",
		},
		{
			name:        "vLLM flat error",
			status:      400,
			body:        `{"object":"error","message":"max_tokens is too large","type":"BadRequestError","param":null,"code":400}`,
			wantType:    "invalid_request_error",
			wantMessage: "max_tokens is too large (type BadRequestError, code 400)",
		},
		{
			name:        "server error with retry-after",
			status:      503,
			headers:     map[string]string{"Retry-After": "12"},
			body:        `{"error":{"message":"loading model","type":"unavailable_error","code":503}}`,
			wantType:    "api_error",
			wantMessage: "loading model (type unavailable_error, code 503)",
			wantRetry:   12 * time.Second,
		},
		{
			name:        "gateway timeout HTML",
			status:      504,
			body:        "<html>\n<body>504 Gateway Time-out</body>\n</html>",
			wantType:    "timeout_error",
			wantMessage: "the model server returned HTTP 504 Gateway Timeout: <html> <body>504 Gateway Time-out</body> </html>",
		},
		{
			name:        "overloaded without body",
			status:      529,
			wantType:    "overloaded_error",
			wantMessage: "the model server returned HTTP 529",
		},
		{
			name:        "JSON without a message",
			status:      500,
			body:        `{"detail":[1]}`,
			wantType:    "api_error",
			wantMessage: `the model server returned HTTP 500 Internal Server Error: {"detail":[1]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			server, _ := upstreamtest.Start(t, upstreamtest.Reply(tt.status, tt.headers, tt.body))
			b := newTestBackend(t, Config{BaseURL: server.URL})

			e := sendError(t, b, textParams)
			if e.Type != tt.wantType {
				t.Errorf("Type = %q, want %q", e.Type, tt.wantType)
			}
			if e.Message != tt.wantMessage {
				t.Errorf("Message = %q, want %q", e.Message, tt.wantMessage)
			}
			if e.StatusCode != tt.status {
				t.Errorf("StatusCode = %d, want %d", e.StatusCode, tt.status)
			}
			if e.RetryAfter != tt.wantRetry {
				t.Errorf("RetryAfter = %v, want %v", e.RetryAfter, tt.wantRetry)
			}
		})
	}
}

func TestSendRetryAfterDate(t *testing.T) {
	t.Parallel()

	date := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	server, _ := upstreamtest.Start(t, upstreamtest.Reply(http.StatusTooManyRequests, map[string]string{
		"Date":        date.Format(http.TimeFormat),
		"Retry-After": date.Add(2 * time.Minute).Format(http.TimeFormat),
	}, `{"error":{"message":"slow down"}}`))
	b := newTestBackend(t, Config{BaseURL: server.URL})

	e := sendError(t, b, textParams)
	if e.RetryAfter != 2*time.Minute {
		t.Errorf("RetryAfter = %v, want 2m0s", e.RetryAfter)
	}
}

func TestSendRateLimitHeaders(t *testing.T) {
	t.Parallel()

	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	headers := map[string]string{
		"X-Ratelimit-Limit-Requests":     "500",
		"X-Ratelimit-Remaining-Requests": "499",
		"X-Ratelimit-Reset-Requests":     "120ms",
		"X-Ratelimit-Limit-Tokens":       "30000",
		"X-Ratelimit-Remaining-Tokens":   "29000",
		"X-Ratelimit-Reset-Tokens":       "6m0s",
	}
	want := backend.Limits{
		RequestsLimit: 500, RequestsRemaining: 499, RequestsReset: now.Add(120 * time.Millisecond),
		TokensLimit: 30000, TokensRemaining: 29000, TokensReset: now.Add(6 * time.Minute),
	}

	server, _ := upstreamtest.Start(t, upstreamtest.Reply(http.StatusOK, headers, okReply))
	b := newTestBackend(t, Config{BaseURL: server.URL})
	b.now = func() time.Time { return now }
	resp, err := b.Send(context.Background(), backend.Request{Params: json.RawMessage(textParams)})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if resp.Limits != want {
		t.Errorf("success Limits = %+v, want %+v", resp.Limits, want)
	}

	server, _ = upstreamtest.Start(t,
		upstreamtest.Reply(http.StatusTooManyRequests, headers, `{"error":{"message":"x"}}`))
	b = newTestBackend(t, Config{BaseURL: server.URL})
	b.now = func() time.Time { return now }
	e := sendError(t, b, textParams)
	if e.Limits != want {
		t.Errorf("error Limits = %+v, want %+v", e.Limits, want)
	}
}

func TestParseLimits(t *testing.T) {
	t.Parallel()

	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	h := http.Header{}
	h.Set("X-Ratelimit-Remaining-Requests", "7")
	h.Set("X-Ratelimit-Reset-Requests", "1.5")
	h.Set("X-Ratelimit-Limit-Tokens", "lots")
	h.Set("X-Ratelimit-Reset-Tokens", "-1s")

	got := parseLimits(h, now)
	want := backend.Limits{
		RequestsLimit: -1, RequestsRemaining: 7, RequestsReset: now.Add(1500 * time.Millisecond),
		TokensLimit: -1, TokensRemaining: -1,
	}
	if got != want {
		t.Errorf("parseLimits = %+v, want %+v", got, want)
	}
	if got := parseLimits(http.Header{}, now); got != backend.NoLimits {
		t.Errorf("parseLimits(no headers) = %+v, want NoLimits", got)
	}
}

func TestSendConnectionReset(t *testing.T) {
	t.Parallel()

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
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		}
	}()

	b := newTestBackend(t, Config{BaseURL: "http://" + ln.Addr().String()})
	_, err = b.Send(context.Background(), backend.Request{Params: json.RawMessage(textParams)})
	if err == nil {
		t.Fatal("Send succeeded, want an error")
	}
	var be *backend.Error
	if errors.As(err, &be) {
		t.Fatalf("Send error = %v, want a plain error, not a *backend.Error", err)
	}
	if got := backend.AsError(err); got.Type != backend.TypeAPI {
		t.Errorf("AsError(%v).Type = %q, want api_error", err, got.Type)
	}
}

func TestSendTimeout(t *testing.T) {
	t.Parallel()

	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// net/http cancels r.Context() on a closed connection only once
		// the body has been read.
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	t.Cleanup(server.Close)
	b := newTestBackend(t, Config{BaseURL: server.URL, Timeout: 50 * time.Millisecond})

	_, err := b.Send(context.Background(), backend.Request{Params: json.RawMessage(textParams)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send error = %v, want context.DeadlineExceeded", err)
	}
	if got := backend.AsError(err); got.Type != backend.TypeTimeout {
		t.Errorf("AsError(%v).Type = %q, want timeout_error", err, got.Type)
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	t.Parallel()

	configs := map[string]Config{
		"no base URL":      {},
		"relative URL":     {BaseURL: "localhost:8000"},
		"bad scheme":       {BaseURL: "unix:///tmp/sock"},
		"negative timeout": {BaseURL: "http://127.0.0.1:1", Timeout: -time.Second},
		"empty model name": {BaseURL: "http://127.0.0.1:1", ModelMap: map[string]string{"claude-x": ""}},
	}
	for name, cfg := range configs {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New(%+v) succeeded, want an error", name, cfg)
		} else if !strings.Contains(err.Error(), "openai backend") {
			t.Errorf("%s: error %q does not name the backend", name, err)
		}
	}
}
