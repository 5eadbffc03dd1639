package messages_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/messages"
)

const minimalParams = `{"model":"claude-test","max_tokens":100,` +
	`"messages":[{"role":"user","content":"Hello"}]}`

// with returns minimalParams with field set to the raw JSON value, or removed
// when value is empty.
func with(t *testing.T, field, value string) json.RawMessage {
	t.Helper()

	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(minimalParams), &fields); err != nil {
		t.Fatalf("decode minimalParams: %v", err)
	}
	if value == "" {
		delete(fields, field)
	} else {
		fields[field] = json.RawMessage(value)
	}
	out, err := json.Marshal(fields)
	if err != nil {
		t.Fatalf("encode params with %s=%s: %v", field, value, err)
	}
	return out
}

func TestValidateRejects(t *testing.T) {
	t.Parallel()

	userText := func(content string) string {
		return `[{"role":"user","content":` + content + `}]`
	}
	tool := func(def string) string { return `[` + def + `]` }

	tests := []struct {
		name   string
		params json.RawMessage
		want   string
	}{
		{"empty body", json.RawMessage(``), "params: invalid JSON"},
		{"syntax error", json.RawMessage(`{"model":`), "params: invalid JSON"},
		{"array body", json.RawMessage(`[1,2]`), "params: must be a JSON object, got array"},
		{"null body", json.RawMessage(`null`), "params: must be a JSON object, got null"},
		{"trailing garbage", json.RawMessage(minimalParams + `x`), "params: invalid JSON"},

		{"model missing", with(t, "model", ""), "model: field required"},
		{"model number", with(t, "model", `5`), "model: must be a string, got number"},
		{"model null", with(t, "model", `null`), "model: must be a string, got null"},
		{"model empty", with(t, "model", `""`), "model: must not be empty"},

		{"max_tokens missing", with(t, "max_tokens", ""), "max_tokens: field required"},
		{"max_tokens zero", with(t, "max_tokens", `0`),
			"max_tokens: must be at least 1, got 0"},
		{"max_tokens negative", with(t, "max_tokens", `-5`),
			"max_tokens: must be at least 1, got -5"},
		{"max_tokens fraction", with(t, "max_tokens", `1.5`),
			"max_tokens: must be an integer, got 1.5"},
		{"max_tokens string", with(t, "max_tokens", `"100"`),
			"max_tokens: must be an integer, got string"},
		{"max_tokens huge", with(t, "max_tokens", `1e300`),
			"max_tokens: must be at most 2147483647, got 1e300"},
		{"max_tokens beyond float", with(t, "max_tokens", `-1e999`),
			"max_tokens: must be at least 1, got -1e999"},

		{"messages missing", with(t, "messages", ""), "messages: field required"},
		{"messages object", with(t, "messages", `{}`), "messages: must be an array, got object"},
		{"messages empty", with(t, "messages", `[]`),
			"messages: must contain at least one message"},
		{"message not object", with(t, "messages", `["hi"]`),
			"messages.0: must be an object, got string"},
		{"role missing", with(t, "messages", `[{"content":"hi"}]`),
			"messages.0.role: field required"},
		{"role unknown", with(t, "messages",
			`[{"role":"user","content":"a"},{"role":"assistant","content":"b"},`+
				`{"role":"bot","content":"c"}]`),
			`messages.2.role: must be "user", "assistant" or "system", got "bot"`},
		{"content missing", with(t, "messages", `[{"role":"user"}]`),
			"messages.0.content: field required"},
		{"content number", with(t, "messages", userText(`5`)),
			"messages.0.content: must be a string or an array of content blocks, got number"},
		{"block not object", with(t, "messages", userText(`["hi"]`)),
			"messages.0.content.0: must be an object, got string"},
		{"block type missing", with(t, "messages", userText(`[{"text":"hi"}]`)),
			"messages.0.content.0.type: field required"},
		{"block type number", with(t, "messages", userText(`[{"type":1}]`)),
			"messages.0.content.0.type: must be a string, got number"},
		{"text block without text", with(t, "messages", userText(`[{"type":"text"}]`)),
			"messages.0.content.0.text: field required"},
		{"image without source", with(t, "messages", userText(`[{"type":"image"}]`)),
			"messages.0.content.0.source: field required"},
		{"image base64 without data", with(t, "messages",
			userText(`[{"type":"image","source":{"type":"base64","media_type":"image/png"}}]`)),
			"messages.0.content.0.source.data: field required"},
		{"image source unknown", with(t, "messages",
			userText(`[{"type":"image","source":{"type":"ftp"}}]`)),
			`messages.0.content.0.source.type: must be "base64", "url" or "file", got "ftp"`},
		{"tool_use input not object", with(t, "messages",
			`[{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f",`+
				`"input":[]}]}]`),
			"messages.0.content.0.input: must be an object, got array"},
		{"tool_result without id", with(t, "messages",
			userText(`[{"type":"tool_result","content":"x"}]`)),
			"messages.0.content.0.tool_use_id: field required"},
		{"tool_result is_error string", with(t, "messages",
			userText(`[{"type":"tool_result","tool_use_id":"t1","is_error":"yes"}]`)),
			"messages.0.content.0.is_error: must be a boolean, got string"},
		{"tool_result nested", with(t, "messages",
			userText(`[{"type":"tool_result","tool_use_id":"t1","content":`+
				`[{"type":"tool_result","tool_use_id":"t2"}]}]`)),
			"messages.0.content.0.content.0.type: a tool_result block cannot contain " +
				"another tool_result block"},
		{"thinking without signature", with(t, "messages",
			`[{"role":"assistant","content":[{"type":"thinking","thinking":"x"}]}]`),
			"messages.0.content.0.signature: field required"},
		{"system message with image", with(t, "messages",
			`[{"role":"system","content":[{"type":"image","source":{"type":"url","url":"u"}}]}]`),
			`messages.0.content.0.type: must be "text", got "image"`},

		{"stream true", with(t, "stream", `true`), "stream: streaming is not supported in batches"},
		{"stream string", with(t, "stream", `"no"`), "stream: must be a boolean, got string"},

		{"system number", with(t, "system", `1`),
			"system: must be a string or an array of text blocks, got number"},
		{"system image block", with(t, "system", `[{"type":"image","source":{}}]`),
			"system.0.source.type: field required"},
		{"system non-text block", with(t, "system", `[{"type":"document_x"}]`),
			`system.0.type: must be "text", got "document_x"`},

		{"stop_sequences string", with(t, "stop_sequences", `"END"`),
			"stop_sequences: must be an array, got string"},
		{"stop_sequences number item", with(t, "stop_sequences", `["a",2]`),
			"stop_sequences.1: must be a string, got number"},

		{"tools object", with(t, "tools", `{}`), "tools: must be an array, got object"},
		{"tool not object", with(t, "tools", `[1]`), "tools.0: must be an object, got number"},
		{"tool without name", with(t, "tools", tool(`{"input_schema":{"type":"object"}}`)),
			"tools.0.name: field required"},
		{"tool name with space", with(t, "tools",
			tool(`{"name":"get weather","input_schema":{"type":"object"}}`)),
			`tools.0.name: "get weather" contains ' '; only letters, digits, '_' and '-' ` +
				`are allowed`},
		{"tool without schema", with(t, "tools", tool(`{"name":"f"}`)),
			"tools.0.input_schema: field required"},
		{"tool schema not object", with(t, "tools", tool(`{"name":"f","input_schema":"x"}`)),
			"tools.0.input_schema: must be an object, got string"},
		{"tool schema type array", with(t, "tools",
			tool(`{"name":"f","input_schema":{"type":"array"}}`)),
			`tools.0.input_schema.type: must be "object", got "array"`},
		{"tool schema required not strings", with(t, "tools",
			tool(`{"name":"f","input_schema":{"type":"object","required":[1]}}`)),
			"tools.0.input_schema.required.0: must be a string, got number"},
		{"custom tool type", with(t, "tools",
			tool(`{"type":"custom","name":"f","input_schema":{}}`)),
			"tools.0.input_schema.type: field required"},
		{"server tool name number", with(t, "tools",
			tool(`{"type":"web_search_20250305","name":5}`)),
			"tools.0.name: must be a string, got number"},
		{"duplicate tool names", with(t, "tools",
			`[{"name":"f","input_schema":{"type":"object"}},`+
				`{"name":"f","input_schema":{"type":"object"}}]`),
			`tools.1.name: tool name "f" is already used by tools.0`},

		{"tool_choice string", with(t, "tool_choice", `"auto"`),
			"tool_choice: must be an object, got string"},
		{"tool_choice unknown type", with(t, "tool_choice", `{"type":"some"}`),
			`tool_choice.type: must be "auto", "any", "tool" or "none", got "some"`},
		{"tool_choice tool without name", with(t, "tool_choice", `{"type":"tool"}`),
			"tool_choice.name: field required"},
		{"tool_choice parallel string", with(t, "tool_choice",
			`{"type":"auto","disable_parallel_tool_use":"yes"}`),
			"tool_choice.disable_parallel_tool_use: must be a boolean, got string"},

		{"thinking without budget", with(t, "thinking", `{"type":"enabled"}`),
			"thinking.budget_tokens: field required"},
		{"thinking small budget", with(t, "thinking", `{"type":"enabled","budget_tokens":512}`),
			"thinking.budget_tokens: must be at least 1024, got 512"},
		{"thinking budget over max_tokens", with(t, "thinking",
			`{"type":"enabled","budget_tokens":2048}`),
			"thinking.budget_tokens: must be less than max_tokens (100), got 2048"},
		{"thinking unknown type", with(t, "thinking", `{"type":"deep"}`),
			`thinking.type: must be "enabled", "disabled", "adaptive" or "between_tools", ` +
				`got "deep"`},
		{"thinking display unknown", with(t, "thinking", `{"type":"adaptive","display":"all"}`),
			`thinking.display: must be "summarized" or "omitted", got "all"`},

		{"temperature high", with(t, "temperature", `1.5`),
			"temperature: must be between 0 and 1, got 1.5"},
		{"temperature negative", with(t, "temperature", `-0.1`),
			"temperature: must be between 0 and 1, got -0.1"},
		{"temperature string", with(t, "temperature", `"hot"`),
			"temperature: must be a number, got string"},
		{"top_p high", with(t, "top_p", `2`), "top_p: must be between 0 and 1, got 2"},
		{"top_k negative", with(t, "top_k", `-1`), "top_k: must be at least 0, got -1"},
		{"top_k fraction", with(t, "top_k", `2.5`), "top_k: must be an integer, got 2.5"},

		{"metadata array", with(t, "metadata", `[]`), "metadata: must be an object, got array"},
		{"metadata user_id number", with(t, "metadata", `{"user_id":5}`),
			"metadata.user_id: must be a string, got number"},
		{"metadata user_id long", with(t, "metadata",
			`{"user_id":"`+strings.Repeat("u", 513)+`"}`),
			"metadata.user_id: must be at most 512 characters long, got 513"},
		{"service_tier number", with(t, "service_tier", `1`),
			"service_tier: must be a string, got number"},
		{"output_config format string", with(t, "output_config", `{"format":"json"}`),
			"output_config.format: must be an object, got string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			err := messages.Validate(tt.params)
			if err == nil {
				t.Fatalf("Validate(%s) = nil, want error %q", tt.params, tt.want)
			}

			var be *backend.Error
			if !errors.As(err, &be) {
				t.Fatalf("Validate error %v is a %T, want *backend.Error", err, err)
			}
			if be.Type != backend.TypeInvalidRequest {
				t.Errorf("error type = %q, want %q", be.Type, backend.TypeInvalidRequest)
			}
			if be.StatusCode != http.StatusBadRequest {
				t.Errorf("status code = %d, want %d", be.StatusCode, http.StatusBadRequest)
			}
			if !strings.HasPrefix(be.Message, tt.want) {
				t.Errorf("error message = %q, want prefix %q", be.Message, tt.want)
			}

			if _, perr := messages.Parse(tt.params); perr == nil {
				t.Errorf("Parse(%s) = nil error, want the error Validate returned", tt.params)
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name   string
		params json.RawMessage
	}{
		{"minimal", json.RawMessage(minimalParams)},
		{"white space around body", json.RawMessage(" \n" + minimalParams + "\n")},
		{"stream false", with(t, "stream", `false`)},
		{"optional fields null", with(t, "system", `null`)},
		{"unknown top-level field", with(t, "future_option", `{"x":[1,2,3]}`)},
		{"max_tokens as 1024.0", with(t, "max_tokens", `1024.0`)},
		{"max_tokens as 1e3", with(t, "max_tokens", `1e3`)},
		{"system string", with(t, "system", `"Be brief."`)},
		{"system blocks", with(t, "system",
			`[{"type":"text","text":"A","cache_control":{"type":"ephemeral"}},`+
				`{"type":"text","text":"B"}]`)},
		{"all block kinds", with(t, "messages", `[
			{"role":"user","content":[
				{"type":"text","text":"look","citations":null},
				{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA=="}},
				{"type":"image","source":{"type":"url","url":"https://example.com/a.png"}},
				{"type":"image","source":{"type":"file","file_id":"file_1"}},
				{"type":"document","source":{"type":"text","media_type":"text/plain","data":"d"}},
				{"type":"document","source":{"type":"content","content":[{"type":"text","text":"c"}]}},
				{"type":"search_result","source":"s","title":"t","content":[]},
				{"type":"future_block","anything":{"goes":true}}]},
			{"role":"assistant","content":[
				{"type":"thinking","thinking":"hmm","signature":"sig"},
				{"type":"redacted_thinking","data":"opaque"},
				{"type":"tool_use","id":"toolu_1","name":"f","input":{"a":1}},
				{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{}}]},
			{"role":"user","content":[
				{"type":"tool_result","tool_use_id":"toolu_1","content":"42","is_error":false},
				{"type":"tool_result","tool_use_id":"toolu_2",
				 "content":[{"type":"text","text":"x"},{"type":"image","source":{"type":"url","url":"u"}}]},
				{"type":"tool_result","tool_use_id":"toolu_3"}]},
			{"role":"system","content":"mid-conversation instruction"},
			{"role":"assistant","content":"prefill"}]`)},
		{"custom and server tools", with(t, "tools", `[
			{"name":"get_weather","description":"d","input_schema":{"type":"object",
				"properties":{"city":{"type":"string"}},"required":["city"]},"strict":true},
			{"type":"custom","name":"other-tool","input_schema":{"type":"object"}},
			{"type":"web_search_20250305","name":"web_search","max_uses":5},
			{"type":"browser_toolset_20260801"}]`)},
		{"tool_choice tool", with(t, "tool_choice",
			`{"type":"tool","name":"x","disable_parallel_tool_use":true}`)},
		{"thinking adaptive", with(t, "thinking", `{"type":"adaptive","display":"summarized"}`)},
		{"thinking disabled", with(t, "thinking", `{"type":"disabled"}`)},
		{"temperature bounds", with(t, "temperature", `0`)},
		{"top_p one", with(t, "top_p", `1`)},
		{"top_k zero", with(t, "top_k", `0`)},
		{"metadata", with(t, "metadata", `{"user_id":"13803d75-b4b5-4c3e-b2a2-6f21399b021b"}`)},
		{"output_config", with(t, "output_config",
			`{"effort":"low","format":{"type":"json_schema","schema":{"type":"object"}}}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			if err := messages.Validate(tt.params); err != nil {
				t.Errorf("Validate(%s) = %v, want nil", tt.params, err)
			}
		})
	}
}

func TestValidateThinkingBudgetNeedsMaxTokens(t *testing.T) {
	t.Parallel()

	params := json.RawMessage(`{"model":"m","max_tokens":2048,` +
		`"thinking":{"type":"enabled","budget_tokens":1024},` +
		`"messages":[{"role":"user","content":"hi"}]}`)
	if err := messages.Validate(params); err != nil {
		t.Errorf("Validate(budget 1024 < max_tokens 2048) = %v, want nil", err)
	}

	params = json.RawMessage(`{"model":"m","max_tokens":1024,` +
		`"thinking":{"type":"enabled","budget_tokens":1024},` +
		`"messages":[{"role":"user","content":"hi"}]}`)
	if err := messages.Validate(params); err == nil {
		t.Error("Validate(budget 1024 = max_tokens 1024) = nil, want error")
	}
}

// TestValidateKeysAreCaseSensitive checks that field names match exactly, as
// in the API, where "Model" is an unknown field and not the model.
func TestValidateKeysAreCaseSensitive(t *testing.T) {
	t.Parallel()

	params := json.RawMessage(`{"Model":"m","max_tokens":5,` +
		`"messages":[{"role":"user","content":"hi"}]}`)
	err := messages.Validate(params)
	if err == nil || !strings.Contains(err.Error(), "model: field required") {
		t.Errorf("Validate(%s) = %v, want model: field required", params, err)
	}
}

func TestParseReadsEscapedKeysAndDuplicates(t *testing.T) {
	t.Parallel()

	// "mod\u0065l" is "model" spelt with an escape, and the second
	// max_tokens wins, as with encoding/json.
	params := json.RawMessage(`{"mod\u0065l":"m","max_tokens":0,"max_tokens":7,` +
		`"messages":[{"role":"user","content":"hi"}]}`)
	req, err := messages.Parse(params)
	if err != nil {
		t.Fatalf("Parse(%s): %v", params, err)
	}
	if req.Model != "m" {
		t.Errorf("Model = %q, want %q", req.Model, "m")
	}
	if req.MaxTokens != 7 {
		t.Errorf("MaxTokens = %d, want the last value 7", req.MaxTokens)
	}
}
