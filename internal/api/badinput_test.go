package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/api"
	"github.com/batchd/batchd/internal/backend"
)

func request(customID, params string) string {
	return `{"custom_id":"` + customID + `","params":` + params + `}`
}

const okParams = `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`

func TestCreateRejectsBadBodies(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{noEngine: true, api: api.Config{MaxBodyBytes: 1 << 20}})

	cases := []struct {
		name   string
		body   string
		status int
		want   string // part of the message
	}{
		{"malformed JSON", `{"requests":[{"custom_id":"a",`, 400, "not valid JSON"},
		{"cut after the array opens", `{"requests":[`, 400, "not valid JSON"},
		{"cut after a request", `{"requests":[` + request("a", okParams), 400, "not valid JSON"},
		{"cut after a comma", `{"requests":[` + request("a", okParams) + `,`, 400, "not valid JSON"},
		{"cut before the object ends", `{"requests":[` + request("a", okParams) + `]`, 400,
			"not valid JSON"},
		{"cut after the key", `{"requests":`, 400, "not valid JSON"},
		{"only an open brace", `{`, 400, "not valid JSON"},
		{"empty object", `{}`, 400, "requests: field required"},
		{"not an object", `[1,2]`, 400, "JSON object"},
		{"empty body", ``, 400, "empty"},
		{"requests not an array", `{"requests":"x"}`, 400, "requests: must be an array"},
		{"requests missing", `{}`, 400, "requests: field required"},
		{"unknown top-level field", `{"requests":[` + request("a", okParams) + `],"x":1}`, 400,
			"x: unknown field"},
		{"empty requests", `{"requests":[]}`, 400, "at least 1"},
		{"custom_id wrong type", `{"requests":[{"custom_id":5,"params":{}}]}`, 400,
			"requests.0.custom_id"},
		{"params wrong type", `{"requests":[{"custom_id":"a","params":[1]}]}`, 400,
			"requests.0.params"},
		{"params missing", `{"requests":[{"custom_id":"a"}]}`, 400, "requests.0.params: field required"},
		{"custom_id missing", `{"requests":[{"params":{}}]}`, 400, "requests.0.custom_id: field required"},
		{"request not an object", `{"requests":[7]}`, 400, "requests.0"},
		{"unknown request field", `{"requests":[{"custom_id":"a","params":{},"extra":1}]}`, 400,
			"requests.0.extra"},
		{"bad custom_id pattern", `{"requests":[` + request("a b", okParams) + `]}`, 400,
			"requests.0.custom_id"},
		{"custom_id too long", `{"requests":[` + request(strings.Repeat("x", 65), okParams) + `]}`,
			400, "requests.0.custom_id"},
		{"empty custom_id", `{"requests":[` + request("", okParams) + `]}`, 400, "requests.0.custom_id"},
		{"duplicate custom_id", `{"requests":[` + request("a", okParams) + `,` +
			request("b", okParams) + `,` + request("a", okParams) + `]}`, 400, "requests.2.custom_id"},
		{"invalid UTF-8", `{"requests":[` + request("a", `{"model":"m`+"\xff\xfe"+`"}`) + `]}`, 400,
			"UTF-8"},
		{"lone high surrogate", `{"requests":[` + request("a", `{"t":"\ud800x"}`) + `]}`, 400,
			"surrogate"},
		{"lone low surrogate", `{"requests":[` + request("a", `{"t":"\udc00"}`) + `]}`, 400,
			"surrogate"},
		{"trailing data", `{"requests":[` + request("a", okParams) + `]} {}`, 400, "nothing after"},
		{"over the size limit", `{"requests":[` + request("a", `{"pad":"`+
			strings.Repeat("x", 2<<20)+`"}`) + `]}`, 413, "maximum size"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do("POST", "/v1/messages/batches", []byte(tc.body), nil)
			errorType := "invalid_request_error"
			if tc.status == 413 {
				errorType = "request_too_large"
			}
			message := h.checkError(r, tc.status, errorType)
			if !strings.Contains(message, tc.want) {
				t.Errorf("message %q does not contain %q", message, tc.want)
			}
		})
	}

	// Nothing of any rejected create was stored.
	page := h.do("GET", "/v1/messages/batches", nil, nil)
	if !strings.Contains(string(page.body), `"data":[]`) {
		t.Errorf("batches exist after rejected creates: %s", page.body)
	}
}

