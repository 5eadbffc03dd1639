// Package anthropic implements a [backend.Backend] that sends each request of
// a batch to the Anthropic Messages API, or to any server that speaks it, as
// one POST {BaseURL}/v1/messages call.
//
// The request body is the batch request's params exactly as the client sent
// them, byte for byte and unknown fields included, so every Messages API
// feature works without this package knowing about it. The headers are
// x-api-key, anthropic-version and the batch's anthropic-beta values, minus
// message-batches-2024-09-24, which only concerns the batches endpoints.
//
// Send makes exactly one upstream call and never retries. It reports what
// happened so that the caller can decide:
//   - a 2xx reply whose body is a JSON object becomes the Response's Message;
//   - a 2xx reply that is not a JSON object is a temporary api_error;
//   - an error reply becomes a [*backend.Error] with the status and with the
//     type and message of the error envelope. When the body is not an
//     envelope, the type follows from the status. The error also carries the
//     wait from retry-after-ms or retry-after and the rate limits from the
//     anthropic-ratelimit-* headers;
//   - a connection failure or timeout is returned as a plain error that wraps
//     the cause, which [backend.AsError] turns into api_error or timeout_error.
//
// Limits: the reply is read whole into memory and may be at most
// [upstream.MaxBodyBytes] long. Streaming (stream: true) is not supported;
// batch params never ask for it because batches reject it.
package anthropic

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/backend/upstream"
)

// DefaultVersion is the anthropic-version header sent when Config.Version is
// empty.
const DefaultVersion = "2023-06-01"

// batchesBeta is the beta name that clients send with the Message Batches
// endpoints. It means nothing to /v1/messages, so it is not forwarded.
const batchesBeta = "message-batches-2024-09-24"

// Config configures a [Backend].
type Config struct {
	// BaseURL is the root of the Messages API, without /v1. It is required
	// and has no default, so that batchd never calls a real service unless
	// it is configured to. Users of the Anthropic API normally set
	// https://api.anthropic.com. A path prefix is kept:
	// https://proxy.example/anthropic sends to
	// https://proxy.example/anthropic/v1/messages.
	BaseURL string

	// APIKey is sent in the x-api-key header. When it is empty the header
	// is left out, for servers that authenticate in another way.
	APIKey string

	// Version is the anthropic-version header. Empty means DefaultVersion.
	Version string

	// Timeout bounds each call, from sending the request to reading the
	// whole reply. Zero means no bound other than the caller's context.
	Timeout time.Duration

	// HTTPClient sends the requests. Nil means a client made by
	// [upstream.NewHTTPClient].
	HTTPClient *http.Client
}

// Backend sends Messages requests to an Anthropic-compatible server. It is
// safe for concurrent use.
type Backend struct {
	endpoint string
	apiKey   string
	version  string
	timeout  time.Duration
	client   *http.Client

	// now returns the current time. It is used to measure a retry-after
	// HTTP-date when the reply has no Date header.
	now func() time.Time
}

// New returns a Backend configured by cfg. It fails when cfg.BaseURL is
// missing or is not an absolute http or https URL, or when cfg.Timeout is
// negative.
func New(cfg Config) (*Backend, error) {
	if err := upstream.CheckBaseURL(cfg.BaseURL); err != nil {
		return nil, fmt.Errorf("anthropic backend: %w", err)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("anthropic backend: invalid timeout %v: it must not be negative", cfg.Timeout)
	}

	client := cfg.HTTPClient
	if client == nil {
		client = upstream.NewHTTPClient()
	}

	b := &Backend{
		endpoint: upstream.JoinURL(cfg.BaseURL, "v1/messages"),
		apiKey:   cfg.APIKey,
		version:  cmp.Or(cfg.Version, DefaultVersion),
		timeout:  cfg.Timeout,
		client:   client,
		now:      time.Now,
	}
	return b, nil
}

