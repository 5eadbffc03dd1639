package messages_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/batchd/batchd/internal/messages"
	"github.com/batchd/batchd/internal/messages/messagestest"
)

func TestMessageMatchesSchema(t *testing.T) {
	t.Parallel()

	text := messages.NewMessage("msg_01", "claude-test")
	text.Content = append(text.Content, messages.TextBlock("Hello \"world\"\n\u2028<&>"))
	text.StopReason = messages.StopEndTurn
	text.Usage.InputTokens = 10
	text.Usage.OutputTokens = 3

	tools := messages.NewMessage("msg_02", "claude-test")
	tools.Content = append(tools.Content,
		messages.ThinkingBlock("Let me think.", "c2lnbmF0dXJl"),
		messages.TextBlock("Calling a tool."),
		messages.ToolUseBlock("toolu_01", "get_weather",
			json.RawMessage("{\n  \"city\": \"Paris\"\n}")),
	)
	tools.StopReason = messages.StopToolUse
	tools.Usage.OutputTokensDetails = &messages.OutputTokensDetails{ThinkingTokens: 4}

	stopped := messages.NewMessage("msg_03", "claude-test")
	stopped.Content = append(stopped.Content, messages.TextBlock("cut"))
	stopped.StopReason = messages.StopSequence
	stopped.StopSequence = "END"

	refused := messages.NewMessage("msg_04", "claude-test")
	refused.StopReason = messages.StopRefusal
	refused.StopDetails = &messages.StopDetails{Type: "refusal", Explanation: "declined"}
	refused.Usage.CacheCreation = &messages.CacheCreation{Ephemeral5mInputTokens: 2}
	refused.Usage.ServerToolUse = &messages.ServerToolUsage{WebSearchRequests: 1}
	refused.Usage.InferenceGeo = "global"
	refused.Usage.Speed = "standard"
	refused.Container = &messages.Container{ID: "container_1",
		ExpiresAt: "2026-01-02T03:04:05Z"}

	zero := messages.Message{ID: "msg_05", Model: "m", StopReason: messages.StopMaxTokens}

	tests := []struct {
		name string
		msg  messages.Message
	}{
		{"text", text},
		{"thinking and tool_use", tools},
		{"stop sequence", stopped},
		{"refusal with every object", refused},
		{"zero value defaults", zero},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			body, err := json.Marshal(tt.msg)
			if err != nil {
				t.Fatalf("json.Marshal: %v", err)
			}
			if err := messagestest.ValidateJSON(t, "Message", body); err != nil {
				t.Errorf("Message %s does not match the schema: %v", body, err)
			}
			if strings.ContainsAny(string(body), "\n\r") {
				t.Errorf("Message %s contains a line break", body)
			}
		})
	}
}

func TestMessageEncodesEveryField(t *testing.T) {
	t.Parallel()

	msg := messages.NewMessage("msg_01", "claude-test")
	msg.Content = append(msg.Content, messages.TextBlock("hi"))
	msg.StopReason = messages.StopEndTurn
	body, err := json.Marshal(msg)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}

	want := `{"id":"msg_01","type":"message","role":"assistant","model":"claude-test",` +
		`"content":[{"type":"text","text":"hi","citations":null}],` +
		`"stop_reason":"end_turn","stop_sequence":null,"stop_details":null,` +
		`"container":null,"diagnostics":null,"usage":{"input_tokens":0,` +
		`"output_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,` +
		`"cache_creation":null,"server_tool_use":null,"service_tier":"batch",` +
		`"inference_geo":null,"output_tokens_details":null,"speed":null}}`
	if string(body) != want {
		t.Errorf("json.Marshal(msg)\n got %s\nwant %s", body, want)
	}
}

