package testmodel_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/backend/testmodel"
)

// outcome returns the error type of one send, or "ok".
func outcome(t *testing.T, m *testmodel.Model, customID, params string) string {
	t.Helper()

	_, err := m.Send(context.Background(), request(customID, params))
	if err == nil {
		return "ok"
	}
	var be *backend.Error
	if !errors.As(err, &be) {
		t.Fatalf("Send error %v is a %T, want *backend.Error", err, err)
	}
	return be.Type
}

func TestFaultRates(t *testing.T) {
	t.Parallel()

	cfg := testmodel.Config{OverloadedRate: 0.10, RateLimitRate: 0.05, APIErrorRate: 0.02,
		Seed: 42, RetryAfter: 3 * time.Second}
	m := testmodel.New(cfg)
	params := userParams(20, "same body for every request", "")

	const n = 10_000
	counts := map[string]int{}
	for i := range n {
		customID := fmt.Sprintf("req-%d", i)
		_, err := m.Send(context.Background(), request(customID, params))
		if err == nil {
			counts["ok"]++
			continue
		}

		var be *backend.Error
		if !errors.As(err, &be) {
			t.Fatalf("Send error %v is a %T, want *backend.Error", err, err)
		}
		counts[be.Type]++

		wantStatus := map[string]int{backend.TypeOverloaded: 529, backend.TypeRateLimit: 429,
			backend.TypeAPI: 500}[be.Type]
		if be.StatusCode != wantStatus {
			t.Errorf("%s: status = %d, want %d", be.Type, be.StatusCode, wantStatus)
		}
		if be.Type == backend.TypeRateLimit && be.RetryAfter != 3*time.Second {
			t.Errorf("rate_limit_error RetryAfter = %v, want 3s", be.RetryAfter)
		}
		if be.Type != backend.TypeRateLimit && be.RetryAfter != 0 {
			t.Errorf("%s RetryAfter = %v, want 0", be.Type, be.RetryAfter)
		}
		if !be.Temporary() {
			t.Errorf("%s is not temporary, want temporary", be.Type)
		}
	}

	t.Logf("%d sends: %v", n, counts)

	// The expected counts are 1000, 500 and 200, with standard deviations
	// of about 30, 22 and 14. The bounds are more than six deviations
	// wide, and the fixed seed makes the counts the same in every run.
	bounds := []struct {
		errType   string
		low, high int
	}{
		{backend.TypeOverloaded, 800, 1200},
		{backend.TypeRateLimit, 350, 650},
		{backend.TypeAPI, 110, 290},
		{"ok", 8000, 8600},
	}
	for _, b := range bounds {
		if got := counts[b.errType]; got < b.low || got > b.high {
			t.Errorf("%d sends: %d %s, want %d..%d", n, got, b.errType, b.low, b.high)
		}
	}
}

func TestFaultsRepeatWithSeed(t *testing.T) {
	t.Parallel()

	run := func(seed uint64) string {
		m := testmodel.New(testmodel.Config{OverloadedRate: 0.3, APIErrorRate: 0.2, Seed: seed})
		var b strings.Builder
		for i := range 200 {
			b.WriteString(outcome(t, m, fmt.Sprintf("req-%d", i), userParams(5, "x", "")))
			b.WriteByte(' ')
		}
		return b.String()
	}

	first, second := run(7), run(7)
	if first != second {
		t.Errorf("seed 7 gave different outcomes in two runs:\n%s\n%s", first, second)
	}
	if other := run(8); other == first {
		t.Error("seeds 7 and 8 gave the same 200 outcomes, want different ones")
	}
}

func TestFaultRetryGetsFreshDraw(t *testing.T) {
	t.Parallel()

	m := testmodel.New(testmodel.Config{OverloadedRate: 0.5, Seed: 1})
	params := userParams(5, "retry me", "")

	// With rate 1/2 per send, each of 40 requests retried up to 30 times
	// succeeds unless its draws are stuck. A genuine run of 30 failures has
	// a chance of 2^-30 per request.
	for i := range 40 {
		customID := fmt.Sprintf("req-%d", i)
		succeeded := false
		for range 30 {
			if outcome(t, m, customID, params) == "ok" {
				succeeded = true
				break
			}
		}
		if !succeeded {
			t.Errorf("%s failed 30 sends in a row, want a fresh draw on each retry", customID)
		}
	}
}

func TestFaultRateOne(t *testing.T) {
	t.Parallel()

	m := testmodel.New(testmodel.Config{RateLimitRate: 1})
	for i := range 50 {
		if got := outcome(t, m, fmt.Sprintf("req-%d", i), userParams(5, "x", "")); got !=
			backend.TypeRateLimit {
			t.Fatalf("send %d with rate-limit rate 1: outcome %s, want rate_limit_error", i, got)
		}
	}
}

