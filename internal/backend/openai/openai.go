// Package openai implements a [backend.Backend] that runs each request of a
// batch on an OpenAI-compatible server, such as vLLM, Ollama or llama.cpp's
// llama-server. It translates the Messages API request into one
// POST {BaseURL}/v1/chat/completions call and the reply back into a Messages
// API Message.
//
// The translation covers text, images (base64 and url sources), custom tools,
// tool_choice, tool calls and tool results, system prompts, stop sequences,
// max_tokens, temperature, top_p, top_k and JSON-schema output. Anything else
// that changes the model's input or behavior cannot be translated: document
// blocks, enabled thinking, server tools such as web_search, citations, MCP
// servers, containers, a final assistant message used as a prefill and
// unknown top-level fields. A request that uses one fails with an
// invalid_request_error naming the field, and no call is made.
// docs/backends.md lists the full mapping.
//
// Send makes at most one upstream call and never retries:
//   - a 2xx reply becomes a Message with a new msg_ id and the requested
//     model name; a reply that is not a valid chat completion, including one
//     with tool call arguments that are not a JSON object, is a temporary
//     api_error;
//   - an error reply becomes a [*backend.Error] typed by its HTTP status,
//     with the server's message, the wait from retry-after-ms or
//     retry-after, and the limits from the x-ratelimit-* headers;
//   - a connection failure or timeout is returned as a plain error that wraps
//     the cause, which [backend.AsError] turns into api_error or timeout_error.
//
// Limits: chat completions does not say which stop sequence ended the text,
// so stop_reason is end_turn in that case unless the server is vLLM, which
// reports it. Reasoning text that some servers return next to the answer is
// dropped, because a thinking block needs a signature this backend cannot
// make. The reply is read whole into memory, up to [upstream.MaxBodyBytes].
package openai

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/backend/upstream"
)

// Config configures a [Backend].
type Config struct {
	// BaseURL is the root of the server's API, without /v1, such as
	// http://127.0.0.1:8000 for vLLM or http://127.0.0.1:11434 for Ollama.
	// It is required. A path prefix is kept.
	BaseURL string

	// APIKey is sent as "Authorization: Bearer <APIKey>". When it is empty
	// no Authorization header is sent.
	APIKey string

	// Timeout bounds each call, from sending the request to reading the
	// whole reply. Zero means no bound other than the caller's context.
	Timeout time.Duration

	// HTTPClient sends the requests. Nil means a client made by
	// [upstream.NewHTTPClient].
	HTTPClient *http.Client

	// ModelMap maps a requested model name, such as "claude-sonnet-4-5", to
	// the name the server serves it under, such as "Qwen/Qwen3-8B". A model that is
	// not in the map is sent under its own name. The Message always reports
	// the requested name.
	ModelMap map[string]string
}

// Backend sends Messages requests to an OpenAI-compatible server. It is safe
// for concurrent use.
type Backend struct {
	endpoint string
	apiKey   string
	timeout  time.Duration
	client   *http.Client
	modelMap map[string]string

	// now returns the current time, to turn relative reset times and
	// retry-after dates into absolute times and durations.
	now func() time.Time
}

// New returns a Backend configured by cfg. It fails when cfg.BaseURL is
// missing or is not an absolute http or https URL, when cfg.Timeout is
// negative, or when cfg.ModelMap contains an empty name.
func New(cfg Config) (*Backend, error) {
	if err := upstream.CheckBaseURL(cfg.BaseURL); err != nil {
		return nil, fmt.Errorf("openai backend: %w", err)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("openai backend: invalid timeout %v: it must not be negative", cfg.Timeout)
	}
	for requested, upstreamName := range cfg.ModelMap {
		if requested == "" || upstreamName == "" {
			return nil, fmt.Errorf("openai backend: invalid model map entry %q: %q: "+
				"both names must be non-empty", requested, upstreamName)
		}
	}

	client := cfg.HTTPClient
	if client == nil {
		client = upstream.NewHTTPClient()
	}

	b := &Backend{
		endpoint: upstream.JoinURL(cfg.BaseURL, "v1/chat/completions"),
		apiKey:   cfg.APIKey,
		timeout:  cfg.Timeout,
		client:   client,
		modelMap: maps.Clone(cfg.ModelMap),
		now:      time.Now,
	}
	return b, nil
}

// Send translates req.Params, posts them to /v1/chat/completions and
// translates the reply. See the package documentation for how each outcome
// is reported.
func (b *Backend) Send(ctx context.Context, req backend.Request) (backend.Response, error) {
	chat, err := translateRequest(req.Params)
	if err != nil {
		return backend.Response{}, err
	}
	requested := cmp.Or(req.Model, chat.Model)
	chat.Model = requested
	if mapped, ok := b.modelMap[requested]; ok {
		chat.Model = mapped
	}

	body, err := json.Marshal(chat)
	if err != nil {
		return backend.Response{}, fmt.Errorf("openai backend: encode chat request: %w", err)
	}

	if b.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.timeout)
		defer cancel()
	}

	header := http.Header{}
	if b.apiKey != "" {
		header.Set("Authorization", "Bearer "+b.apiKey)
	}
	reply, err := upstream.PostJSON(ctx, b.client, b.endpoint, header, body)
	limits := parseLimits(reply.Header, b.now())
	if errors.Is(err, upstream.ErrBodyTooLarge) {
		return backend.Response{}, &backend.Error{
			Type:       backend.TypeAPI,
			Message:    fmt.Sprintf("the model server's reply is larger than %d bytes", upstream.MaxBodyBytes),
			StatusCode: reply.StatusCode,
			Limits:     limits,
		}
	}
	if err != nil {
		return backend.Response{}, fmt.Errorf("openai backend: %w", err)
	}

	if !reply.OK() {
		return backend.Response{}, b.replyError(reply, limits)
	}

	msg, err := translateReply(reply.Body, requested, chat.Stop)
	if err != nil {
		return backend.Response{}, &backend.Error{
			Type:       backend.TypeAPI,
			Message:    err.Error(),
			StatusCode: reply.StatusCode,
			Limits:     limits,
		}
	}
	encoded, err := encodeMessage(msg)
	if err != nil {
		return backend.Response{}, err
	}
	return backend.Response{Message: encoded, Limits: limits}, nil
}

