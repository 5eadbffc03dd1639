package messages_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/messages"
)

// FuzzValidate feeds arbitrary bytes to Validate and Parse. Neither may panic,
// they must agree on validity, and every error must be an
// invalid_request_error. A body that passes must read the same through
// encoding/json, and text taken from it must encode into valid JSON.
//
// Run it with: go test -run '^$' -fuzz FuzzValidate -fuzztime 30s ./internal/messages
func FuzzValidate(f *testing.F) {
	seeds := []string{
		minimalParams,
		fullParams,
		``,
		`null`,
		`[]`,
		`{}`,
		`{"model":"m","max_tokens":1,"messages":[]}`,
		`{"model":"m","max_tokens":1e3,"messages":[{"role":"user","content":[]}]}`,
		`{"model":"m","max_tokens":-1,"messages":[{"role":"user","content":"x"}]}`,
		`{"model":"m","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"x"}]}`,
		`{"model":"m","max_tokens":2000,"thinking":{"type":"enabled","budget_tokens":1024},` +
			`"messages":[{"role":"user","content":"x"}]}`,
		`{"model":"m","max_tokens":5,"tools":[{"name":"t","input_schema":{"type":"object",` +
			`"properties":{"a":{"type":"string"}},"required":["a"]}}],` +
			`"tool_choice":{"type":"any"},"messages":[{"role":"user","content":"x"}]}`,
		`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_result",` +
			`"tool_use_id":"a","content":[{"type":"text","text":"\u0000\ud800"}]}]}]}`,
		`{"model":"m","max_tokens":5,"system":[{"type":"text","text":"s"}],"temperature":1,` +
			`"top_p":0,"top_k":0,"metadata":{"user_id":null},"messages":[{"role":"system",` +
			`"content":"x"}]}`,
		`{"model":"m","max_tokens":99999999999999999999999,"messages":[{"role":"user","content":"x"}]}`,
	}
	for _, seed := range seeds {
		f.Add([]byte(seed))
	}

	f.Fuzz(func(t *testing.T, params []byte) {
		verr := messages.Validate(params)
		req, perr := messages.Parse(params)

		if (verr == nil) != (perr == nil) {
			t.Fatalf("Validate error %v and Parse error %v disagree for %q", verr, perr, params)
		}
		if verr != nil {
			var be *backend.Error
			if !errors.As(verr, &be) || be.Type != backend.TypeInvalidRequest {
				t.Fatalf("Validate(%q) error %v is not an invalid_request_error", params, verr)
			}
			return
		}

		if req.Model == "" || req.MaxTokens < 1 || len(req.Messages) == 0 {
			t.Fatalf("Parse(%q) accepted a request without model, max_tokens or messages: %+v",
				params, req)
		}

		// The scanner that splits objects must agree with encoding/json.
		var generic map[string]any
		if err := json.Unmarshal(params, &generic); err != nil {
			t.Fatalf("Parse accepted %q, but encoding/json rejects it: %v", params, err)
		}
		if generic["model"] != req.Model {
			t.Fatalf("Parse(%q).Model = %q, encoding/json reads %v", params, req.Model,
				generic["model"])
		}
		if n, _ := generic["max_tokens"].(float64); int(n) != req.MaxTokens {
			t.Fatalf("Parse(%q).MaxTokens = %d, encoding/json reads %v", params, req.MaxTokens,
				generic["max_tokens"])
		}
		if list, _ := generic["messages"].([]any); len(list) != len(req.Messages) {
			t.Fatalf("Parse(%q) has %d messages, encoding/json reads %d", params,
				len(req.Messages), len(list))
		}

		// Text from the request must survive the response encoder.
		msg := messages.NewMessage("msg_fuzz", req.Model)
		msg.Content = append(msg.Content, messages.TextBlock(req.Messages[0].Text()),
			messages.TextBlock(req.System))
		for _, m := range req.Messages {
			for _, b := range m.Content {
				if b.Type == messages.BlockToolUse {
					msg.Content = append(msg.Content, messages.ToolUseBlock(b.ID, b.Name, b.Input))
				}
			}
		}
		body, err := msg.AppendJSON(nil)
		if err != nil {
			t.Fatalf("AppendJSON for request %q: %v", params, err)
		}
		if !json.Valid(body) {
			t.Fatalf("AppendJSON produced invalid JSON %q for request %q", body, params)
		}
	})
}
