package testmodel_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/backend/testmodel"
	"github.com/batchd/batchd/internal/messages"
	"github.com/batchd/batchd/internal/messages/messagestest"
)

// request returns a backend.Request for params in batch msgbatch_test.
func request(customID, params string) backend.Request {
	return backend.Request{
		BatchID:  "msgbatch_test",
		CustomID: customID,
		Params:   json.RawMessage(params),
		Model:    "claude-test",
	}
}

// userParams returns params with one user message and the extra top-level
// fields, which must start with a comma when not empty.
func userParams(maxTokens int, text, extra string) string {
	quoted, _ := json.Marshal(text)
	return fmt.Sprintf(`{"model":"claude-test","max_tokens":%d,`+
		`"messages":[{"role":"user","content":%s}]%s}`, maxTokens, quoted, extra)
}

// send sends params to m, fails t on error, checks the response against the
// API's Message schema and returns it decoded and as sent.
func send(t *testing.T, m *testmodel.Model, customID, params string) (messages.Message, []byte) {
	t.Helper()

	resp, err := m.Send(context.Background(), request(customID, params))
	if err != nil {
		t.Fatalf("Send(%s): %v", params, err)
	}
	if err := messagestest.ValidateJSON(t, "Message", resp.Message); err != nil {
		t.Errorf("answer %s does not match the Message schema: %v", resp.Message, err)
	}
	if resp.Limits != backend.NoLimits {
		t.Errorf("Limits = %+v, want backend.NoLimits", resp.Limits)
	}

	var msg messages.Message
	if err := json.Unmarshal(resp.Message, &msg); err != nil {
		t.Fatalf("decode answer %s: %v", resp.Message, err)
	}
	return msg, resp.Message
}

// sendError sends params to m and returns the *backend.Error it fails with,
// failing t when Send succeeds or returns another kind of error.
func sendError(t *testing.T, m *testmodel.Model, customID, params string) *backend.Error {
	t.Helper()

	_, err := m.Send(context.Background(), request(customID, params))
	if err == nil {
		t.Fatalf("Send(%s) succeeded, want an error", params)
	}
	var be *backend.Error
	if !errors.As(err, &be) {
		t.Fatalf("Send error %v is a %T, want *backend.Error", err, err)
	}
	return be
}

// textOf returns the concatenated text blocks of msg.
func textOf(msg messages.Message) string {
	var b strings.Builder
	for _, block := range msg.Content {
		if block.Type == messages.BlockText {
			b.WriteString(block.Text)
		}
	}
	return b.String()
}

func TestSendDeterministic(t *testing.T) {
	t.Parallel()

	params := userParams(200, "Tell me about rivers.", `,"system":"Be brief."`)
	_, first := send(t, testmodel.New(testmodel.Config{}), "req-1", params)
	_, again := send(t, testmodel.New(testmodel.Config{Seed: 99}), "req-1", params)
	if string(first) != string(again) {
		t.Errorf("same request, two models:\n got %s\nwant %s", again, first)
	}

	m := testmodel.New(testmodel.Config{})
	a, _ := send(t, m, "req-1", params)
	b, _ := send(t, m, "req-2", params)
	if a.ID == b.ID {
		t.Errorf("two custom_ids got the same message id %q", a.ID)
	}
	if textOf(a) != textOf(b) {
		t.Errorf("same params, two custom_ids: text %q and %q differ", textOf(a), textOf(b))
	}
	if !strings.HasPrefix(a.ID, "msg_") || len(a.ID) != len("msg_")+24 {
		t.Errorf("message id = %q, want msg_ and 24 characters", a.ID)
	}

	other, _ := send(t, m, "req-1", userParams(200, "Tell me about mountains.", ""))
	if textOf(other) == textOf(a) {
		t.Errorf("different params gave the same text %q", textOf(a))
	}
}

func TestSendEndTurn(t *testing.T) {
	t.Parallel()

	m := testmodel.New(testmodel.Config{})
	msg, _ := send(t, m, "req", userParams(1000, "Hello   there,\n\ttest model!", ""))

	if msg.StopReason != messages.StopEndTurn {
		t.Errorf("stop_reason = %q, want end_turn", msg.StopReason)
	}
	if msg.StopSequence != "" {
		t.Errorf("stop_sequence = %q, want null", msg.StopSequence)
	}
	if msg.Model != "claude-test" {
		t.Errorf("model = %q, want claude-test", msg.Model)
	}
	if len(msg.Content) != 1 || msg.Content[0].Type != messages.BlockText {
		t.Fatalf("content = %+v, want one text block", msg.Content)
	}
	text := textOf(msg)
	if want := `You said: "Hello there, test model!". `; !strings.HasPrefix(text, want) {
		t.Errorf("text = %q, want prefix %q", text, want)
	}
	if msg.Usage.ServiceTier != messages.ServiceTierBatch {
		t.Errorf("service_tier = %q, want batch", msg.Usage.ServiceTier)
	}
}