func TestCreateRejectsTooManyRequests(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{noEngine: true})
	var body bytes.Buffer
	body.WriteString(`{"requests":[`)
	for i := range 100_001 {
		if i > 0 {
			body.WriteByte(',')
		}
		body.WriteString(`{"custom_id":"r` + itoa(i) + `","params":{}}`)
	}
	body.WriteString(`]}`)

	r := h.do("POST", "/v1/messages/batches", body.Bytes(), nil)
	message := h.checkError(r, http.StatusBadRequest, "invalid_request_error")
	if !strings.Contains(message, "100000") {
		t.Errorf("message %q does not name the limit", message)
	}
	page := h.do("GET", "/v1/messages/batches", nil, nil)
	if !strings.Contains(string(page.body), `"data":[]`) {
		t.Errorf("batches exist after a rejected create: %s", page.body)
	}
}

// endlessReader yields an endless JSON string body and counts what was read.
type endlessReader struct {
	mu   sync.Mutex
	read int64
	head []byte
}

func (r *endlessReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.head) > 0 {
		n := copy(p, r.head)
		r.head = r.head[n:]
		r.read += int64(n)
		return n, nil
	}
	for i := range p {
		p[i] = 'x'
	}
	r.read += int64(len(p))
	return len(p), nil
}

func TestCreateTooLargeDecidedWhileReading(t *testing.T) {
	t.Parallel()
	const limit = 4 << 20
	h := newHarness(t, harnessOptions{noEngine: true, api: api.Config{MaxBodyBytes: limit}})

	// A chunked body with no Content-Length: the server must stop reading at
	// the limit rather than wait for an end that never comes.
	body := &endlessReader{head: []byte(`{"requests":[{"custom_id":"a","params":{"p":"`)}
	req, _ := http.NewRequest("POST", h.url+"/v1/messages/batches", io.NopCloser(body))
	req.Header.Set("x-api-key", keyA)
	req.Header.Set("anthropic-version", "2023-06-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	h.checkError(response{status: resp.StatusCode, header: resp.Header, body: data},
		http.StatusRequestEntityTooLarge, "request_too_large")

	// A declared Content-Length over the limit is refused before reading.
	r := h.do("POST", "/v1/messages/batches", bytes.Repeat([]byte(" "), limit+1), nil)
	h.checkError(r, http.StatusRequestEntityTooLarge, "request_too_large")
}

func TestHeaderAndRouteErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{noEngine: true})
	created := h.decodeBatch(h.do("POST", "/v1/messages/batches", createBody(1), nil))

	cases := []struct {
		name      string
		method    string
		path      string
		headers   map[string]string
		status    int
		errorType string
	}{
		{"missing key", "GET", "/v1/messages/batches", map[string]string{"x-api-key": ""},
			401, "authentication_error"},
		{"unknown key", "GET", "/v1/messages/batches", map[string]string{"x-api-key": "nope"},
			401, "authentication_error"},
		{"unknown bearer token", "GET", "/v1/messages/batches",
			map[string]string{"x-api-key": "", "authorization": "Bearer nope"}, 401, "authentication_error"},
		{"missing version", "GET", "/v1/messages/batches",
			map[string]string{"anthropic-version": ""}, 400, "invalid_request_error"},
		{"unknown version", "GET", "/v1/messages/batches",
			map[string]string{"anthropic-version": "2024-01-01"}, 400, "invalid_request_error"},
		{"workspace mismatch", "GET", "/v1/messages/batches",
			map[string]string{"anthropic-workspace-id": workspaceB}, 403, "permission_error"},
		{"limit zero", "GET", "/v1/messages/batches?limit=0", nil, 400, "invalid_request_error"},
		{"limit too big", "GET", "/v1/messages/batches?limit=1001", nil, 400, "invalid_request_error"},
		{"limit not a number", "GET", "/v1/messages/batches?limit=ten", nil, 400,
			"invalid_request_error"},
		{"limit empty", "GET", "/v1/messages/batches?limit=", nil, 400, "invalid_request_error"},
		{"unknown route", "GET", "/v1/messages/batchez", nil, 404, "not_found_error"},
		{"unknown batch", "GET", "/v1/messages/batches/msgbatch_nope", nil, 404, "not_found_error"},
		{"other workspace", "GET", "/v1/messages/batches/" + created.ID,
			map[string]string{"x-api-key": keyB}, 404, "not_found_error"},
		{"wrong method", "PUT", "/v1/messages/batches", nil, 405, "invalid_request_error"},
		{"wrong method on batch", "POST", "/v1/messages/batches/" + created.ID, nil, 405,
			"invalid_request_error"},
		{"get on cancel", "GET", "/v1/messages/batches/" + created.ID + "/cancel", nil, 405,
			"invalid_request_error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h.checkError(h.do(tc.method, tc.path, nil, tc.headers), tc.status, tc.errorType)
		})
	}
}

