package upstream

import (
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/backend"
)

func TestErrorTypeForStatus(t *testing.T) {
	t.Parallel()

	tests := []struct {
		status int
		want   string
	}{
		{400, backend.TypeInvalidRequest},
		{401, backend.TypeAuthentication},
		{402, TypeBilling},
		{403, backend.TypePermission},
		{404, backend.TypeNotFound},
		{405, backend.TypeInvalidRequest},
		{408, backend.TypeTimeout},
		{409, backend.TypeAPI},
		{413, backend.TypeInvalidRequest},
		{418, backend.TypeInvalidRequest},
		{422, backend.TypeInvalidRequest},
		{429, backend.TypeRateLimit},
		{500, backend.TypeAPI},
		{502, backend.TypeAPI},
		{503, backend.TypeAPI},
		{504, backend.TypeTimeout},
		{529, backend.TypeOverloaded},
		{599, backend.TypeAPI},
		{302, backend.TypeAPI},
		{100, backend.TypeAPI},
	}
	for _, tt := range tests {
		if got := ErrorTypeForStatus(tt.status); got != tt.want {
			t.Errorf("ErrorTypeForStatus(%d) = %q, want %q", tt.status, got, tt.want)
		}
	}
}

func TestIsResultErrorType(t *testing.T) {
	t.Parallel()

	for _, typ := range []string{
		"invalid_request_error", "authentication_error", "billing_error",
		"permission_error", "not_found_error", "rate_limit_error",
		"timeout_error", "api_error", "overloaded_error",
	} {
		if !IsResultErrorType(typ) {
			t.Errorf("IsResultErrorType(%q) = false, want true", typ)
		}
	}
	for _, typ := range []string{"", "error", "request_too_large", "conflict_error", "API_ERROR"} {
		if IsResultErrorType(typ) {
			t.Errorf("IsResultErrorType(%q) = true, want false", typ)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()

	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	httpDate := func(t time.Time) string { return t.Format(http.TimeFormat) }

	tests := []struct {
		name    string
		headers map[string]string
		want    time.Duration
	}{
		{"none", nil, 0},
		{"milliseconds", map[string]string{"Retry-After-Ms": "1500"}, 1500 * time.Millisecond},
		{"fractional milliseconds", map[string]string{"Retry-After-Ms": "0.5"}, 500 * time.Microsecond},
		{
			"milliseconds preferred",
			map[string]string{"Retry-After-Ms": "250", "Retry-After": "30"},
			250 * time.Millisecond,
		},
		{
			"invalid milliseconds fall back",
			map[string]string{"Retry-After-Ms": "soon", "Retry-After": "2"},
			2 * time.Second,
		},
		{"seconds", map[string]string{"Retry-After": "30"}, 30 * time.Second},
		{"fractional seconds", map[string]string{"Retry-After": "1.25"}, 1250 * time.Millisecond},
		{"seconds with spaces", map[string]string{"Retry-After": " 7 "}, 7 * time.Second},
		{"negative seconds", map[string]string{"Retry-After": "-3"}, 0},
		{"negative milliseconds", map[string]string{"Retry-After-Ms": "-3"}, 0},
		{"NaN", map[string]string{"Retry-After": "NaN"}, 0},
		{"huge", map[string]string{"Retry-After": "1e300"}, time.Duration(math.MaxInt64)},
		{"date from now", map[string]string{"Retry-After": httpDate(now.Add(90 * time.Second))}, 90 * time.Second},
		{
			"date from Date header",
			map[string]string{
				"Retry-After": httpDate(now.Add(time.Hour + 10*time.Second)),
				"Date":        httpDate(now.Add(time.Hour)),
			},
			10 * time.Second,
		},
		{
			"invalid Date header uses now",
			map[string]string{"Retry-After": httpDate(now.Add(5 * time.Second)), "Date": "yesterday"},
			5 * time.Second,
		},
		{"date in the past", map[string]string{"Retry-After": httpDate(now.Add(-time.Minute))}, 0},
		{"garbage", map[string]string{"Retry-After": "in a while"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			h := http.Header{}
			for k, v := range tt.headers {
				h.Set(k, v)
			}
			if got := RetryAfter(h, now); got != tt.want {
				t.Errorf("RetryAfter(%v) = %v, want %v", tt.headers, got, tt.want)
			}
		})
	}
}

func TestReadBody(t *testing.T) {
	t.Parallel()

	body, err := ReadBody(strings.NewReader("12345"), 5)
	if err != nil {
		t.Fatalf("ReadBody at the limit: got error %v, want nil", err)
	}
	if string(body) != "12345" {
		t.Errorf("ReadBody at the limit = %q, want %q", body, "12345")
	}

	_, err = ReadBody(strings.NewReader("123456"), 5)
	if !errors.Is(err, ErrBodyTooLarge) {
		t.Errorf("ReadBody over the limit: got error %v, want ErrBodyTooLarge", err)
	}
}

func TestCheckBaseURL(t *testing.T) {
	t.Parallel()

	valid := []string{"http://127.0.0.1:8080", "https://example.test/prefix/", "http://[::1]:9"}
	for _, base := range valid {
		if err := CheckBaseURL(base); err != nil {
			t.Errorf("CheckBaseURL(%q) = %v, want nil", base, err)
		}
	}

	invalid := []string{"", "127.0.0.1:8080", "ftp://example.test", "http://", "/v1", "http://h/?a=b", "http://h/#x"}
	for _, base := range invalid {
		if err := CheckBaseURL(base); err == nil {
			t.Errorf("CheckBaseURL(%q) = nil, want an error", base)
		}
	}
}

func TestJoinURL(t *testing.T) {
	t.Parallel()

	tests := []struct{ base, path, want string }{
		{"http://h", "v1/messages", "http://h/v1/messages"},
		{"http://h/", "/v1/messages", "http://h/v1/messages"},
		{"http://h/prefix//", "v1/chat/completions", "http://h/prefix/v1/chat/completions"},
	}
	for _, tt := range tests {
		if got := JoinURL(tt.base, tt.path); got != tt.want {
			t.Errorf("JoinURL(%q, %q) = %q, want %q", tt.base, tt.path, got, tt.want)
		}
	}
}

func TestDescribeReply(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name  string
		reply Reply
		want  string
	}{
		{
			"body",
			Reply{StatusCode: 502, Body: []byte("<h1>Bad\r\n gateway</h1>")},
			"the model server returned HTTP 502 Bad Gateway: <h1>Bad gateway</h1>",
		},
		{"no body", Reply{StatusCode: 529}, "the model server returned HTTP 529"},
		{
			"redirect",
			Reply{StatusCode: 301, Header: http.Header{"Location": {"https://h/v1/messages"}}},
			"the model server returned HTTP 301 Moved Permanently to https://h/v1/messages; " +
				"check the backend's base URL",
		},
		{
			"long invalid UTF-8",
			Reply{StatusCode: 500, Body: []byte("\xff" + strings.Repeat("a", 300))},
			"the model server returned HTTP 500 Internal Server Error: \uFFFD" + strings.Repeat("a", 199),
		},
	}
	for _, tt := range tests {
		if got := DescribeReply(tt.reply); got != tt.want {
			t.Errorf("%s: DescribeReply = %q, want %q", tt.name, got, tt.want)
		}
	}
}