// errorBody holds the error shapes of OpenAI-compatible servers:
// {"error":{"message":…,"type":…,"code":…}} from OpenAI, llama.cpp and
// Ollama, {"error":"…"}, and older vLLM's flat
// {"object":"error","message":…,"type":…,"code":…}.
type errorBody struct {
	Error   json.RawMessage `json:"error"`
	Message string          `json:"message"`
	Type    string          `json:"type"`
	Code    json.RawMessage `json:"code"`
}

type errorObject struct {
	Message string          `json:"message"`
	Type    string          `json:"type"`
	Code    json.RawMessage `json:"code"`
}

// readErrorBody returns the message, type and code of an error body, all
// empty when body has none of the known shapes.
func readErrorBody(body []byte) errorObject {
	var e errorBody
	if err := json.Unmarshal(body, &e); err != nil {
		return errorObject{}
	}

	var text string
	if err := json.Unmarshal(e.Error, &text); err == nil {
		return errorObject{Message: text}
	}
	var inner errorObject
	if err := json.Unmarshal(e.Error, &inner); err == nil && (inner.Message != "" || inner.Type != "") {
		return inner
	}
	return errorObject{Message: e.Message, Type: e.Type, Code: e.Code}
}

// errorText returns the message of an "error" field that is a string or an
// object, for a 2xx reply that reports an error.
func errorText(raw json.RawMessage) string {
	e := readErrorBody([]byte(`{"error":` + string(raw) + `}`))
	if e.Message != "" {
		return e.Message
	}
	return upstream.Snippet(raw, 200)
}

// replyError turns a non-2xx reply into a *backend.Error typed by status.
// OpenAI's insufficient_quota, sent with 429, becomes billing_error, because
// waiting does not help.
func (b *Backend) replyError(reply upstream.Reply, limits backend.Limits) *backend.Error {
	e := &backend.Error{
		Type:       upstream.ErrorTypeForStatus(reply.StatusCode),
		StatusCode: reply.StatusCode,
		RetryAfter: upstream.RetryAfter(reply.Header, b.now()),
		Limits:     limits,
	}

	body := readErrorBody(reply.Body)
	code := codeText(body.Code)
	if body.Type == "insufficient_quota" || code == "insufficient_quota" {
		e.Type = upstream.TypeBilling
	}

	if body.Message == "" {
		e.Message = upstream.DescribeReply(reply)
		return e
	}

	e.Message = body.Message
	var details []string
	if body.Type != "" {
		details = append(details, "type "+body.Type)
	}
	if code != "" {
		details = append(details, "code "+code)
	}
	if len(details) > 0 {
		e.Message += " (" + strings.Join(details, ", ") + ")"
	}
	return e
}

// codeText returns an error code, sent as a string or a number, as text.
func codeText(raw json.RawMessage) string {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		return n.String()
	}
	return ""
}

// parseLimits reads the x-ratelimit-* headers that OpenAI and some
// compatible servers send. Reset times are relative, such as "6m0s" or
// "20ms", or plain seconds, and are turned into absolute times from now.
func parseLimits(h http.Header, now time.Time) backend.Limits {
	limits := backend.NoLimits
	if h == nil {
		return limits
	}

	limits.RequestsLimit = parseCount(h.Get("X-Ratelimit-Limit-Requests"))
	limits.RequestsRemaining = parseCount(h.Get("X-Ratelimit-Remaining-Requests"))
	limits.RequestsReset = parseReset(h.Get("X-Ratelimit-Reset-Requests"), now)
	limits.TokensLimit = parseCount(h.Get("X-Ratelimit-Limit-Tokens"))
	limits.TokensRemaining = parseCount(h.Get("X-Ratelimit-Remaining-Tokens"))
	limits.TokensReset = parseReset(h.Get("X-Ratelimit-Reset-Tokens"), now)
	return limits
}

// parseCount parses a non-negative integer header value, returning -1 when
// the value is missing or invalid.
func parseCount(v string) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// parseReset parses a relative reset time, returning the zero time when the
// value is missing or invalid.
func parseReset(v string, now time.Time) time.Time {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}
	}

	// The bound keeps the conversion to a Duration from overflowing.
	if seconds, err := strconv.ParseFloat(v, 64); err == nil && seconds >= 0 && seconds < 1e9 {
		return now.Add(time.Duration(seconds * float64(time.Second)))
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(d)
	}
	return time.Time{}
}
