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

// okReply is a minimal chat completion.
const okReply = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m",` +
	`"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],` +
	`"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`

func TestSendTranslatesRequest(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name   string
		params string
		want   string
	}{
		{
			name:   "text",
			params: `{"model":"claude-x","max_tokens":100,"system":"Be brief.","messages":[{"role":"user","content":"Hi"}]}`,
			want: `{"model":"upstream-x","max_tokens":100,"messages":[` +
				`{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}]}`,
		},
		{
			name: "system blocks",
			params: `{"model":"m","max_tokens":5,"system":[{"type":"text","text":"One.",` +
				`"cache_control":{"type":"ephemeral"}},{"type":"text","text":"Two."}],` +
				`"messages":[{"role":"user","content":[{"type":"text","text":"Hi"}]}]}`,
			want: `{"model":"m","max_tokens":5,"messages":[` +
				`{"role":"system","content":"One.\n\nTwo."},{"role":"user","content":"Hi"}]}`,
		},
		{
			name: "sampling",
			params: `{"model":"m","max_tokens":5,"temperature":0,"top_p":0.9,"top_k":40,` +
				`"stop_sequences":["END","###"],"messages":[{"role":"user","content":"Hi"}]}`,
			want: `{"model":"m","max_tokens":5,"temperature":0,"top_p":0.9,"top_k":40,` +
				`"stop":["END","###"],"messages":[{"role":"user","content":"Hi"}]}`,
		},
		{
			name: "images",
			params: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[` +
				`{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},` +
				`{"type":"image","source":{"type":"url","url":"https://example.test/cat.jpg"}},` +
				`{"type":"text","text":"Compare them."}]}]}`,
			want: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[` +
				`{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}},` +
				`{"type":"image_url","image_url":{"url":"https://example.test/cat.jpg"}},` +
				`{"type":"text","text":"Compare them."}]}]}`,
		},
		{
			name: "several text blocks",
			params: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[` +
				`{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}`,
			want: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[` +
				`{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}`,
		},
		{
			name: "tools and auto choice",
			params: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"Weather?"}],` +
				`"tools":[{"name":"get_weather","description":"Get the weather","strict":true,` +
				`"input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}},` +
				`{"type":"custom","name":"noop","input_schema":{"type":"object"}}],` +
				`"tool_choice":{"type":"auto","disable_parallel_tool_use":true}}`,
			want: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"Weather?"}],` +
				`"tools":[{"type":"function","function":{"name":"get_weather","description":"Get the weather",` +
				`"parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},` +
				`{"type":"function","function":{"name":"noop","parameters":{"type":"object"}}}],` +
				`"tool_choice":"auto","parallel_tool_calls":false}`,
		},
		{
			name: "any choice",
			params: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],` +
				`"tools":[{"name":"t","input_schema":{"type":"object"}}],"tool_choice":{"type":"any"}}`,
			want: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],` +
				`"tools":[{"type":"function","function":{"name":"t","parameters":{"type":"object"}}}],` +
				`"tool_choice":"required"}`,
		},
		{
			name: "named tool choice",
			params: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],` +
				`"tools":[{"name":"t","input_schema":{"type":"object"}}],"tool_choice":{"type":"tool","name":"t"}}`,
			want: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],` +
				`"tools":[{"type":"function","function":{"name":"t","parameters":{"type":"object"}}}],` +
				`"tool_choice":{"type":"function","function":{"name":"t"}}}`,
		},
		{
			name: "none choice",
			params: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],` +
				`"tools":[{"name":"t","input_schema":{"type":"object"}}],"tool_choice":{"type":"none"}}`,
			want: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],` +
				`"tools":[{"type":"function","function":{"name":"t","parameters":{"type":"object"}}}],` +
				`"tool_choice":"none"}`,
		},
		{
			name: "choice without tools",
			params: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],` +
				`"tool_choice":{"type":"auto","disable_parallel_tool_use":true}}`,
			want: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`,
		},
		{
			name: "tool conversation",
			params: `{"model":"m","max_tokens":5,"messages":[` +
				`{"role":"user","content":"Weather in Oslo and Rome?"},` +
				`{"role":"assistant","content":[` +
				`{"type":"thinking","thinking":"Two calls.","signature":"sig"},` +
				`{"type":"text","text":"Checking "},{"type":"text","text":"both."},` +
				`{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city": "Oslo"}},` +
				`{"type":"tool_use","id":"toolu_2","name":"get_weather","input":{"city":"Rome"}}]},` +
				`{"role":"user","content":[` +
				`{"type":"tool_result","tool_use_id":"toolu_1","content":"-3 C"},` +
				`{"type":"tool_result","tool_use_id":"toolu_2","is_error":true,` +
				`"content":[{"type":"text","text":"timeout"},{"type":"text","text":"retry later"}]},` +
				`{"type":"text","text":"Summarize."}]}]}`,
			want: `{"model":"m","max_tokens":5,"messages":[` +
				`{"role":"user","content":"Weather in Oslo and Rome?"},` +
				`{"role":"assistant","content":"Checking both.","tool_calls":[` +
				`{"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}},` +
				`{"id":"toolu_2","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Rome\"}"}}]},` +
				`{"role":"tool","tool_call_id":"toolu_1","content":"-3 C"},` +
				`{"role":"tool","tool_call_id":"toolu_2","content":"Error: timeout\n\nretry later"},` +
				`{"role":"user","content":"Summarize."}]}`,
		},
		{
			name: "tool call without text",
			params: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"},` +
				`{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"t","input":{}}]},` +
				`{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1"}]}]}`,
			want: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"},` +
				`{"role":"assistant","content":null,"tool_calls":[` +
				`{"id":"toolu_1","type":"function","function":{"name":"t","arguments":"{}"}}]},` +
				`{"role":"tool","tool_call_id":"toolu_1","content":""}]}`,
		},
		{
			name: "conversation and system turn",
			params: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"a"},` +
				`{"role":"assistant","content":"b"},{"role":"system","content":"Now answer in French."},` +
				`{"role":"user","content":"c"}]}`,
			want: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"a"},` +
				`{"role":"assistant","content":"b"},{"role":"system","content":"Now answer in French."},` +
				`{"role":"user","content":"c"}]}`,
		},
		{
			name: "structured output",
			params: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],` +
				`"output_config":{"effort":"low","format":{"type":"json_schema","schema":{"type":"object"}}}}`,
			want: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],` +
				`"reasoning_effort":"low",` +
				`"response_format":{"type":"json_schema","json_schema":{"name":"output","schema":{"type":"object"}}}}`,
		},
		{
			name: "beta output format",
			params: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],` +
				`"output_format":{"type":"json_schema","schema":{"type":"object"}}}`,
			want: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],` +
				`"response_format":{"type":"json_schema","json_schema":{"name":"output","schema":{"type":"object"}}}}`,
		},
		{
			name: "ignored fields",
			params: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],` +
				`"metadata":{"user_id":"u1"},"service_tier":"auto","stream":false,"speed":"standard",` +
				`"cache_control":{"type":"ephemeral"},"inference_geo":"us","container":null,` +
				`"thinking":{"type":"disabled"}}`,
			want: `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			server, requests := upstreamtest.Start(t, upstreamtest.Reply(http.StatusOK, nil, okReply))
			b := newTestBackend(t, Config{
				BaseURL:  server.URL,
				ModelMap: map[string]string{"claude-x": "upstream-x"},
			})

			_, err := b.Send(context.Background(), backend.Request{Params: json.RawMessage(tt.params)})
			if err != nil {
				t.Fatalf("Send: %v", err)
			}

			got := requests()
			if len(got) != 1 {
				t.Fatalf("upstream received %d requests, want 1", len(got))
			}
			if !jsonEqual(t, got[0].Body, []byte(tt.want)) {
				t.Errorf("chat request:\ngot  %s\nwant %s", got[0].Body, tt.want)
			}
		})
	}
}