func TestSendSystemPrompt(t *testing.T) {
	t.Parallel()

	m := testmodel.New(testmodel.Config{})
	params := userParams(1000, "Hi", `,"system":[{"type":"text","text":"You are a pirate."},`+
		`{"type":"text","text":"Speak in rhymes, always and everywhere, no matter what."}]`)
	msg, _ := send(t, m, "req", params)

	want := `[system: You are a pirate. Speak in rhymes, always and everywhere,...] You said: "Hi".`
	if text := textOf(msg); !strings.HasPrefix(text, want) {
		t.Errorf("text = %q, want prefix %q", text, want)
	}

	plain, _ := send(t, m, "req", userParams(1000, "Hi", ""))
	if strings.Contains(textOf(plain), "[system:") {
		t.Errorf("text without system prompt = %q, want no [system: part", textOf(plain))
	}
}

func TestSendMaxTokens(t *testing.T) {
	t.Parallel()

	m := testmodel.New(testmodel.Config{})
	for _, maxTokens := range []int{1, 2, 5, 13} {
		msg, _ := send(t, m, "req", userParams(maxTokens, "Write a long story.", ""))

		if msg.StopReason != messages.StopMaxTokens {
			t.Errorf("max_tokens %d: stop_reason = %q, want max_tokens", maxTokens, msg.StopReason)
		}
		if got := msg.Usage.OutputTokens; got > int64(maxTokens) || got < 1 {
			t.Errorf("max_tokens %d: output_tokens = %d, want 1..%d", maxTokens, got, maxTokens)
		}
		if got, limit := len(textOf(msg)), 4*maxTokens; got > limit {
			t.Errorf("max_tokens %d: text is %d bytes, want at most %d", maxTokens, got, limit)
		}
	}
}

func TestSendStopSequence(t *testing.T) {
	t.Parallel()

	m := testmodel.New(testmodel.Config{})
	params := userParams(1000, "alpha beta STOP gamma", `,"stop_sequences":["zzz","STOP","beta"]`)
	msg, _ := send(t, m, "req", params)

	if msg.StopReason != messages.StopSequence {
		t.Errorf("stop_reason = %q, want stop_sequence", msg.StopReason)
	}
	if msg.StopSequence != "beta" {
		t.Errorf("stop_sequence = %q, want the earliest match %q", msg.StopSequence, "beta")
	}
	if want := `You said: "alpha `; textOf(msg) != want {
		t.Errorf("text = %q, want %q", textOf(msg), want)
	}
	if want := int64((len(`You said: "alpha `) + 3) / 4); msg.Usage.OutputTokens != want {
		t.Errorf("output_tokens = %d, want %d", msg.Usage.OutputTokens, want)
	}

	// A stop sequence past max_tokens is never reached.
	params = userParams(3, "alpha beta STOP gamma", `,"stop_sequences":["STOP"]`)
	msg, _ = send(t, m, "req", params)
	if msg.StopReason != messages.StopMaxTokens || msg.StopSequence != "" {
		t.Errorf("stop past max_tokens: stop_reason = %q, stop_sequence = %q, "+
			"want max_tokens and null", msg.StopReason, msg.StopSequence)
	}
}

func TestSendUsage(t *testing.T) {
	t.Parallel()

	m := testmodel.New(testmodel.Config{})
	params := `{"model":"m","max_tokens":500,"system":"sys",` +
		`"tools":[{"name":"calc","description":"adds","input_schema":{"type":"object"}},` +
		`{"type":"web_search_20250305","name":"web_search"}],"tool_choice":{"type":"none"},` +
		`"messages":[` +
		`{"role":"user","content":[{"type":"text","text":"abcdefgh"},` +
		`{"type":"image","source":{"type":"url","url":"u"}}]},` +
		`{"role":"assistant","content":[{"type":"thinking","thinking":"tt","signature":"s"},` +
		`{"type":"tool_use","id":"t1","name":"calc","input":{"a":1}}]},` +
		`{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"42"}]}]}`
	msg, _ := send(t, m, "req", params)

	image := `{"type":"image","source":{"type":"url","url":"u"}}`
	server := `{"type":"web_search_20250305","name":"web_search"}`
	inputBytes := len("sys") + len("abcdefgh") + len(image) + len("tt") +
		len("calc") + len(`{"a":1}`) + len("42") +
		len("calc") + len("adds") + len(`{"type":"object"}`) + len(server)
	if want := int64((inputBytes + 3) / 4); msg.Usage.InputTokens != want {
		t.Errorf("input_tokens = %d, want ceil(%d/4) = %d", msg.Usage.InputTokens, inputBytes, want)
	}

	textBytes := len(textOf(msg))
	if want := int64((textBytes + 3) / 4); msg.Usage.OutputTokens != want {
		t.Errorf("output_tokens = %d, want ceil(%d/4) = %d", msg.Usage.OutputTokens, textBytes,
			want)
	}
	if msg.Usage.CacheCreationInputTokens != 0 || msg.Usage.CacheReadInputTokens != 0 {
		t.Errorf("cache token counts = %d, %d, want 0, 0",
			msg.Usage.CacheCreationInputTokens, msg.Usage.CacheReadInputTokens)
	}
	if msg.Usage.OutputTokensDetails != nil {
		t.Errorf("output_tokens_details = %+v, want null without thinking",
			msg.Usage.OutputTokensDetails)
	}
}

