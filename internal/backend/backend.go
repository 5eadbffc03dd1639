// Package backend defines the interface between batchd's engine and the model
// servers that respond to each request of a batch. Implementations live in
// subpackages: testmodel (built in, deterministic), anthropic and openai.
package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Request is one Messages API call to make on behalf of a batch.
type Request struct {
	BatchID  string
	CustomID string

	// Params is the Messages API request body exactly as the client sent it,
	// unknown fields included. It has passed messages.Validate.
	Params json.RawMessage

	// Model is params.model, read once for routing.
	Model string

	// Betas are the anthropic-beta values the batch was created with.
	Betas []string
}

// Response is a model's successful response.
type Response struct {
	// Message is the Messages API response body, a Message object.
	Message json.RawMessage

	// Limits is the server's report on its rate limits, if it sent one.
	Limits Limits
}

// Limits is a model server's report on its rate limits, read from headers
// such as anthropic-ratelimit-requests-remaining. Fields the server did not
// send are -1 (counts) or zero (times).
type Limits struct {
	RequestsLimit     int64
	RequestsRemaining int64
	RequestsReset     time.Time

	TokensLimit     int64
	TokensRemaining int64
	TokensReset     time.Time
}

// NoLimits is a [Limits] with nothing known.
var NoLimits = Limits{RequestsLimit: -1, RequestsRemaining: -1, TokensLimit: -1, TokensRemaining: -1}

// Backend sends one request to a model and returns the Message it produced.
type Backend interface {
	// Send returns the model's Message on success. On failure it returns an
	// error; an [*Error] carries the API error type that the request's
	// errored result reports. Any other error (connection reset, timeout) is
	// treated as a temporary api_error.
	Send(ctx context.Context, req Request) (Response, error)
}

// Error types from the Messages API that a backend can report.
const (
	TypeInvalidRequest = "invalid_request_error"
	TypeAuthentication = "authentication_error"
	TypePermission     = "permission_error"
	TypeNotFound       = "not_found_error"
	TypeRateLimit      = "rate_limit_error"
	TypeAPI            = "api_error"
	TypeTimeout        = "timeout_error"
	TypeOverloaded     = "overloaded_error"
)

// Error is a failure reported by a model, in the Messages API's terms.
type Error struct {
	// Type is the Messages API error type, such as overloaded_error.
	Type string
	// Message is the human-readable explanation.
	Message string
	// StatusCode is the HTTP status of the model server's response, or 0.
	StatusCode int
	// RetryAfter is how long the server asked the caller to wait, or 0.
	RetryAfter time.Duration
	// Limits is the server's report on its rate limits.
	Limits Limits
}

func (e *Error) Error() string {
	if e.StatusCode != 0 {
		return fmt.Sprintf("%s (HTTP %d): %s", e.Type, e.StatusCode, e.Message)
	}
	return e.Type + ": " + e.Message
}

// Temporary reports whether the same request may succeed if sent again:
// rate limits, overload, server errors and timeouts.
func (e *Error) Temporary() bool {
	switch e.Type {
	case TypeRateLimit, TypeOverloaded, TypeAPI, TypeTimeout:
		return true
	}
	return false
}

// AsError converts any error from [Backend.Send] into an [*Error]. Errors that
// are not already one become a temporary api_error, or a timeout_error when
// the context deadline passed.
func AsError(err error) *Error {
	var be *Error
	if errors.As(err, &be) {
		return be
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &Error{Type: TypeTimeout, Message: "the model did not respond in time: " + err.Error()}
	}
	return &Error{Type: TypeAPI, Message: err.Error()}
}

type retryStopKey struct{}

// WithRetryStop returns a context that carries stop. Backends that retry
// failed attempts, such as the policy wrapper, call it before each further
// attempt and give up, returning the last error, once it reports true. The
// engine uses it to end retries of requests whose batch was canceled.
func WithRetryStop(ctx context.Context, stop func() bool) context.Context {
	return context.WithValue(ctx, retryStopKey{}, stop)
}

// RetryStopped reports whether the stop function in ctx, if any, requests that no
// further attempt be made.
func RetryStopped(ctx context.Context) bool {
	stop, _ := ctx.Value(retryStopKey{}).(func() bool)
	return stop != nil && stop()
}