// Send posts req.Params to /v1/messages and returns the Message the server
// produced. See the package documentation for how each outcome is reported.
func (b *Backend) Send(ctx context.Context, req backend.Request) (backend.Response, error) {
	if len(req.Params) == 0 {
		return backend.Response{}, &backend.Error{
			Type:    backend.TypeInvalidRequest,
			Message: "the request has no params",
		}
	}

	if b.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.timeout)
		defer cancel()
	}

	reply, err := upstream.PostJSON(ctx, b.client, b.endpoint, b.headers(req.Betas), req.Params)
	limits := parseLimits(reply.Header)
	if errors.Is(err, upstream.ErrBodyTooLarge) {
		return backend.Response{}, &backend.Error{
			Type:       backend.TypeAPI,
			Message:    fmt.Sprintf("the model server's reply is larger than %d bytes", upstream.MaxBodyBytes),
			StatusCode: reply.StatusCode,
			Limits:     limits,
		}
	}
	if err != nil {
		return backend.Response{}, fmt.Errorf("anthropic backend: %w", err)
	}

	if !reply.OK() {
		return backend.Response{}, b.replyError(reply, limits)
	}

	message, err := checkMessage(reply.Body)
	if err != nil {
		return backend.Response{}, &backend.Error{
			Type:       backend.TypeAPI,
			Message:    "the model server returned an invalid Message: " + err.Error(),
			StatusCode: reply.StatusCode,
			Limits:     limits,
		}
	}
	return backend.Response{Message: message, Limits: limits}, nil
}

// headers returns the headers of a request for a batch with the given betas.
func (b *Backend) headers(betas []string) http.Header {
	h := http.Header{}
	h.Set("Anthropic-Version", b.version)
	if b.apiKey != "" {
		h.Set("X-Api-Key", b.apiKey)
	}
	if beta := forwardedBetas(betas); beta != "" {
		h.Set("Anthropic-Beta", beta)
	}
	return h
}

// forwardedBetas returns the anthropic-beta header value for /v1/messages:
// the batch's betas in their order, split on commas, trimmed, without
// duplicates and without the batches beta. It returns "" when none remain.
func forwardedBetas(betas []string) string {
	var kept []string
	seen := make(map[string]bool)

	for _, value := range betas {
		for name := range strings.SplitSeq(value, ",") {
			name = strings.TrimSpace(name)
			if name == "" || name == batchesBeta || seen[name] {
				continue
			}
			seen[name] = true
			kept = append(kept, name)
		}
	}
	return strings.Join(kept, ",")
}

// checkMessage checks that body is one JSON object and returns it with its
// bytes unchanged, except for two cases. White space around the object is
// trimmed, and a body with line breaks inside is compacted, because a stored
// Message becomes one line of the JSONL results file.
func checkMessage(body []byte) (json.RawMessage, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, errors.New("the body is empty")
	}
	if body[0] != '{' {
		return nil, fmt.Errorf("the body is not a JSON object: it starts with %q", upstream.Snippet(body, 20))
	}
	if !json.Valid(body) {
		return nil, fmt.Errorf("the body is not valid JSON: %q", upstream.Snippet(body, 200))
	}

	if !bytes.ContainsAny(body, "\r\n") {
		return body, nil
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, body); err != nil {
		return nil, fmt.Errorf("compact the body: %w", err)
	}
	return compact.Bytes(), nil
}

// errorEnvelope is the Messages API error body:
// {"type":"error","error":{"type":…,"message":…},"request_id":…}.
type errorEnvelope struct {
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// replyError turns a non-2xx reply into a *backend.Error. The type and
// message come from the error envelope when the body is one. A type that an
// errored result does not accept (request_too_large, for one) is replaced by
// the type for the status and kept at the start of the message.
func (b *Backend) replyError(reply upstream.Reply, limits backend.Limits) *backend.Error {
	e := &backend.Error{
		Type:       upstream.ErrorTypeForStatus(reply.StatusCode),
		StatusCode: reply.StatusCode,
		RetryAfter: upstream.RetryAfter(reply.Header, b.now()),
		Limits:     limits,
	}

	var envelope errorEnvelope
	err := json.Unmarshal(reply.Body, &envelope)
	if err != nil || (envelope.Error.Type == "" && envelope.Error.Message == "") {
		e.Message = upstream.DescribeReply(reply)
		return e
	}

	e.Message = envelope.Error.Message
	if e.Message == "" {
		e.Message = fmt.Sprintf("the model server returned HTTP %d with no error message", reply.StatusCode)
	}
	switch {
	case upstream.IsResultErrorType(envelope.Error.Type):
		e.Type = envelope.Error.Type
	case envelope.Error.Type != "":
		e.Message = envelope.Error.Type + ": " + e.Message
	}
	return e
}