func TestSendThinking(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name     string
		thinking string
		omitted  bool
	}{
		{"enabled", `{"type":"enabled","budget_tokens":1024}`, false},
		{"adaptive", `{"type":"adaptive"}`, false},
		{"enabled omitted", `{"type":"enabled","budget_tokens":1024,"display":"omitted"}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			m := testmodel.New(testmodel.Config{})
			msg, _ := send(t, m, "req", userParams(2000, "Think first.", `,"thinking":`+tt.thinking))

			if len(msg.Content) != 2 {
				t.Fatalf("content = %+v, want a thinking block and a text block", msg.Content)
			}
			block := msg.Content[0]
			if block.Type != messages.BlockThinking {
				t.Fatalf("content[0].type = %q, want thinking", block.Type)
			}
			if block.Signature == "" {
				t.Error("thinking signature is empty")
			}
			if tt.omitted && block.Thinking != "" {
				t.Errorf("thinking with display omitted = %q, want empty", block.Thinking)
			}
			if !tt.omitted && !strings.HasPrefix(block.Thinking, `The request asks: "Think first.". `) {
				t.Errorf("thinking = %q, want it to quote the request", block.Thinking)
			}
			if msg.Content[1].Type != messages.BlockText {
				t.Errorf("content[1].type = %q, want text", msg.Content[1].Type)
			}

			details := msg.Usage.OutputTokensDetails
			if details == nil || details.ThinkingTokens < 1 {
				t.Fatalf("output_tokens_details = %+v, want thinking tokens", details)
			}
			textTokens := int64((len(textOf(msg)) + 3) / 4)
			if want := details.ThinkingTokens + textTokens; msg.Usage.OutputTokens != want {
				t.Errorf("output_tokens = %d, want thinking %d + text %d", msg.Usage.OutputTokens,
					details.ThinkingTokens, textTokens)
			}
		})
	}

	m := testmodel.New(testmodel.Config{})
	for _, thinking := range []string{`{"type":"disabled"}`, `{"type":"between_tools"}`} {
		msg, _ := send(t, m, "req", userParams(2000, "Think first.", `,"thinking":`+thinking))
		if msg.Content[0].Type != messages.BlockText {
			t.Errorf("thinking %s: content[0].type = %q, want text", thinking, msg.Content[0].Type)
		}
	}
}

func TestSendThinkingCountsAgainstMaxTokens(t *testing.T) {
	t.Parallel()

	m := testmodel.New(testmodel.Config{})
	// Adaptive thinking may use half of max_tokens, so 10 tokens leave at
	// most 5 for thinking and at least 5 for text, which is too little.
	msg, _ := send(t, m, "req", userParams(10, "Think.", `,"thinking":{"type":"adaptive"}`))

	if msg.StopReason != messages.StopMaxTokens {
		t.Errorf("stop_reason = %q, want max_tokens", msg.StopReason)
	}
	if msg.Usage.OutputTokens > 10 {
		t.Errorf("output_tokens = %d, want at most max_tokens 10", msg.Usage.OutputTokens)
	}
	if got := msg.Usage.OutputTokensDetails; got == nil || got.ThinkingTokens != 5 {
		t.Errorf("output_tokens_details = %+v, want 5 thinking tokens", got)
	}
}

func TestSendInvalidParams(t *testing.T) {
	t.Parallel()

	// An hour of latency shows that invalid params are rejected before the
	// delay: the context would end first otherwise.
	m := testmodel.New(testmodel.Config{Latency: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	_, err := m.Send(ctx, request("req", `{"model":"m","max_tokens":0,"messages":[]}`))
	var be *backend.Error
	if !errors.As(err, &be) {
		t.Fatalf("Send error = %v, want *backend.Error", err)
	}
	if be.Type != backend.TypeInvalidRequest || be.StatusCode != 400 {
		t.Errorf("error = %s (HTTP %d), want invalid_request_error (HTTP 400)", be.Type,
			be.StatusCode)
	}
	if want := "max_tokens: must be at least 1, got 0"; be.Message != want {
		t.Errorf("message = %q, want %q", be.Message, want)
	}
}

func TestSendHonoursContextDuringLatency(t *testing.T) {
	t.Parallel()

	m := testmodel.New(testmodel.Config{Latency: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)

	_, err := m.Send(ctx, request("req", userParams(10, "hi", "")))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Send error = %v, want context.Canceled", err)
	}

	_, err = m.Send(ctx, request("req", userParams(10, "hi", "")))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Send with ended context: error = %v, want context.Canceled", err)
	}
}

func TestSendKeepsCancelCause(t *testing.T) {
	t.Parallel()

	stop := errors.New("engine stopping")
	m := testmodel.New(testmodel.Config{Latency: time.Hour})
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(20*time.Millisecond, func() { cancel(stop) })

	_, err := m.Send(ctx, request("req", userParams(10, "hi", "")))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Send error = %v, want it to wrap context.Canceled", err)
	}
	if !errors.Is(err, stop) {
		t.Errorf("Send error = %v, want it to wrap the cause %v", err, stop)
	}
}

func TestSendConcurrent(t *testing.T) {
	t.Parallel()

	m := testmodel.New(testmodel.Config{OverloadedRate: 0.2, Seed: 3})
	done := make(chan map[string]bool)
	for worker := range 4 {
		go func() {
			outcomes := map[string]bool{}
			for i := range 100 {
				customID := fmt.Sprintf("w%d-%d", worker, i)
				text := "hello"
				if i%10 == 0 {
					text = "[[batchd:fail-once=api_error]]"
				}
				_, err := m.Send(context.Background(), request(customID, userParams(5, text, "")))
				outcomes[customID] = err != nil
			}
			done <- outcomes
		}()
	}

	failures := 0
	for range 4 {
		for _, failed := range <-done {
			if failed {
				failures++
			}
		}
	}
	// 40 fail-once requests always fail; of the other 360, about 72 fail.
	if failures < 40+30 || failures > 40+130 {
		t.Errorf("400 concurrent sends: %d failures, want about 112", failures)
	}
}

func TestSendLatencyAndJitter(t *testing.T) {
	t.Parallel()

	m := testmodel.New(testmodel.Config{Latency: 5 * time.Millisecond,
		Jitter: 5 * time.Millisecond})
	start := time.Now()
	send(t, m, "req", userParams(10, "hi", ""))
	if elapsed := time.Since(start); elapsed < 5*time.Millisecond {
		t.Errorf("Send returned after %v, want at least the 5ms latency", elapsed)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()

	valid := []testmodel.Config{
		{},
		{Latency: time.Second, Jitter: time.Millisecond, RetryAfter: time.Second},
		{OverloadedRate: 0.5, RateLimitRate: 0.25, APIErrorRate: 0.25},
		{OverloadedRate: 1},
	}
	for _, cfg := range valid {
		if err := cfg.Validate(); err != nil {
			t.Errorf("%+v.Validate() = %v, want nil", cfg, err)
		}
	}

	invalid := []testmodel.Config{
		{Latency: -time.Second},
		{Jitter: -1},
		{RetryAfter: -1},
		{OverloadedRate: -0.1},
		{RateLimitRate: 1.5},
		{APIErrorRate: nan()},
		{OverloadedRate: 0.6, RateLimitRate: 0.6},
	}
	for _, cfg := range invalid {
		if err := cfg.Validate(); err == nil {
			t.Errorf("%+v.Validate() = nil, want an error", cfg)
		}
	}
}

func TestNewPanicsOnInvalidConfig(t *testing.T) {
	t.Parallel()

	defer func() {
		if recover() == nil {
			t.Error("New with a fault rate of 2 did not panic")
		}
	}()
	testmodel.New(testmodel.Config{APIErrorRate: 2})
}

func nan() float64 {
	zero := 0.0
	return zero / zero
}

func BenchmarkSend(b *testing.B) {
	m := testmodel.New(testmodel.Config{})
	req := request("req-1", userParams(256, "Hello there, how are you today?",
		`,"system":"You are a test.","stop_sequences":["END"]`))
	ctx := context.Background()

	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Send(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSendParallel(b *testing.B) {
	m := testmodel.New(testmodel.Config{OverloadedRate: 0.01})
	params := userParams(256, "Hello there, how are you today?", `,"system":"You are a test."`)
	ctx := context.Background()

	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			_, err := m.Send(ctx, request(fmt.Sprintf("req-%d", i), params))
			var be *backend.Error
			if err != nil && !errors.As(err, &be) {
				b.Fatal(err)
			}
		}
	})
}
