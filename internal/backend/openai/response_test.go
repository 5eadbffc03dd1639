package openai

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/backend/upstreamtest"
)

// wantMessage is the part of a translated Message that a test checks. The
// id is checked separately because it is random.
type wantMessage struct {
	Content      string // JSON array
	StopReason   string
	StopSequence any // nil or a string
	InputTokens  int64
	OutputTokens int64
	CacheRead    int64
}

func TestSendTranslatesReply(t *testing.T) {
	t.Parallel()

	choice := func(message, finish string, extra string) string {
		return `{"id":"chatcmpl-1","object":"chat.completion","model":"local","choices":[{"index":0,` +
			`"message":` + message + `,"finish_reason":"` + finish + `"` + extra + `}],` +
			`"usage":{"prompt_tokens":20,"completion_tokens":7,"total_tokens":27}}`
	}
	const stopParams = `{"model":"claude-x","max_tokens":50,"stop_sequences":["END"],` +
		`"messages":[{"role":"user","content":"x"}]}`

	tests := []struct {
		name   string
		params string // default: a plain text request without stop sequences
		reply  string
		want   wantMessage
	}{
		{
			name:  "text",
			reply: choice(`{"role":"assistant","content":"Hello there."}`, "stop", ""),
			want: wantMessage{
				Content:    `[{"type":"text","text":"Hello there.","citations":null}]`,
				StopReason: "end_turn", InputTokens: 20, OutputTokens: 7,
			},
		},
		{
			name:  "length",
			reply: choice(`{"role":"assistant","content":"Hello th"}`, "length", ""),
			want: wantMessage{
				Content:    `[{"type":"text","text":"Hello th","citations":null}]`,
				StopReason: "max_tokens", InputTokens: 20, OutputTokens: 7,
			},
		},
		{
			name: "tool calls",
			reply: choice(`{"role":"assistant","content":"Let me check.","tool_calls":[`+
				`{"id":"call_abc","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Oslo\"}"}},`+
				`{"id":"chatcmpl-tool-9","type":"function","function":{"name":"noop","arguments":""}}]}`, "tool_calls", ""),
			want: wantMessage{
				Content: `[{"type":"text","text":"Let me check.","citations":null},` +
					`{"type":"tool_use","id":"call_abc","name":"get_weather","input":{"city":"Oslo"},"caller":{"type":"direct"}},` +
					`{"type":"tool_use","id":"chatcmpl-tool-9","name":"noop","input":{},"caller":{"type":"direct"}}]`,
				StopReason: "tool_use", InputTokens: 20, OutputTokens: 7,
			},
		},
		{
			name: "tool call with stop",
			reply: choice(`{"role":"assistant","content":null,"tool_calls":[`+
				`{"id":"call_1","type":"function","function":{"name":"t","arguments":{"a":[1,2]}}}]}`, "stop", ""),
			want: wantMessage{
				Content:    `[{"type":"tool_use","id":"call_1","name":"t","input":{"a":[1,2]},"caller":{"type":"direct"}}]`,
				StopReason: "tool_use", InputTokens: 20, OutputTokens: 7,
			},
		},
		{
			name:  "content filter",
			reply: choice(`{"role":"assistant","content":null,"refusal":"I can't help with that."}`, "content_filter", ""),
			want: wantMessage{
				Content:    `[{"type":"text","text":"I can't help with that.","citations":null}]`,
				StopReason: "refusal", InputTokens: 20, OutputTokens: 7,
			},
		},
		{
			name:   "vLLM stop sequence",
			params: stopParams,
			reply:  choice(`{"role":"assistant","content":"one two"}`, "stop", `,"stop_reason":"END"`),
			want: wantMessage{
				Content:    `[{"type":"text","text":"one two","citations":null}]`,
				StopReason: "stop_sequence", StopSequence: "END", InputTokens: 20, OutputTokens: 7,
			},
		},
		{
			name:   "stop token is not a sequence",
			params: stopParams,
			reply:  choice(`{"role":"assistant","content":"one two"}`, "stop", `,"stop_reason":128001`),
			want: wantMessage{
				Content:    `[{"type":"text","text":"one two","citations":null}]`,
				StopReason: "end_turn", InputTokens: 20, OutputTokens: 7,
			},
		},
		{
			name:   "unreported stop sequence",
			params: stopParams,
			reply:  choice(`{"role":"assistant","content":"one two"}`, "stop", ""),
			want: wantMessage{
				Content:    `[{"type":"text","text":"one two","citations":null}]`,
				StopReason: "end_turn", InputTokens: 20, OutputTokens: 7,
			},
		},
		{
			name: "content parts",
			reply: choice(`{"role":"assistant","content":[{"type":"text","text":"a"},`+
				`{"type":"other"},{"type":"text","text":"b"}]}`, "stop", ""),
			want: wantMessage{
				Content:    `[{"type":"text","text":"ab","citations":null}]`,
				StopReason: "end_turn", InputTokens: 20, OutputTokens: 7,
			},
		},
		{
			name:  "empty answer",
			reply: choice(`{"role":"assistant","content":""}`, "stop", ""),
			want:  wantMessage{Content: `[]`, StopReason: "end_turn", InputTokens: 20, OutputTokens: 7},
		},
		{
			name: "reasoning dropped",
			reply: choice(`{"role":"assistant","content":"42","reasoning_content":"Let me think."}`,
				"stop", ""),
			want: wantMessage{
				Content:    `[{"type":"text","text":"42","citations":null}]`,
				StopReason: "end_turn", InputTokens: 20, OutputTokens: 7,
			},
		},
		{
			name: "cached tokens",
			reply: `{"choices":[{"message":{"content":"hi"},"finish_reason":"stop"}],` +
				`"usage":{"prompt_tokens":100,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":64}}}`,
			want: wantMessage{
				Content:    `[{"type":"text","text":"hi","citations":null}]`,
				StopReason: "end_turn", InputTokens: 36, OutputTokens: 2, CacheRead: 64,
			},
		},
		{
			name:  "no usage",
			reply: `{"choices":[{"message":{"content":"hi"},"finish_reason":null}]}`,
			want: wantMessage{
				Content:    `[{"type":"text","text":"hi","citations":null}]`,
				StopReason: "end_turn",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			params := tt.params
			if params == "" {
				params = `{"model":"claude-x","max_tokens":50,"messages":[{"role":"user","content":"x"}]}`
			}
			server, _ := upstreamtest.Start(t, upstreamtest.Reply(http.StatusOK, nil, tt.reply))
			b := newTestBackend(t, Config{BaseURL: server.URL, ModelMap: map[string]string{"claude-x": "local"}})

			resp, err := b.Send(context.Background(), backend.Request{Params: json.RawMessage(params)})
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			checkValidMessage(t, resp.Message)
			if strings.ContainsAny(string(resp.Message), "\r\n") {
				t.Errorf("Message has a raw line break: %s", resp.Message)
			}

			var got struct {
				ID           string          `json:"id"`
				Type         string          `json:"type"`
				Role         string          `json:"role"`
				Model        string          `json:"model"`
				Content      json.RawMessage `json:"content"`
				StopReason   string          `json:"stop_reason"`
				StopSequence any             `json:"stop_sequence"`
				Usage        struct {
					InputTokens  int64 `json:"input_tokens"`
					OutputTokens int64 `json:"output_tokens"`
					CacheRead    int64 `json:"cache_read_input_tokens"`
					ServiceTier  any   `json:"service_tier"`
				} `json:"usage"`
			}
			if err := json.Unmarshal(resp.Message, &got); err != nil {
				t.Fatalf("decode Message: %v", err)
			}

			if !strings.HasPrefix(got.ID, "msg_") || len(got.ID) < 10 {
				t.Errorf("id = %q, want msg_ and a random suffix", got.ID)
			}
			if got.Type != "message" {
				t.Errorf("type = %q, want message", got.Type)
			}
			if got.Role != "assistant" {
				t.Errorf("role = %q, want assistant", got.Role)
			}
			if got.Model != "claude-x" {
				t.Errorf("model = %q, want the requested claude-x", got.Model)
			}
			if !jsonEqual(t, got.Content, []byte(tt.want.Content)) {
				t.Errorf("content:\ngot  %s\nwant %s", got.Content, tt.want.Content)
			}
			if got.StopReason != tt.want.StopReason {
				t.Errorf("stop_reason = %q, want %q", got.StopReason, tt.want.StopReason)
			}
			if got.StopSequence != tt.want.StopSequence {
				t.Errorf("stop_sequence = %v, want %v", got.StopSequence, tt.want.StopSequence)
			}
			if got.Usage.InputTokens != tt.want.InputTokens {
				t.Errorf("input_tokens = %d, want %d", got.Usage.InputTokens, tt.want.InputTokens)
			}
			if got.Usage.OutputTokens != tt.want.OutputTokens {
				t.Errorf("output_tokens = %d, want %d", got.Usage.OutputTokens, tt.want.OutputTokens)
			}
			if got.Usage.CacheRead != tt.want.CacheRead {
				t.Errorf("cache_read_input_tokens = %d, want %d", got.Usage.CacheRead, tt.want.CacheRead)
			}
			if got.Usage.ServiceTier != "batch" {
				t.Errorf("service_tier = %v, want batch", got.Usage.ServiceTier)
			}
		})
	}
}

