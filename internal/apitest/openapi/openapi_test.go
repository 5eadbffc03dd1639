package openapi

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestBatchValid(t *testing.T) {
	t.Parallel()
	v := Load(t)

	tests := []struct {
		name string
		body string
	}{
		{"in progress", batchInProgress},
		{"canceling", batchCanceling},
		{"ended", batchEnded},
		{"archived", batchArchived},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantValid(t, v.Batch([]byte(tt.body)))
			wantValid(t, v.Beta().Batch([]byte(tt.body)))
		})
	}
}

func TestBatchInvalid(t *testing.T) {
	t.Parallel()
	v := Load(t)

	tests := []struct {
		name     string
		change   func(batch map[string]any)
		path     string
		fragment string
	}{
		{
			name:     "missing results_url",
			change:   func(b map[string]any) { delete(b, "results_url") },
			path:     "$",
			fragment: "'results_url'",
		},
		{
			name:     "missing request_counts",
			change:   func(b map[string]any) { delete(b, "request_counts") },
			path:     "$",
			fragment: "'request_counts'",
		},
		{
			name:     "status done",
			change:   func(b map[string]any) { b["processing_status"] = "done" },
			path:     "$.processing_status",
			fragment: "'in_progress', 'canceling', 'ended'",
		},
		{
			name:     "wrong type constant",
			change:   func(b map[string]any) { b["type"] = "batch" },
			path:     "$.type",
			fragment: "'message_batch'",
		},
		{
			name:     "count as string",
			change:   func(b map[string]any) { object(b, "request_counts")["processing"] = "2" },
			path:     "$.request_counts.processing",
			fragment: "want integer",
		},
		{
			name:     "fractional count",
			change:   func(b map[string]any) { object(b, "request_counts")["errored"] = 1.5 },
			path:     "$.request_counts.errored",
			fragment: "want integer",
		},
		{
			name:     "missing expired count",
			change:   func(b map[string]any) { delete(object(b, "request_counts"), "expired") },
			path:     "$.request_counts",
			fragment: "'expired'",
		},
		{
			name:     "created_at not RFC 3339",
			change:   func(b map[string]any) { b["created_at"] = "2024-09-24 18:37:24.100435" },
			path:     "$.created_at",
			fragment: "date-time",
		},
		{
			name:     "created_at as Unix seconds",
			change:   func(b map[string]any) { b["created_at"] = 1727203044 },
			path:     "$.created_at",
			fragment: "want string",
		},
		{
			name:     "expires_at null",
			change:   func(b map[string]any) { b["expires_at"] = nil },
			path:     "$.expires_at",
			fragment: "got null, want string",
		},
		{
			name:     "ended_at not a date",
			change:   func(b map[string]any) { b["ended_at"] = "yesterday" },
			path:     "$.ended_at",
			fragment: "date-time",
		},
		{
			name:     "ended_at number",
			change:   func(b map[string]any) { b["ended_at"] = 5 },
			path:     "$.ended_at",
			fragment: "want one of string, null",
		},
		{
			name:     "id null",
			change:   func(b map[string]any) { b["id"] = nil },
			path:     "$.id",
			fragment: "want string",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := edit(t, batchInProgress, tt.change)
			wantViolation(t, v.Batch(body), tt.path, tt.fragment)
			wantViolation(t, v.Beta().Batch(body), tt.path, tt.fragment)
		})
	}
}

// TestBatchSchemaNullability records which MessageBatch fields the schema
// requires and which of them may be null, since batchd must emit exactly that.
func TestBatchSchemaNullability(t *testing.T) {
	t.Parallel()
	v := Load(t)

	nullable := map[string]bool{
		"id":                  false,
		"type":                false,
		"processing_status":   false,
		"request_counts":      false,
		"created_at":          false,
		"expires_at":          false,
		"ended_at":            true,
		"cancel_initiated_at": true,
		"archived_at":         true,
		"results_url":         true,
	}
	for field, wantNullable := range nullable {
		t.Run(field, func(t *testing.T) {
			t.Parallel()

			missing := edit(t, batchEnded, func(b map[string]any) { delete(b, field) })
			wantViolation(t, v.Batch(missing), "$", "'"+field+"'")

			null := edit(t, batchEnded, func(b map[string]any) { b[field] = nil })
			err := v.Batch(null)
			if gotNullable := err == nil; gotNullable != wantNullable {
				t.Errorf("%s: null accepted = %t, want %t (error: %v)", field, gotNullable, wantNullable, err)
			}
		})
	}
}