func TestSendRejectsUntranslatable(t *testing.T) {
	t.Parallel()

	const user = `{"role":"user","content":"x"}`
	tests := []struct {
		name     string
		params   string
		wantPath string
	}{
		{
			"document block",
			`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"document",` +
				`"source":{"type":"text","media_type":"text/plain","data":"doc"}}]}]}`,
			"messages.0.content.0",
		},
		{
			"search result block",
			`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"search_result",` +
				`"source":"s","title":"t","content":[{"type":"text","text":"x"}]}]}]}`,
			"messages.0.content.0",
		},
		{
			"image file source",
			`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image",` +
				`"source":{"type":"file","file_id":"file_1"}}]}]}`,
			"messages.0.content.0.source",
		},
		{
			"enabled thinking",
			`{"model":"m","max_tokens":2000,"thinking":{"type":"enabled","budget_tokens":1024},"messages":[` + user + `]}`,
			"thinking",
		},
		{
			"adaptive thinking",
			`{"model":"m","max_tokens":5,"thinking":{"type":"adaptive"},"messages":[` + user + `]}`,
			"thinking",
		},
		{
			"server tool",
			`{"model":"m","max_tokens":5,"messages":[` + user + `],` +
				`"tools":[{"type":"web_search_20250305","name":"web_search","max_uses":3}]}`,
			"tools.0",
		},
		{
			"citations in text",
			`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"x",` +
				`"citations":[{"type":"char_location","cited_text":"c","document_index":0,` +
				`"start_char_index":0,"end_char_index":1}]}]}]}`,
			"messages.0.content.0.citations",
		},
		{
			"citations in system",
			`{"model":"m","max_tokens":5,"messages":[` + user + `],"system":[{"type":"text","text":"s",` +
				`"citations":[{"type":"char_location","cited_text":"c","document_index":0,` +
				`"start_char_index":0,"end_char_index":1}]}]}`,
			"system.0.citations",
		},
		{"container", `{"model":"m","max_tokens":5,"messages":[` + user + `],"container":"c_1"}`, "container"},
		{
			"mcp servers",
			`{"model":"m","max_tokens":5,"messages":[` + user + `],` +
				`"mcp_servers":[{"type":"url","url":"https://example.test","name":"x"}]}`,
			"mcp_servers",
		},
		{"unknown field", `{"model":"m","max_tokens":5,"messages":[` + user + `],"frobnicate":1}`, "frobnicate"},
		{
			"prefill",
			`{"model":"m","max_tokens":5,"messages":[` + user + `,{"role":"assistant","content":"{"}]}`,
			"messages.1",
		},
		{
			"image in tool result",
			`{"model":"m","max_tokens":5,"messages":[` + user + `,` +
				`{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"t","input":{}}]},` +
				`{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[` +
				`{"type":"image","source":{"type":"url","url":"https://example.test/a.png"}}]}]}]}`,
			"messages.2.content.0.content.0",
		},
		{
			"server tool use block",
			`{"model":"m","max_tokens":5,"messages":[` + user + `,{"role":"assistant","content":[` +
				`{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{"query":"q"}}]},` + user + `]}`,
			"messages.1.content.0",
		},
		{
			"tool use in user message",
			`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[` +
				`{"type":"tool_use","id":"toolu_1","name":"t","input":{}}]}]}`,
			"messages.0.content.0",
		},
		{
			"effort without equivalent",
			`{"model":"m","max_tokens":5,"messages":[` + user + `],"output_config":{"effort":"max"}}`,
			"output_config.effort",
		},
		{
			"invalid params",
			`{"model":"m","max_tokens":0,"messages":[` + user + `]}`,
			"max_tokens",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			server, requests := upstreamtest.Start(t, upstreamtest.Reply(http.StatusOK, nil, okReply))
			b := newTestBackend(t, Config{BaseURL: server.URL})

			e := sendError(t, b, tt.params)
			if e.Type != backend.TypeInvalidRequest {
				t.Errorf("Type = %q, want invalid_request_error", e.Type)
			}
			if !strings.HasPrefix(e.Message, tt.wantPath+":") {
				t.Errorf("Message = %q, want it to start with %q", e.Message, tt.wantPath+":")
			}
			if e.StatusCode != 0 {
				t.Errorf("StatusCode = %d, want 0 since no server answered", e.StatusCode)
			}
			if e.Temporary() {
				t.Error("Temporary() = true, want false")
			}
			if n := len(requests()); n != 0 {
				t.Errorf("upstream received %d requests, want 0", n)
			}
		})
	}
}