func TestAcceptedHeaderForms(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{noEngine: true})
	for _, headers := range []map[string]string{
		{"x-api-key": "", "authorization": "Bearer " + keyA, "anthropic-version": "2026-10-21"},
		{"anthropic-version": "2023-01-01", "anthropic-workspace-id": workspaceA},
	} {
		r := h.do("GET", "/v1/messages/batches?beta=true&limit=1000", nil, headers)
		if r.status != http.StatusOK {
			t.Errorf("headers %v: status %d: %s", headers, r.status, r.body)
		}
		if err := h.spec.Page(r.body); err != nil {
			t.Errorf("page does not match the schema: %v", err)
		}
	}
}

// recordingBackend records the params it receives and returns a fixed
// message.
type recordingBackend struct {
	mu     sync.Mutex
	params map[string][]byte
	betas  map[string][]string
}

func (b *recordingBackend) Send(_ context.Context, req backend.Request) (backend.Response, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.params[req.CustomID] = append([]byte(nil), req.Params...)
	b.betas[req.CustomID] = req.Betas
	msg := `{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],` +
		`"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":1}}`
	return backend.Response{Message: json.RawMessage(msg)}, nil
}

func TestParamsKeptByteForByte(t *testing.T) {
	t.Parallel()
	rec := &recordingBackend{params: map[string][]byte{}, betas: map[string][]string{}}
	h := newHarness(t, harnessOptions{backend: rec})

	params := `{ "max_tokens" : 5, "model":"m", "messages":[{"role":"user","content":"h\u00e9 \ud83d\ude00"}],` +
		`"future_field": {"nested": [1, 2.50, "x"]},   "speed":"standard" }`
	body := `{"requests":[` + request("kept", params) + `]}`
	created := h.decodeBatch(h.do("POST", "/v1/messages/batches?beta=true", []byte(body),
		map[string]string{"anthropic-beta": "message-batches-2024-09-24, output-128k-2025-02-19"}))
	h.waitEnded(keyA, created.ID, 10*time.Second)

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if got := string(rec.params["kept"]); got != params {
		t.Errorf("backend received\n%s\nwant\n%s", got, params)
	}
	if got := rec.betas["kept"]; len(got) != 2 || got[1] != "output-128k-2025-02-19" {
		t.Errorf("betas = %v", got)
	}
}

// TestRejectsHostUnfitForURLs sends Host headers that Go's client and server
// let through but that cannot be the host of a results_url. Without
// --public-url they get a JSON 400. With it, the Host header is not used.
func TestRejectsHostUnfitForURLs(t *testing.T) {
	t.Parallel()
	hosts := []string{"a.example,b.example", "h.example:port", strings.Repeat("h", 300)}

	h := newHarness(t, harnessOptions{noEngine: true})
	for _, host := range hosts {
		r := h.do(http.MethodGet, "/v1/messages/batches", nil, map[string]string{"Host": host})
		if msg := h.checkError(r, 400, "invalid_request_error"); !strings.Contains(msg, "Host") {
			t.Errorf("Host %.20q: message %q does not name the Host header", host, msg)
		}
	}

	fixed := newHarness(t, harnessOptions{noEngine: true,
		api: api.Config{PublicURL: "https://batchd.example"}})
	for _, host := range hosts {
		r := fixed.do(http.MethodGet, "/v1/messages/batches", nil, map[string]string{"Host": host})
		if r.status != http.StatusOK {
			t.Errorf("Host %.20q with a public URL: status %d, body %s", host, r.status, r.body)
		}
	}
}
