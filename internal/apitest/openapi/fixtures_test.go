package openapi

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// Bodies written by hand from the Message Batches wire contract: every field
// present, explicit nulls, UTC timestamps with six fractional digits.

const batchInProgress = `{
  "id": "msgbatch_013Zva2CMHLNnXjNJJKqJ2EF",
  "type": "message_batch",
  "processing_status": "in_progress",
  "request_counts": {"processing": 2, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0},
  "created_at": "2024-09-24T18:37:24.100435Z",
  "expires_at": "2024-09-25T18:37:24.100435Z",
  "ended_at": null,
  "cancel_initiated_at": null,
  "archived_at": null,
  "results_url": null
}`

const batchCanceling = `{
  "id": "msgbatch_013Zva2CMHLNnXjNJJKqJ2EF",
  "type": "message_batch",
  "processing_status": "canceling",
  "request_counts": {"processing": 2, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0},
  "created_at": "2024-09-24T18:37:24.100435Z",
  "expires_at": "2024-09-25T18:37:24.100435Z",
  "ended_at": null,
  "cancel_initiated_at": "2024-09-24T18:39:03.114875Z",
  "archived_at": null,
  "results_url": null
}`

const batchEnded = `{
  "id": "msgbatch_013Zva2CMHLNnXjNJJKqJ2EF",
  "type": "message_batch",
  "processing_status": "ended",
  "request_counts": {"processing": 0, "succeeded": 1, "errored": 1, "canceled": 1, "expired": 1},
  "created_at": "2024-09-24T18:37:24.100435Z",
  "expires_at": "2024-09-25T18:37:24.100435Z",
  "ended_at": "2024-09-24T18:41:57.000120Z",
  "cancel_initiated_at": "2024-09-24T18:39:03.114875Z",
  "archived_at": null,
  "results_url": "http://127.0.0.1:8080/v1/messages/batches/msgbatch_013Zva2CMHLNnXjNJJKqJ2EF/results"
}`

const batchArchived = `{
  "id": "msgbatch_013Zva2CMHLNnXjNJJKqJ2EF",
  "type": "message_batch",
  "processing_status": "ended",
  "request_counts": {"processing": 0, "succeeded": 4, "errored": 0, "canceled": 0, "expired": 0},
  "created_at": "2024-09-24T18:37:24.100435Z",
  "expires_at": "2024-09-25T18:37:24.100435Z",
  "ended_at": "2024-09-24T18:41:57.000120Z",
  "cancel_initiated_at": null,
  "archived_at": "2024-10-23T18:37:24.100435Z",
  "results_url": null
}`

const pageOne = `{
  "data": [` + batchEnded + `, ` + batchInProgress + `],
  "has_more": true,
  "first_id": "msgbatch_013Zva2CMHLNnXjNJJKqJ2EF",
  "last_id": "msgbatch_013Zva2CMHLNnXjNJJKqJ2EF"
}`

const pageEmpty = `{"data": [], "has_more": false, "first_id": null, "last_id": null}`

const errorNotFound = `{
  "type": "error",
  "error": {"type": "not_found_error", "message": "message batch not found"},
  "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"
}`

const deleted = `{"id": "msgbatch_013Zva2CMHLNnXjNJJKqJ2EF", "type": "message_batch_deleted"}`

// fullMessage carries every field the Message schema marks as required, which is
// more than the wire contract lists: see TestMessageMinimalContractExample.
const fullMessage = `{
  "id": "msg_014VwiXbi91y3JMjcpyGBHX5",
  "type": "message",
  "role": "assistant",
  "model": "claude-opus-4-6",
  "content": [{"type": "text", "text": "Hello again!", "citations": null}],
  "stop_reason": "end_turn",
  "stop_sequence": null,
  "stop_details": null,
  "diagnostics": null,
  "container": null,
  "usage": {
    "input_tokens": 11,
    "output_tokens": 36,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
    "cache_creation": null,
    "server_tool_use": null,
    "service_tier": "batch",
    "inference_geo": null,
    "output_tokens_details": null,
    "speed": null
  }
}`

// betaMessage adds the fields that BetaMessage requires on top of Message.
const betaMessage = `{
  "id": "msg_014VwiXbi91y3JMjcpyGBHX5",
  "type": "message",
  "role": "assistant",
  "model": "claude-opus-4-6",
  "content": [{"type": "text", "text": "Hello again!", "citations": null}],
  "stop_reason": "end_turn",
  "stop_sequence": null,
  "stop_details": null,
  "diagnostics": null,
  "container": null,
  "context_management": null,
  "usage": {
    "input_tokens": 11,
    "output_tokens": 36,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
    "cache_creation": null,
    "server_tool_use": null,
    "service_tier": "batch",
    "inference_geo": null,
    "output_tokens_details": null,
    "speed": null,
    "fallback_credit": null,
    "iterations": null
  }
}`

// minimalMessage is the smallest succeeded message the wire contract shows.
const minimalMessage = `{
  "id": "msg_014VwiXbi91y3JMjcpyGBHX5",
  "type": "message",
  "role": "assistant",
  "model": "claude-opus-4-6",
  "content": [{"type": "text", "text": "Hello again!"}],
  "stop_reason": "end_turn",
  "stop_sequence": null,
  "usage": {"input_tokens": 11, "output_tokens": 36}
}`

const lineSucceeded = `{"custom_id":"my-first-request","result":{"type":"succeeded","message":` +
	fullMessage + `}}`

const lineErrored = `{"custom_id":"my-second-request","result":{"type":"errored","error":` +
	`{"type":"error","error":{"type":"invalid_request_error",` +
	`"message":"max_tokens: must be at least 1"},"request_id":null}}}`

const lineCanceled = `{"custom_id":"my-third-request","result":{"type":"canceled"}}`

const lineExpired = `{"custom_id":"my-fourth-request","result":{"type":"expired"}}`

// edit decodes body as a JSON object, applies change and encodes it again.
func edit(t testing.TB, body string, change func(object map[string]any)) []byte {
	t.Helper()

	var object map[string]any
	if err := json.Unmarshal([]byte(body), &object); err != nil {
		t.Fatalf("decode fixture: %v", err)
	}
	change(object)

	data, err := json.Marshal(object)
	if err != nil {
		t.Fatalf("encode fixture: %v", err)
	}
	return data
}

// object returns the JSON object at key of parent, for nested edits.
func object(parent map[string]any, key string) map[string]any {
	return parent[key].(map[string]any)
}

// compact removes the insignificant whitespace of a fixture, so it fits on
// one results line.
func compact(t testing.TB, body string) []byte {
	t.Helper()
	return edit(t, body, func(map[string]any) {})
}

// wantViolation fails t unless err is a *SchemaError with a violation at
// path whose message contains fragment.
func wantViolation(t *testing.T, err error, path, fragment string) {
	t.Helper()

	if err == nil {
		t.Fatalf("got no error, want a violation at %s containing %q", path, fragment)
	}
	var schemaErr *SchemaError
	if !errors.As(err, &schemaErr) {
		t.Fatalf("got error %v, want a *SchemaError", err)
	}
	for _, v := range schemaErr.Violations {
		if v.Path == path && strings.Contains(v.Message, fragment) {
			return
		}
	}
	t.Errorf("got %v, want a violation at %s containing %q", err, path, fragment)
}

// wantValid fails t if err is not nil.
func wantValid(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Errorf("got %v, want no error", err)
	}
}
