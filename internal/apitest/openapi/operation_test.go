package openapi

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const batchURL = "http://127.0.0.1/v1/messages/batches/msgbatch_013Zva2CMHLNnXjNJJKqJ2EF"

// recorded returns the response that a handler writing status, contentType
// and body would send.
func recorded(status int, contentType, body string) *http.Response {
	recorder := httptest.NewRecorder()
	if contentType != "" {
		recorder.Header().Set("Content-Type", contentType)
	}
	recorder.WriteHeader(status)
	recorder.WriteString(body)
	return recorder.Result()
}

func TestResponseValid(t *testing.T) {
	t.Parallel()
	v := Load(t)

	results := string(compact(t, lineSucceeded)) + "\n" + lineErrored + "\n" +
		lineCanceled + "\n" + lineExpired + "\n"
	badRequest := `{"type":"error","error":{"type":"invalid_request_error",` +
		`"message":"limit: must be between 1 and 1000"},"request_id":"req_1"}`
	overloaded := string(edit(t, errorNotFound, func(e map[string]any) {
		object(e, "error")["type"] = "overloaded_error"
	}))

	tests := []struct {
		name        string
		method      string
		url         string
		status      int
		contentType string
		body        string
	}{
		{"create", "POST", "http://127.0.0.1/v1/messages/batches", 200, "application/json", batchInProgress},
		{"retrieve", "GET", batchURL, 200, "application/json", batchEnded},
		{"retrieve beta", "GET", batchURL + "?beta=true", 200, "application/json", batchEnded},
		{"list", "GET", "http://127.0.0.1/v1/messages/batches?limit=2", 200, "application/json", pageOne},
		{"list beta", "GET", "http://127.0.0.1/v1/messages/batches?beta=true", 200, "application/json", pageEmpty},
		{"cancel", "POST", batchURL + "/cancel", 200, "application/json; charset=utf-8", batchCanceling},
		{"delete", "DELETE", batchURL, 200, "application/json", deleted},
		{"results", "GET", batchURL + "/results", 200, "application/x-jsonl", results},
		{"not found", "GET", batchURL, 404, "application/json", errorNotFound},
		{"bad request", "GET", "http://127.0.0.1/v1/messages/batches?limit=0", 400, "application/json", badRequest},
		{"overloaded", "POST", batchURL + "/cancel", 529, "application/json", overloaded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest(tt.method, tt.url, nil)
			resp := recorded(tt.status, tt.contentType, tt.body)
			wantValid(t, v.Response(req, resp))

			// The caller can still read the body.
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("read body after Response: %v", err)
			}
			if string(body) != tt.body {
				t.Errorf("got body %q after Response, want %q", body, tt.body)
			}
		})
	}
}