func TestMessageRoundTrip(t *testing.T) {
	t.Parallel()

	msg := messages.NewMessage("msg_01", "claude-test")
	msg.Content = append(msg.Content,
		messages.ThinkingBlock("hmm", "sig"),
		messages.TextBlock("text"),
		messages.ToolUseBlock("toolu_1", "tool", json.RawMessage(`{"a":[1,2]}`)),
		messages.ContentBlock{Type: "redacted_thinking", Data: "opaque"},
		messages.ContentBlock{Type: "web_search_tool_result",
			Raw: json.RawMessage(`{"type":"web_search_tool_result","tool_use_id":"srvtoolu_1",` +
				`"content":[]}`)},
	)
	msg.StopReason = messages.StopToolUse
	msg.StopSequence = ""
	msg.Usage.InputTokens = 7

	first, err := json.Marshal(msg)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	var decoded messages.Message
	if err := json.Unmarshal(first, &decoded); err != nil {
		t.Fatalf("json.Unmarshal: %v", err)
	}
	second, err := json.Marshal(decoded)
	if err != nil {
		t.Fatalf("json.Marshal after decode: %v", err)
	}

	if string(first) != string(second) {
		t.Errorf("round trip changed the encoding\n got %s\nwant %s", second, first)
	}
	if got, want := decoded.Content[2].Name, "tool"; got != want {
		t.Errorf("decoded tool_use name = %q, want %q", got, want)
	}
	if got, want := decoded.Content[4].Type, "web_search_tool_result"; got != want {
		t.Errorf("decoded unknown block type = %q, want %q", got, want)
	}
}

func TestMessageRejectsInvalidRawJSON(t *testing.T) {
	t.Parallel()

	msg := messages.NewMessage("msg_01", "m")
	msg.Content = append(msg.Content,
		messages.ToolUseBlock("toolu_1", "tool", json.RawMessage(`{"a":`)))
	if _, err := json.Marshal(msg); err == nil {
		t.Error("json.Marshal with truncated tool input: got nil error, want one")
	}

	unknown := messages.NewMessage("msg_02", "m")
	unknown.Content = append(unknown.Content, messages.ContentBlock{Type: "mystery"})
	if _, err := json.Marshal(unknown); err == nil {
		t.Error("json.Marshal with an unknown block without Raw: got nil error, want one")
	}
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	t.Parallel()

	inputs := []string{
		"", "plain", "quote\" backslash\\ slash/", "tab\tnewline\ncr\r",
		"\x00\x01\x1f\x7f", "caf\u00e9 \u65e5\u672c", "\u2028\u2029", "bad \xff utf8 \xc3",
		"emoji \U0001F600",
	}
	for _, in := range inputs {
		msg := messages.Message{Content: []messages.ContentBlock{messages.TextBlock(in)}}
		body, err := msg.AppendJSON(nil)
		if err != nil {
			t.Fatalf("AppendJSON(%q): %v", in, err)
		}

		var decoded messages.Message
		if err := json.Unmarshal(body, &decoded); err != nil {
			t.Fatalf("decode AppendJSON(%q) output %s: %v", in, body, err)
		}
		var want string
		if err := json.Unmarshal(mustMarshal(t, in), &want); err != nil {
			t.Fatalf("decode json.Marshal(%q): %v", in, err)
		}
		if got := decoded.Content[0].Text; got != want {
			t.Errorf("text %q decoded as %q, want %q", in, got, want)
		}
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json.Marshal(%v): %v", v, err)
	}
	return b
}

// TestSchemaCheckRejectsOldShape makes sure the schema check can fail: the
// minimal message of older API docs lacks fields that the current schema
// requires, such as stop_details and usage.service_tier.
func TestSchemaCheckRejectsOldShape(t *testing.T) {
	t.Parallel()

	old := `{"id":"msg_1","type":"message","role":"assistant","model":"m",` +
		`"content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn",` +
		`"stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":1}}`
	if err := messagestest.ValidateJSON(t, "Message", []byte(old)); err == nil {
		t.Error("ValidateJSON(old minimal message) = nil, want a schema violation")
	}
}