func TestSendMessageIDsDiffer(t *testing.T) {
	t.Parallel()

	server, _ := upstreamtest.Start(t, upstreamtest.Reply(http.StatusOK, nil, okReply))
	b := newTestBackend(t, Config{BaseURL: server.URL})
	params := json.RawMessage(`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`)

	seen := make(map[string]bool)
	for range 3 {
		resp, err := b.Send(context.Background(), backend.Request{Params: params})
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
		var msg struct{ ID string }
		if err := json.Unmarshal(resp.Message, &msg); err != nil {
			t.Fatal(err)
		}
		if seen[msg.ID] {
			t.Errorf("id %q was returned twice", msg.ID)
		}
		seen[msg.ID] = true
	}
}

func TestSendReplacesInvalidToolCallID(t *testing.T) {
	t.Parallel()

	reply := `{"choices":[{"message":{"content":null,"tool_calls":[` +
		`{"id":"call.1/x","type":"function","function":{"name":"t","arguments":"{}"}},` +
		`{"type":"function","function":{"name":"t","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}`
	server, _ := upstreamtest.Start(t, upstreamtest.Reply(http.StatusOK, nil, reply))
	b := newTestBackend(t, Config{BaseURL: server.URL})

	resp, err := b.Send(context.Background(), backend.Request{
		Params: json.RawMessage(`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`),
	})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	checkValidMessage(t, resp.Message)

	var msg struct {
		Content []struct{ ID string } `json:"content"`
	}
	if err := json.Unmarshal(resp.Message, &msg); err != nil {
		t.Fatal(err)
	}
	if len(msg.Content) != 2 {
		t.Fatalf("got %d blocks, want 2", len(msg.Content))
	}
	for i, block := range msg.Content {
		if !strings.HasPrefix(block.ID, "toolu_") {
			t.Errorf("block %d id = %q, want a new toolu_ id", i, block.ID)
		}
	}
}