func TestResponseInvalid(t *testing.T) {
	t.Parallel()
	v := Load(t)

	notFoundAs400 := edit(t, errorNotFound, func(e map[string]any) {
		object(e, "error")["type"] = "not_found_error"
	})

	tests := []struct {
		name        string
		method      string
		url         string
		status      int
		contentType string
		body        string
		fragment    string
	}{
		{
			name:   "batch without status",
			method: "GET", url: batchURL, status: 200, contentType: "application/json",
			body:     string(edit(t, batchEnded, func(b map[string]any) { delete(b, "processing_status") })),
			fragment: "$: missing property 'processing_status'",
		},
		{
			name:   "beta batch with bad status",
			method: "GET", url: batchURL + "?beta=true", status: 200, contentType: "application/json",
			body:     string(edit(t, batchEnded, func(b map[string]any) { b["processing_status"] = "done" })),
			fragment: "$.processing_status: value must be one of",
		},
		{
			name:   "batch as text",
			method: "GET", url: batchURL, status: 200, contentType: "text/plain",
			body:     batchEnded,
			fragment: "text/plain",
		},
		{
			name:   "undeclared status",
			method: "GET", url: batchURL, status: 418, contentType: "application/json",
			body:     errorNotFound,
			fragment: "418",
		},
		{
			name:   "405 for a wrong method",
			method: "PUT", url: batchURL, status: 405, contentType: "application/json",
			body:     errorNotFound,
			fragment: "has no PUT operation",
		},
		{
			name:   "plain text 404",
			method: "GET", url: batchURL, status: 404, contentType: "text/plain",
			body:     "404 page not found",
			fragment: "text/plain",
		},
		{
			name:   "400 with another error type",
			method: "GET", url: batchURL, status: 400, contentType: "application/json",
			body:     string(notFoundAs400),
			fragment: `$.error.type: value must be 'invalid_request_error'`,
		},
		{
			name:   "page in place of batch",
			method: "POST", url: batchURL + "/cancel", status: 200, contentType: "application/json",
			body:     pageEmpty,
			fragment: "missing properties",
		},
		{
			name:   "results with a flat error",
			method: "GET", url: batchURL + "/results", status: 200, contentType: "application/x-jsonl",
			body: lineCanceled + "\n" + `{"custom_id":"b","result":{"type":"errored",` +
				`"error":{"type":"api_error","message":"boom"}}}` + "\n",
			fragment: "line 2: document does not match schema MessageBatchIndividualResponse",
		},
		{
			name:   "results with a blank line",
			method: "GET", url: batchURL + "/results?beta=true", status: 200, contentType: "application/x-jsonl",
			body:     lineCanceled + "\n\n",
			fragment: "line 2: blank line",
		},
		{
			name:   "results as JSON",
			method: "GET", url: batchURL + "/results", status: 200, contentType: "application/json",
			body:     lineCanceled + "\n" + lineExpired + "\n",
			fragment: "application/json",
		},
		{
			name:   "empty batch",
			method: "GET", url: batchURL, status: 200, contentType: "application/json",
			body:     "",
			fragment: "body is empty, want MessageBatch",
		},
		{
			name:   "null batch",
			method: "GET", url: batchURL, status: 200, contentType: "application/json",
			body:     " null\n",
			fragment: "body is JSON null, want MessageBatch",
		},
		{
			name:   "truncated batch",
			method: "GET", url: batchURL, status: 200, contentType: "application/json",
			body:     batchEnded[:40],
			fragment: "cannot be decoded",
		},
		{
			name:   "missing Content-Type",
			method: "GET", url: batchURL, status: 200, contentType: "",
			body:     batchEnded,
			fragment: "content type ''",
		},
		{
			name:   "unknown path",
			method: "GET", url: "http://127.0.0.1/v1/message_batches", status: 200, contentType: "application/json",
			body:     batchEnded,
			fragment: "no path of",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest(tt.method, tt.url, nil)
			err := v.Response(req, recorded(tt.status, tt.contentType, tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.fragment) {
				t.Errorf("got error %v, want one containing %q", err, tt.fragment)
			}
		})
	}
}

func TestResponseSchemaErrorReachable(t *testing.T) {
	t.Parallel()
	v := Load(t)

	body := edit(t, batchEnded, func(b map[string]any) { b["processing_status"] = "done" })
	err := v.Response(httptest.NewRequest("GET", batchURL, nil),
		recorded(200, "application/json", string(body)))

	var schemaErr *SchemaError
	if !errors.As(err, &schemaErr) {
		t.Fatalf("got error %v, want one wrapping a *SchemaError", err)
	}
	if got, want := schemaErr.Schema, "MessageBatch"; got != want {
		t.Errorf("got schema %q, want %q", got, want)
	}
	wantViolation(t, err, "$.processing_status", "must be one of")
}

