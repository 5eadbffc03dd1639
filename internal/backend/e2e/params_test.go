package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/engine"
)

// capturedRequest is a batch create request that the official Go SDK 2.17.0
// sent, as stored in the anthropic backend's testdata: its headers and the
// params of its single batch request, byte for byte.
type capturedRequest struct {
	header http.Header
	params json.RawMessage
}

// loadCapturedRequest reads a testdata file of the anthropic backend: a
// request line, headers written as "Name: [value]", a blank line and the
// JSON body.
func loadCapturedRequest(t *testing.T, name string) capturedRequest {
	t.Helper()

	raw, err := os.ReadFile("../anthropic/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	head, body, ok := bytes.Cut(raw, []byte("\n\n"))
	if !ok {
		t.Fatalf("%s: no blank line between the headers and the body", name)
	}

	header := http.Header{}
	lines := bufio.NewScanner(bytes.NewReader(head))
	lines.Scan() // the request line
	for lines.Scan() {
		key, value, ok := strings.Cut(lines.Text(), ": ")
		if !ok {
			t.Fatalf("%s: invalid header line %q", name, lines.Text())
		}
		header.Add(key, strings.TrimSuffix(strings.TrimPrefix(value, "["), "]"))
	}

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
	return capturedRequest{header: header, params: create.Requests[0].Params}
}

// received is what a recording upstream saw of one request.
type received struct {
	path   string
	header http.Header
	body   []byte
}

// recordingUpstream starts a loopback server that records each request and
// replies with reply. It returns the server and a function that returns the
// requests received so far.
func recordingUpstream(t *testing.T, reply func(w http.ResponseWriter, body []byte)) (
	*httptest.Server, func() []received) {
	t.Helper()

	var mu sync.Mutex
	var requests []received
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("upstream: read body: %v", err)
			return
		}
		mu.Lock()
		requests = append(requests, received{path: r.URL.Path, header: r.Header.Clone(), body: body})
		mu.Unlock()

		reply(w, body)
	}))
	t.Cleanup(server.Close)

	return server, func() []received {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(requests)
	}
}

// capturedMessage is the Message that the upstream returns for the captured
// params.
const capturedMessage = `{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant",` +
	`"model":"claude-opus-5-5","content":[{"type":"text","text":"Hello!","citations":null}],` +
	`"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":6}}`

func TestCapturedParamsForwardedUnchanged(t *testing.T) {
	t.Parallel()

	tests := []struct {
		file string
		// wantBeta is the anthropic-beta header that the upstream must
		// receive: the batch's betas without the batches beta.
		wantBeta []string
	}{
		{"create-all-params.http", nil},
		{"beta-create-all-params.http", []string{"computer-use-2024-10-22"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()

			captured := loadCapturedRequest(t, tt.file)
			server, requests := recordingUpstream(t, func(w http.ResponseWriter, body []byte) {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, capturedMessage)
			})

			env := map[string]string{"E2E_UPSTREAM_KEY": "sk-e2e-upstream"}
			lookupEnv := func(name string) (string, bool) {
				v, ok := env[name]
				return v, ok
			}
			config := anthropicConfig(server.URL, "api_key_env: E2E_UPSTREAM_KEY")
			c := newChain(t, config, engine.Config{Concurrency: 4}, lookupEnv)

			// The batch is created with the betas the SDK sent, as the
			// API stores them.
			betas := append([]string{"message-batches-2024-09-24"},
				captured.header.Values("Anthropic-Beta")...)
			ids := customIDs(5)
			reqs := make([]batch.NewRequest, len(ids))
			for i, id := range ids {
				reqs[i] = batch.NewRequest{CustomID: id, Params: captured.params}
			}
			b := createBatch(t, c.store, reqs, betas)

			ended, _ := c.runUntilEnded(t, b.ID, endTimeout)
			results := checkOneResultEach(t, ended, c.results(t, b.ID), ids)
			for _, id := range ids {
				res := results[id]
				if res.outcome != batch.OutcomeSucceeded {
					t.Errorf("%s: outcome %s, want succeeded: %s", id, res.outcome, res.body)
					continue
				}
				if string(res.body) != capturedMessage {
					t.Errorf("%s: result Message differs from the upstream's:\ngot  %s\nwant %s",
						id, res.body, capturedMessage)
				}
			}

			got := requests()
			if len(got) != len(ids) {
				t.Fatalf("upstream received %d requests, want %d", len(got), len(ids))
			}
			for i, r := range got {
				if !bytes.Equal(r.body, captured.params) {
					t.Errorf("request %d: body differs from the captured params:\ngot  %s\nwant %s",
						i, r.body, captured.params)
				}
				if r.path != "/v1/messages" {
					t.Errorf("request %d: path %s, want /v1/messages", i, r.path)
				}
				if got := r.header.Get("X-Api-Key"); got != "sk-e2e-upstream" {
					t.Errorf("request %d: x-api-key %q, want the key from E2E_UPSTREAM_KEY", i, got)
				}
				if got := r.header.Get("Anthropic-Version"); got != "2023-06-01" {
					t.Errorf("request %d: anthropic-version %q, want 2023-06-01", i, got)
				}
				if got := r.header.Values("Anthropic-Beta"); !slices.Equal(got, tt.wantBeta) {
					t.Errorf("request %d: anthropic-beta %q, want %q", i, got, tt.wantBeta)
				}
			}
		})
	}
}