func TestSendRequestHeaders(t *testing.T) {
	t.Parallel()

	params := json.RawMessage(`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`)

	server, requests := upstreamtest.Start(t, upstreamtest.Reply(http.StatusOK, nil, okReply))
	withKey := newTestBackend(t, Config{BaseURL: server.URL + "/prefix/", APIKey: "sk-local"})
	withoutKey := newTestBackend(t, Config{BaseURL: server.URL})

	for _, b := range []*Backend{withKey, withoutKey} {
		if _, err := b.Send(context.Background(), backend.Request{Params: params}); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}

	got := requests()
	if len(got) != 2 {
		t.Fatalf("upstream received %d requests, want 2", len(got))
	}
	if got[0].Method != http.MethodPost {
		t.Errorf("method = %s, want POST", got[0].Method)
	}
	if got[0].Path != "/prefix/v1/chat/completions" {
		t.Errorf("path = %s, want /prefix/v1/chat/completions", got[0].Path)
	}
	if v := got[0].Header.Get("Authorization"); v != "Bearer sk-local" {
		t.Errorf("Authorization = %q, want %q", v, "Bearer sk-local")
	}
	if v := got[0].Header.Get("Content-Type"); v != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", v)
	}
	if got[1].Path != "/v1/chat/completions" {
		t.Errorf("path = %s, want /v1/chat/completions", got[1].Path)
	}
	if v := got[1].Header.Values("Authorization"); len(v) != 0 {
		t.Errorf("Authorization = %q, want none without a key", v)
	}
}

func TestSendUsesRequestModelForMapping(t *testing.T) {
	t.Parallel()

	server, requests := upstreamtest.Start(t, upstreamtest.Reply(http.StatusOK, nil, okReply))
	modelMap := map[string]string{"claude-a": "local-a"}
	b := newTestBackend(t, Config{BaseURL: server.URL, ModelMap: modelMap})
	modelMap["claude-a"] = "changed after New"

	resp, err := b.Send(context.Background(), backend.Request{
		Params: json.RawMessage(`{"model":"claude-a","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`),
		Model:  "claude-a",
	})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}

	var sent struct{ Model string }
	if err := json.Unmarshal(requests()[0].Body, &sent); err != nil {
		t.Fatal(err)
	}
	if sent.Model != "local-a" {
		t.Errorf("upstream model = %q, want local-a", sent.Model)
	}

	var msg struct{ Model string }
	if err := json.Unmarshal(resp.Message, &msg); err != nil {
		t.Fatal(err)
	}
	if msg.Model != "claude-a" {
		t.Errorf("Message model = %q, want the requested claude-a", msg.Model)
	}
}