// TestBatchTimestampFormat shows that the schema requires only RFC 3339:
// the six fractional digits and the Z of the contract are batchd's choice.
func TestBatchTimestampFormat(t *testing.T) {
	t.Parallel()
	v := Load(t)

	tests := []struct {
		value string
		valid bool
	}{
		{"2024-09-24T18:37:24.100435Z", true},
		{"2024-09-24T18:37:24Z", true},
		{"2024-09-24T20:37:24.1+02:00", true},
		{"2024-09-24t18:37:24z", true},
		{"2024-09-24T18:37:24", false},
		{"2024-09-24 18:37:24Z", false},
		{"2024-09-24", false},
		{"2024-13-24T18:37:24Z", false},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			t.Parallel()
			body := edit(t, batchInProgress, func(b map[string]any) { b["created_at"] = tt.value })
			err := v.Batch(body)
			if tt.valid {
				wantValid(t, err)
				return
			}
			wantViolation(t, err, "$.created_at", "date-time")
		})
	}
}

func TestBatchExtraFieldAllowed(t *testing.T) {
	t.Parallel()
	v := Load(t)

	body := edit(t, batchInProgress, func(b map[string]any) { b["x_batchd_progress"] = 1 })
	wantValid(t, v.Batch(body))
}

func TestBatchListsEveryViolation(t *testing.T) {
	t.Parallel()
	v := Load(t)

	body := edit(t, batchInProgress, func(b map[string]any) {
		delete(b, "archived_at")
		b["processing_status"] = "done"
		object(b, "request_counts")["canceled"] = "0"
	})
	err := v.Batch(body)

	var schemaErr *SchemaError
	if !errors.As(err, &schemaErr) {
		t.Fatalf("got error %v, want a *SchemaError", err)
	}
	if got, want := len(schemaErr.Violations), 3; got != want {
		t.Errorf("got %d violations, want %d: %v", got, want, err)
	}
	for _, path := range []string{"$:", "$.processing_status:", "$.request_counts.canceled:"} {
		if !strings.Contains(err.Error(), path) {
			t.Errorf("got message %q, want it to contain %q", err, path)
		}
	}
	if got, want := schemaErr.Schema, "MessageBatch"; got != want {
		t.Errorf("got schema %q, want %q", got, want)
	}
}

func TestPage(t *testing.T) {
	t.Parallel()
	v := Load(t)

	t.Run("valid", func(t *testing.T) {
		t.Parallel()
		wantValid(t, v.Page([]byte(pageOne)))
		wantValid(t, v.Page([]byte(pageEmpty)))
		wantValid(t, v.Beta().Page([]byte(pageOne)))
	})

	tests := []struct {
		name     string
		change   func(page map[string]any)
		path     string
		fragment string
	}{
		{
			name:     "missing has_more",
			change:   func(p map[string]any) { delete(p, "has_more") },
			path:     "$",
			fragment: "'has_more'",
		},
		{
			name:     "missing first_id",
			change:   func(p map[string]any) { delete(p, "first_id") },
			path:     "$",
			fragment: "'first_id'",
		},
		{
			name:     "has_more as string",
			change:   func(p map[string]any) { p["has_more"] = "false" },
			path:     "$.has_more",
			fragment: "want boolean",
		},
		{
			name:     "data null",
			change:   func(p map[string]any) { p["data"] = nil },
			path:     "$.data",
			fragment: "want array",
		},
		{
			name: "bad batch inside",
			change: func(p map[string]any) {
				p["data"].([]any)[1].(map[string]any)["processing_status"] = "done"
			},
			path:     "$.data[1].processing_status",
			fragment: "must be one of",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantViolation(t, v.Page(edit(t, pageOne, tt.change)), tt.path, tt.fragment)
		})
	}
}