// toolImageParams is a Messages request with an image block, a tool and a
// forced tool choice. Its text names the request, so that the fake server
// can tell requests apart.
func toolImageParams(id string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"model":"claude-e2e","max_tokens":64,`+
		`"system":"Answer with a tool call.",`+
		`"messages":[{"role":"user","content":[`+
		`{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},`+
		`{"type":"text","text":%q}]}],`+
		`"tools":[{"name":"describe_image","description":"Describe an image",`+
		`"input_schema":{"type":"object","properties":{"label":{"type":"string"}},"required":["label"]}}],`+
		`"tool_choice":{"type":"tool","name":"describe_image"}}`, id))
}

// wantChatRequest is the chat completions request that toolImageParams must
// become, with the model renamed by the model map.
func wantChatRequest(id string) string {
	return fmt.Sprintf(`{"model":"local/vision-8b","max_tokens":64,"messages":[`+
		`{"role":"system","content":"Answer with a tool call."},`+
		`{"role":"user","content":[`+
		`{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}},`+
		`{"type":"text","text":%q}]}],`+
		`"tools":[{"type":"function","function":{"name":"describe_image",`+
		`"description":"Describe an image",`+
		`"parameters":{"type":"object","properties":{"label":{"type":"string"}},"required":["label"]}}}],`+
		`"tool_choice":{"type":"function","function":{"name":"describe_image"}}}`, id)
}

func TestOpenAIToolCallWithImage(t *testing.T) {
	t.Parallel()

	// The server replies to each request with a tool call whose argument
	// is the request's text, so a result shows which request it belongs to.
	server, requests := recordingUpstream(t, func(w http.ResponseWriter, body []byte) {
		var chat struct {
			Messages []struct {
				Content json.RawMessage `json:"content"`
			} `json:"messages"`
		}
		var parts []struct {
			Text string `json:"text"`
		}
		if err := json.Unmarshal(body, &chat); err != nil || len(chat.Messages) < 2 {
			http.Error(w, `{"error":{"message":"bad request"}}`, http.StatusBadRequest)
			return
		}
		if err := json.Unmarshal(chat.Messages[1].Content, &parts); err != nil || len(parts) < 2 {
			http.Error(w, `{"error":{"message":"bad content"}}`, http.StatusBadRequest)
			return
		}
		arguments, _ := json.Marshal(map[string]string{"label": parts[1].Text})
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"chatcmpl-1","object":"chat.completion","model":"local/vision-8b",`+
			`"choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant",`+
			`"content":null,"tool_calls":[{"id":"call_%s","type":"function",`+
			`"function":{"name":"describe_image","arguments":%q}}]}}],`+
			`"usage":{"prompt_tokens":30,"completion_tokens":9,"total_tokens":39}}`,
			parts[1].Text, arguments)
	})

	config := backendConfig("openai", server.URL, "model_map: {claude-e2e: local/vision-8b}")
	c := newChain(t, config, engine.Config{Concurrency: 8}, nil)
	ids := customIDs(20)
	reqs := make([]batch.NewRequest, len(ids))
	for i, id := range ids {
		reqs[i] = batch.NewRequest{CustomID: id, Params: toolImageParams(id)}
	}
	b := createBatch(t, c.store, reqs, nil)

	ended, _ := c.runUntilEnded(t, b.ID, endTimeout)
	results := checkOneResultEach(t, ended, c.results(t, b.ID), ids)

	type toolUse struct {
		Type  string          `json:"type"`
		ID    string          `json:"id"`
		Name  string          `json:"name"`
		Input json.RawMessage `json:"input"`
	}
	for _, id := range ids {
		res := results[id]
		if res.outcome != batch.OutcomeSucceeded {
			t.Errorf("%s: outcome %s, want succeeded: %s", id, res.outcome, res.body)
			continue
		}
		msg := decodeJSON[struct {
			Type       string    `json:"type"`
			Model      string    `json:"model"`
			StopReason string    `json:"stop_reason"`
			Content    []toolUse `json:"content"`
		}](t, res.body)
		if msg.Type != "message" || msg.Model != "claude-e2e" || msg.StopReason != "tool_use" {
			t.Errorf("%s: type %q, model %q, stop_reason %q; want message, claude-e2e, tool_use",
				id, msg.Type, msg.Model, msg.StopReason)
		}
		want := toolUse{Type: "tool_use", ID: "call_" + id, Name: "describe_image",
			Input: json.RawMessage(fmt.Sprintf(`{"label":%q}`, id))}
		if len(msg.Content) != 1 || !reflect.DeepEqual(msg.Content[0], want) {
			t.Errorf("%s: content %+v, want one block %+v", id, msg.Content, want)
		}
	}

	got := requests()
	if len(got) != len(ids) {
		t.Errorf("upstream received %d requests, want %d", len(got), len(ids))
	}
	seen := map[string]bool{}
	for _, r := range got {
		if r.path != "/v1/chat/completions" {
			t.Errorf("path %s, want /v1/chat/completions", r.path)
		}
		text, err := chatRequestText(r.body)
		if err != nil {
			t.Errorf("upstream request %s: %v", r.body, err)
			continue
		}
		seen[text] = true
		if !jsonEqual(t, r.body, []byte(wantChatRequest(text))) {
			t.Errorf("chat request:\ngot  %s\nwant %s", r.body, wantChatRequest(text))
		}
	}
	for _, id := range ids {
		if !seen[id] {
			t.Errorf("upstream received no request for %s", id)
		}
	}
}

// chatRequestText returns the text part of the user message of a chat
// request made from toolImageParams.
func chatRequestText(body []byte) (string, error) {
	var chat struct {
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(body, &chat); err != nil {
		return "", fmt.Errorf("decode chat request: %w", err)
	}
	for _, m := range chat.Messages {
		var parts []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}
		if m.Role != "user" || json.Unmarshal(m.Content, &parts) != nil {
			continue
		}
		for _, part := range parts {
			if part.Type == "text" {
				return part.Text, nil
			}
		}
	}
	return "", fmt.Errorf("the chat request has no user message with a text part")
}

// jsonEqual reports whether a and b hold the same JSON value, ignoring
// formatting and the order of object keys.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()

	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("decode %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}