func TestDirectiveFail(t *testing.T) {
	t.Parallel()

	statuses := map[string]int{
		backend.TypeInvalidRequest: 400,
		backend.TypeAuthentication: 401,
		backend.TypePermission:     403,
		backend.TypeNotFound:       404,
		backend.TypeRateLimit:      429,
		backend.TypeAPI:            500,
		backend.TypeTimeout:        504,
		backend.TypeOverloaded:     529,
	}
	for errType, status := range statuses {
		t.Run(errType, func(t *testing.T) {
			t.Parallel()

			m := testmodel.New(testmodel.Config{})
			params := userParams(100, "Please [[batchd:fail="+errType+"]] now.", "")
			for attempt := range 3 {
				be := sendError(t, m, "req", params)
				if be.Type != errType {
					t.Errorf("send %d: error type = %q, want %q", attempt, be.Type, errType)
				}
				if be.StatusCode != status {
					t.Errorf("send %d: status = %d, want %d", attempt, be.StatusCode, status)
				}
				if errType == backend.TypeRateLimit && be.RetryAfter != testmodel.RetryAfterDefault {
					t.Errorf("RetryAfter = %v, want %v", be.RetryAfter, testmodel.RetryAfterDefault)
				}
			}
		})
	}
}

func TestDirectiveFailOnlyInLastUserMessage(t *testing.T) {
	t.Parallel()

	m := testmodel.New(testmodel.Config{})
	params := `{"model":"m","max_tokens":50,"system":"[[batchd:fail=api_error]]","messages":[` +
		`{"role":"user","content":"[[batchd:fail=api_error]]"},` +
		`{"role":"assistant","content":"[[batchd:fail=api_error]]"},` +
		`{"role":"user","content":[{"type":"text","text":"fine"}]},` +
		`{"role":"assistant","content":"[[batchd:fail=api_error]] prefill"}]}`
	if got := outcome(t, m, "req", params); got != "ok" {
		t.Errorf("directives outside the last user message: outcome %s, want ok", got)
	}

	inToolResult := `{"model":"m","max_tokens":50,"messages":[{"role":"user","content":[` +
		`{"type":"tool_result","tool_use_id":"t","content":"[[batchd:fail=timeout_error]]"}]}]}`
	if got := outcome(t, m, "req", inToolResult); got != backend.TypeTimeout {
		t.Errorf("directive inside a tool_result: outcome %s, want timeout_error", got)
	}
}

func TestDirectiveFailOnce(t *testing.T) {
	t.Parallel()

	m := testmodel.New(testmodel.Config{})
	params := userParams(100, "[[batchd:fail-once=overloaded_error]]", "")

	if got := outcome(t, m, "req-a", params); got != backend.TypeOverloaded {
		t.Errorf("first send: outcome %s, want overloaded_error", got)
	}
	for attempt := 2; attempt <= 3; attempt++ {
		if got := outcome(t, m, "req-a", params); got != "ok" {
			t.Errorf("send %d: outcome %s, want ok", attempt, got)
		}
	}

	// Another request with the same body has its own first send.
	if got := outcome(t, m, "req-b", params); got != backend.TypeOverloaded {
		t.Errorf("first send of req-b: outcome %s, want overloaded_error", got)
	}
}

func TestDirectiveDelay(t *testing.T) {
	t.Parallel()

	m := testmodel.New(testmodel.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)

	_, err := m.Send(ctx, request("req", userParams(10, "[[batchd:delay=1h]]", "")))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Send with a 1h delay directive and a canceled context: error = %v, "+
			"want context.Canceled", err)
	}

	if got := outcome(t, m, "req", userParams(10, "[[batchd:delay=1ms]]", "")); got != "ok" {
		t.Errorf("1ms delay directive: outcome %s, want ok", got)
	}
}

func TestDirectiveErrors(t *testing.T) {
	t.Parallel()

	tests := []struct {
		text string
		want string
	}{
		{"[[batchd:fail=bogus_error]]", `names unknown error type "bogus_error"`},
		{"[[batchd:explode=now]]", `has unknown name "explode"`},
		{"[[batchd:fail]]", "has no '='"},
		{"[[batchd:fail=api_error", `has no closing "]]"`},
		{"[[batchd:delay=soon]]", "needs a non-negative duration"},
		{"[[batchd:delay=-1s]]", "needs a non-negative duration"},
	}
	m := testmodel.New(testmodel.Config{})
	for _, tt := range tests {
		be := sendError(t, m, "req", userParams(10, tt.text, ""))
		if be.Type != backend.TypeInvalidRequest {
			t.Errorf("%s: error type = %q, want invalid_request_error", tt.text, be.Type)
		}
		if !strings.Contains(be.Message, tt.want) {
			t.Errorf("%s: message = %q, want it to contain %q", tt.text, be.Message, tt.want)
		}
	}
}

func TestDirectivesCombine(t *testing.T) {
	t.Parallel()

	m := testmodel.New(testmodel.Config{})
	params := userParams(10, "[[batchd:delay=1ms]] and [[batchd:fail=not_found_error]]", "")
	if got := outcome(t, m, "req", params); got != backend.TypeNotFound {
		t.Errorf("delay and fail directives: outcome %s, want not_found_error", got)
	}
}