func TestSendMalformedReply(t *testing.T) {
	t.Parallel()

	call := func(arguments string) string {
		return `{"choices":[{"message":{"tool_calls":[{"id":"call_1","type":"function",` +
			`"function":{"name":"t","arguments":` + arguments + `}}]},"finish_reason":"tool_calls"}]}`
	}
	tests := []struct {
		name        string
		reply       string
		wantMessage string
	}{
		{"not JSON", `<html>ok</html>`, "invalid chat completion"},
		{"empty", ``, "invalid chat completion"},
		{"no choices", `{"choices":[]}`, "no choices"},
		{"error in 2xx", `{"error":{"message":"model crashed","type":"server_error"}}`, "model crashed"},
		{"bad content", `{"choices":[{"message":{"content":42},"finish_reason":"stop"}]}`, "content"},
		{"arguments not JSON", call(`"{\"city\": \"Os"`), "not a JSON object"},
		{"arguments an array", call(`"[1,2]"`), "not a JSON object"},
		{"arguments a number", call(`7`), "not a JSON object"},
		{
			"no function name",
			`{"choices":[{"message":{"tool_calls":[{"id":"c","function":{"arguments":"{}"}}]}}]}`,
			"no function name",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			server, _ := upstreamtest.Start(t, upstreamtest.Reply(http.StatusOK, nil, tt.reply))
			b := newTestBackend(t, Config{BaseURL: server.URL})

			e := sendError(t, b, `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`)
			if e.Type != backend.TypeAPI {
				t.Errorf("Type = %q, want api_error", e.Type)
			}
			if !e.Temporary() {
				t.Error("Temporary() = false, want true")
			}
			if e.StatusCode != http.StatusOK {
				t.Errorf("StatusCode = %d, want 200", e.StatusCode)
			}
			if !strings.Contains(e.Message, tt.wantMessage) {
				t.Errorf("Message = %q, want it to contain %q", e.Message, tt.wantMessage)
			}
		})
	}
}