func TestRequest(t *testing.T) {
	t.Parallel()
	v := Load(t)

	create := `{"requests":[{"custom_id":"my-first-request","params":{"model":"claude-opus-4-6",` +
		`"max_tokens":1024,"messages":[{"role":"user","content":"Hello, world"}]}}]}`

	valid := []struct {
		name   string
		method string
		url    string
		body   string
		header map[string]string
	}{
		{name: "create", method: "POST", url: "http://127.0.0.1/v1/messages/batches", body: create},
		{
			name: "create beta", method: "POST", url: "http://127.0.0.1/v1/messages/batches?beta=true",
			body:   create,
			header: map[string]string{"anthropic-beta": "message-batches-2024-09-24"},
		},
		{name: "list", method: "GET", url: "http://127.0.0.1/v1/messages/batches?limit=20&after_id=msgbatch_1"},
		{name: "retrieve", method: "GET", url: batchURL},
		{name: "cancel", method: "POST", url: batchURL + "/cancel"},
		{name: "delete", method: "DELETE", url: batchURL + "?beta=true"},
		{name: "results", method: "GET", url: batchURL + "/results"},
	}
	for _, tt := range valid {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req := httptest.NewRequest(tt.method, tt.url, body)
			if tt.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			for name, value := range tt.header {
				req.Header.Set(name, value)
			}
			wantValid(t, v.Request(req))

			if tt.body == "" {
				return
			}
			got, err := io.ReadAll(req.Body)
			if err != nil {
				t.Fatalf("read body after Request: %v", err)
			}
			if string(got) != tt.body {
				t.Errorf("got body %q after Request, want %q", got, tt.body)
			}
		})
	}

	invalid := []struct {
		name     string
		method   string
		url      string
		body     string
		fragment string
	}{
		{
			name:   "create without requests",
			method: "POST", url: "http://127.0.0.1/v1/messages/batches",
			body:     `{}`,
			fragment: "missing property 'requests'",
		},
		{
			name:   "create without body",
			method: "POST", url: "http://127.0.0.1/v1/messages/batches",
			fragment: "content type ''",
		},
		{
			name:   "create with empty requests",
			method: "POST", url: "http://127.0.0.1/v1/messages/batches",
			body:     `{"requests":[]}`,
			fragment: "$.requests:",
		},
		{
			name:   "create with bad custom_id",
			method: "POST", url: "http://127.0.0.1/v1/messages/batches",
			body:     strings.Replace(create, "my-first-request", "my first request", 1),
			fragment: "$.requests[0].custom_id",
		},
		{
			name:   "create with blank body",
			method: "POST", url: "http://127.0.0.1/v1/messages/batches",
			body:     " ",
			fragment: "$: got null, want object",
		},
		{
			name:   "create with null body",
			method: "POST", url: "http://127.0.0.1/v1/messages/batches",
			body:     "null",
			fragment: "$: got null, want object",
		},
		{
			name:   "list limit not a number",
			method: "GET", url: "http://127.0.0.1/v1/messages/batches?limit=ten",
			fragment: "not a valid integer",
		},
		{
			name:   "list limit zero",
			method: "GET", url: "http://127.0.0.1/v1/messages/batches?limit=0",
			fragment: "limit",
		},
		{
			name:   "list limit too high",
			method: "GET", url: "http://127.0.0.1/v1/messages/batches?limit=1001",
			fragment: "limit",
		},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req := httptest.NewRequest(tt.method, tt.url, body)
			if tt.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			err := v.Request(req)
			if err == nil || !strings.Contains(err.Error(), tt.fragment) {
				t.Errorf("got error %v, want one containing %q", err, tt.fragment)
			}
		})
	}
}

func TestFindOperation(t *testing.T) {
	t.Parallel()
	v := Load(t)

	tests := []struct {
		method string
		url    string
		want   string
	}{
		{"POST", "/v1/messages/batches", "/v1/messages/batches"},
		{"GET", "/v1/messages/batches?beta=true&limit=2", "/v1/messages/batches?beta=true"},
		{"GET", "/v1/messages/batches/msgbatch_1", "/v1/messages/batches/{message_batch_id}"},
		{"POST", "/v1/messages/batches/msgbatch_1/cancel", "/v1/messages/batches/{message_batch_id}/cancel"},
		{"GET", "/v1/messages/batches/msgbatch_1/results?beta=true",
			"/v1/messages/batches/{message_batch_id}/results?beta=true"},
		{"GET", "/v1/messages/batches/msgbatch_1?beta=false", "/v1/messages/batches/{message_batch_id}"},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(tt.method, "http://127.0.0.1"+tt.url, nil)
		op, err := v.spec.findOperation(req)
		if err != nil {
			t.Errorf("findOperation(%s %s): %v", tt.method, tt.url, err)
			continue
		}
		if op.key != tt.want {
			t.Errorf("findOperation(%s %s) = %q, want %q", tt.method, tt.url, op.key, tt.want)
		}
	}

	for _, url := range []string{"/v1/messages/batches/", "/v1/messages/batches//cancel", "/v2/messages/batches"} {
		req := httptest.NewRequest("GET", "http://127.0.0.1"+url, nil)
		if op, err := v.spec.findOperation(req); err == nil {
			t.Errorf("findOperation(GET %s) = %q, want an error", url, op.key)
		}
	}
}