func TestErrorEnvelope(t *testing.T) {
	t.Parallel()
	v := Load(t)

	// The nine error types of the schema's oneOf.
	types := []string{
		"invalid_request_error", "authentication_error", "billing_error",
		"permission_error", "not_found_error", "rate_limit_error",
		"timeout_error", "api_error", "overloaded_error",
	}
	for _, errorType := range types {
		t.Run(errorType, func(t *testing.T) {
			t.Parallel()
			body := edit(t, errorNotFound, func(e map[string]any) { object(e, "error")["type"] = errorType })
			wantValid(t, v.Error(body))
			wantValid(t, v.Beta().Error(body))
		})
	}

	t.Run("request_id null", func(t *testing.T) {
		t.Parallel()
		body := edit(t, errorNotFound, func(e map[string]any) { e["request_id"] = nil })
		wantValid(t, v.Error(body))
	})

	t.Run("extra details", func(t *testing.T) {
		t.Parallel()
		body := edit(t, errorNotFound, func(e map[string]any) {
			object(e, "error")["details"] = map[string]any{"error_visibility": "user_facing"}
		})
		wantValid(t, v.Error(body))
	})

	tests := []struct {
		name     string
		body     []byte
		path     string
		fragment string
	}{
		{
			name:     "missing request_id",
			body:     edit(t, errorNotFound, func(e map[string]any) { delete(e, "request_id") }),
			path:     "$",
			fragment: "'request_id'",
		},
		{
			name:     "flat error",
			body:     []byte(`{"type":"not_found_error","message":"not found","request_id":null}`),
			path:     "$",
			fragment: "'error'",
		},
		{
			name:     "missing message",
			body:     edit(t, errorNotFound, func(e map[string]any) { delete(object(e, "error"), "message") }),
			path:     "$.error",
			fragment: "'message'",
		},
		{
			// The HTTP error table lists 413 request_too_large, but the
			// schema of every 413 response allows only the nine types.
			name: "request_too_large",
			body: edit(t, errorNotFound, func(e map[string]any) {
				object(e, "error")["type"] = "request_too_large"
			}),
			path:     "$.error.type",
			fragment: `got "request_too_large", want one of`,
		},
		{
			name: "conflict_error",
			body: edit(t, errorNotFound, func(e map[string]any) {
				object(e, "error")["type"] = "conflict_error"
			}),
			path:     "$.error.type",
			fragment: `"overloaded_error"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantViolation(t, v.Error(tt.body), tt.path, tt.fragment)
		})
	}
}

func TestResultLineValid(t *testing.T) {
	t.Parallel()
	v := Load(t)

	tests := []struct {
		name string
		line []byte
	}{
		{"succeeded", compact(t, lineSucceeded)},
		{"errored", []byte(lineErrored)},
		{"errored with request id", edit(t, lineErrored, func(l map[string]any) {
			object(object(l, "result"), "error")["request_id"] = "req_011CSHoEeqs5C35K2UUqR7Fy"
		})},
		{"canceled", []byte(lineCanceled)},
		{"expired", []byte(lineExpired)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantValid(t, v.ResultLine(tt.line))
		})
	}
}

func TestResultLineInvalid(t *testing.T) {
	t.Parallel()
	v := Load(t)

	tests := []struct {
		name     string
		line     []byte
		path     string
		fragment string
	}{
		{
			name: "flat error",
			line: []byte(`{"custom_id":"a","result":{"type":"errored",` +
				`"error":{"type":"invalid_request_error","message":"bad"}}}`),
			path:     "$.result.error",
			fragment: "'request_id'",
		},
		{
			name: "flat error type",
			line: []byte(`{"custom_id":"a","result":{"type":"errored",` +
				`"error":{"type":"invalid_request_error","message":"bad"}}}`),
			path:     "$.result.error.type",
			fragment: "value must be 'error'",
		},
		{
			name: "errored without request_id",
			line: edit(t, lineErrored, func(l map[string]any) {
				delete(object(object(l, "result"), "error"), "request_id")
			}),
			path:     "$.result.error",
			fragment: "'request_id'",
		},
		{
			name: "unknown inner error type",
			line: edit(t, lineErrored, func(l map[string]any) {
				object(object(object(l, "result"), "error"), "error")["type"] = "invalid_request"
			}),
			path:     "$.result.error.error.type",
			fragment: `got "invalid_request", want one of "invalid_request_error"`,
		},
		{
			name:     "unknown result type",
			line:     []byte(`{"custom_id":"a","result":{"type":"done"}}`),
			path:     "$.result.type",
			fragment: `got "done", want one of "succeeded", "errored"`,
		},
		{
			name:     "missing custom_id",
			line:     []byte(`{"result":{"type":"canceled"}}`),
			path:     "$",
			fragment: "'custom_id'",
		},
		{
			name:     "succeeded without message",
			line:     []byte(`{"custom_id":"a","result":{"type":"succeeded"}}`),
			path:     "$.result",
			fragment: "'message'",
		},
		{
			name: "succeeded with minimal message",
			line: []byte(`{"custom_id":"a","result":{"type":"succeeded","message":` +
				minimalMessage + `}}`),
			path:     "$.result.message.usage",
			fragment: "'service_tier'",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantViolation(t, v.ResultLine(tt.line), tt.path, tt.fragment)
		})
	}
}

// TestResultLineFlatErrorIsShort checks that the violations of branches the
// line did not choose are left out, so the message names only the problem.
func TestResultLineFlatErrorIsShort(t *testing.T) {
	t.Parallel()
	v := Load(t)

	line := []byte(`{"custom_id":"a","result":{"type":"errored",` +
		`"error":{"type":"invalid_request_error","message":"bad"}}}`)
	err := v.ResultLine(line)

	var schemaErr *SchemaError
	if !errors.As(err, &schemaErr) {
		t.Fatalf("got error %v, want a *SchemaError", err)
	}
	for _, violation := range schemaErr.Violations {
		if violation.Path == "$.result.type" {
			t.Errorf("got violation %v of a branch the line did not choose, in %v", violation, err)
		}
	}
}

func TestResults(t *testing.T) {
	t.Parallel()
	v := Load(t)

	lines := []string{string(compact(t, lineSucceeded)), lineErrored, lineCanceled, lineExpired}
	file := strings.Join(lines, "\n") + "\n"

	t.Run("valid", func(t *testing.T) {
		t.Parallel()
		wantValid(t, v.Results([]byte(file)))
		wantValid(t, v.Results([]byte(strings.TrimSuffix(file, "\n"))))
	})

	tests := []struct {
		name     string
		body     string
		fragment string
	}{
		{"empty", "", "empty"},
		{"blank line", lineCanceled + "\n\n" + lineExpired + "\n", "line 2: blank line"},
		{"trailing blank line", file + "\n", "line 5: blank line"},
		{"CRLF", lineCanceled + "\r\n" + lineExpired + "\r\n", `line 1: ends in \r\n`},
		{"bad second line", lineCanceled + "\n" + `{"custom_id":"b"}` + "\n", "line 2: document"},
		{"not JSON", lineCanceled + "\n" + "{" + "\n", "line 2: decode JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := v.Results([]byte(tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.fragment) {
				t.Errorf("got error %v, want one containing %q", err, tt.fragment)
			}
		})
	}
}

func TestDeleted(t *testing.T) {
	t.Parallel()
	v := Load(t)

	wantValid(t, v.Deleted([]byte(deleted)))
	wantValid(t, v.Beta().Deleted([]byte(deleted)))

	wrongType := edit(t, deleted, func(d map[string]any) { d["type"] = "message_batch" })
	wantViolation(t, v.Deleted(wrongType), "$.type", "'message_batch_deleted'")

	missingID := edit(t, deleted, func(d map[string]any) { delete(d, "id") })
	wantViolation(t, v.Deleted(missingID), "$", "'id'")
}

func TestMessage(t *testing.T) {
	t.Parallel()
	v := Load(t)

	wantValid(t, v.Message([]byte(fullMessage)))
	wantValid(t, v.Beta().Message([]byte(betaMessage)))

	badStop := edit(t, fullMessage, func(m map[string]any) { m["stop_reason"] = "done" })
	wantViolation(t, v.Message(badStop), "$.stop_reason", `got "done", want one of "end_turn"`)

	nullStop := edit(t, fullMessage, func(m map[string]any) { m["stop_reason"] = nil })
	wantValid(t, v.Message(nullStop))

	negative := edit(t, fullMessage, func(m map[string]any) { object(m, "usage")["output_tokens"] = -1 })
	wantViolation(t, v.Message(negative), "$.usage.output_tokens", "minimum")

	badTier := edit(t, fullMessage, func(m map[string]any) { object(m, "usage")["service_tier"] = "flex" })
	wantViolation(t, v.Message(badTier), "$.usage.service_tier", `got "flex"`)

	badBlock := edit(t, fullMessage, func(m map[string]any) {
		m["content"] = []any{map[string]any{"type": "text", "citations": nil}}
	})
	wantViolation(t, v.Message(badBlock), "$.content[0]", "'text'")
}

// TestMessageMinimalContractExample shows that the smallest message the wire
// contract shows is not enough: the schema requires every nullable field to be
// present.
func TestMessageMinimalContractExample(t *testing.T) {
	t.Parallel()
	v := Load(t)

	err := v.Message([]byte(minimalMessage))
	for _, field := range []string{"stop_details", "diagnostics", "container"} {
		wantViolation(t, err, "$", "'"+field+"'")
	}
	for _, field := range []string{
		"cache_creation", "cache_creation_input_tokens", "cache_read_input_tokens",
		"inference_geo", "output_tokens_details", "server_tool_use", "service_tier", "speed",
	} {
		wantViolation(t, err, "$.usage", "'"+field+"'")
	}
	wantViolation(t, err, "$.content[0]", "'citations'")
}

// TestBetaMessageNeedsMore shows that a Message that passes the Message
// schema fails BetaMessage, which requires three more fields.
func TestBetaMessageNeedsMore(t *testing.T) {
	t.Parallel()
	v := Load(t)

	err := v.Beta().Message([]byte(fullMessage))
	wantViolation(t, err, "$", "'context_management'")
	wantViolation(t, err, "$.usage", "'fallback_credit'")
	wantViolation(t, err, "$.usage", "'iterations'")

	line := []byte(`{"custom_id":"a","result":{"type":"succeeded","message":` + fullMessage + `}}`)
	wantViolation(t, v.Beta().ResultLine(line), "$.result.message", "'context_management'")
}

func TestValidateInput(t *testing.T) {
	t.Parallel()
	v := Load(t)

	tests := []struct {
		name     string
		schema   string
		body     string
		fragment string
	}{
		{"unknown schema", "NoSuchSchema", `{}`, `schema "NoSuchSchema" not found`},
		{"not JSON", "MessageBatch", `{"id":`, "decode JSON for schema MessageBatch"},
		{"empty", "MessageBatch", ``, "decode JSON"},
		{"trailing data", "MessageBatch", batchInProgress + `{}`, "decode JSON"},
		{"null", "MessageBatch", `null`, "JSON null"},
		{"array", "MessageBatch", `[]`, "want object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := v.Validate(tt.schema, []byte(tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.fragment) {
				t.Errorf("got error %v, want one containing %q", err, tt.fragment)
			}
		})
	}
}

func TestValidateByName(t *testing.T) {
	t.Parallel()
	v := Load(t)

	wantValid(t, v.Validate("BetaMessageBatch", []byte(batchInProgress)))
	wantValid(t, v.Validate("RequestCounts", []byte(`{"processing":0,"succeeded":1,"errored":0,"canceled":0,"expired":0}`)))
	wantViolation(t, v.Validate("RequestCounts", []byte(`{}`)), "$", "'processing'")
}

func TestValidateConcurrent(t *testing.T) {
	t.Parallel()
	v := Load(t)

	bodies := []struct {
		check func([]byte) error
		body  []byte
		valid bool
	}{
		{v.Batch, []byte(batchEnded), true},
		{v.Page, []byte(pageEmpty), true},
		{v.ResultLine, []byte(lineErrored), true},
		{v.Beta().Deleted, []byte(deleted), true},
		{v.Batch, []byte(`{"id":1}`), false},
	}

	var wg sync.WaitGroup
	errs := make(chan error, 8*len(bodies))
	for range 8 {
		for i, b := range bodies {
			wg.Go(func() {
				err := b.check(b.body)
				if (err == nil) != b.valid {
					errs <- fmt.Errorf("body %d: got error %v, want valid = %t", i, err, b.valid)
				}
			})
		}
	}
	wg.Wait()
	close(errs)

	for err := range errs {
		t.Error(err)
	}
}

func TestRewriteUnicodeEscapes(t *testing.T) {
	t.Parallel()

	tests := []struct {
		in   string
		want string
	}{
		{`^[a-z]+$`, `^[a-z]+$`},
		{`^[^\x00-\x1f\u2028\u2029]*$`, `^[^\x00-\x1f\x{2028}\x{2029}]*$`},
		{`\\u2028`, `\\u2028`},
		{`\u20`, `\u20`},
		{`a\`, `a\`},
		{`\uABCD`, `\x{ABCD}`},
	}
	for _, tt := range tests {
		if got := rewriteUnicodeEscapes(tt.in); got != tt.want {
			t.Errorf("rewriteUnicodeEscapes(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestJSONPath(t *testing.T) {
	t.Parallel()

	tests := []struct {
		in   []string
		want string
	}{
		{nil, "$"},
		{[]string{"result", "error", "type"}, "$.result.error.type"},
		{[]string{"content", "0", "text"}, "$.content[0].text"},
		{[]string{"a-b"}, `$["a-b"]`},
	}
	for _, tt := range tests {
		if got := jsonPath(tt.in); got != tt.want {
			t.Errorf("jsonPath(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
