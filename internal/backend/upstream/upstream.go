// Package upstream contains the HTTP plumbing shared by the backends that call
// a model server over HTTP (anthropic and openai). It maps an HTTP status to a
// Messages API error type, reads the wait that retry-after-ms or retry-after
// requests, reads bodies up to a limit and builds the default HTTP client.
//
// It makes no decisions about retries. Backends report what the server
// returned, and the engine decides what to do with it.
package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/batchd/batchd/internal/backend"
)

// TypeBilling is the Messages API error type for billing problems (HTTP 402).
// Errored results accept it, but [backend] has no constant for it.
const TypeBilling = "billing_error"

// MaxBodyBytes is the largest response body a backend reads from a model
// server. A Message with a few hundred thousand output tokens stays far below
// it, so a longer body points to a misbehaving server.
const MaxBodyBytes = 64 << 20

// ErrBodyTooLarge is returned by [ReadBody] when a body is longer than its
// limit.
var ErrBodyTooLarge = errors.New("response body too large")

// ErrorTypeForStatus returns the Messages API error type that describes an
// HTTP status from a model server. It is used when the server's error body
// does not name a type that an errored result accepts.
//
// 409 maps to api_error because the official SDKs retry it as a transient
// conflict. Other 4xx statuses map to invalid_request_error and other 5xx
// statuses to api_error, as the Messages API documents for unlisted codes.
// Anything outside 4xx and 5xx (an unexpected redirect or 1xx) is an
// api_error.
func ErrorTypeForStatus(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		return backend.TypeInvalidRequest
	case http.StatusUnauthorized:
		return backend.TypeAuthentication
	case http.StatusPaymentRequired:
		return TypeBilling
	case http.StatusForbidden:
		return backend.TypePermission
	case http.StatusNotFound:
		return backend.TypeNotFound
	case http.StatusRequestTimeout, http.StatusGatewayTimeout:
		return backend.TypeTimeout
	case http.StatusConflict:
		return backend.TypeAPI
	case http.StatusTooManyRequests:
		return backend.TypeRateLimit
	case 529:
		return backend.TypeOverloaded
	}

	switch {
	case status >= 400 && status < 500:
		return backend.TypeInvalidRequest
	default:
		return backend.TypeAPI
	}
}

// IsResultErrorType reports whether t is an error type that the error envelope
// inside an errored result accepts. Types such as request_too_large or
// conflict_error are valid in Messages API responses but not in a result.
func IsResultErrorType(t string) bool {
	switch t {
	case backend.TypeInvalidRequest, backend.TypeAuthentication, TypeBilling,
		backend.TypePermission, backend.TypeNotFound, backend.TypeRateLimit,
		backend.TypeTimeout, backend.TypeAPI, backend.TypeOverloaded:
		return true
	}
	return false
}

// RetryAfter returns the wait that a response's headers request, or 0 when
// they request none or cannot be read. retry-after-ms (milliseconds, possibly
// fractional) takes precedence over retry-after, which holds seconds
// (possibly fractional) or an HTTP-date. An HTTP-date is measured from the
// response's Date header when the server sent a valid one, so a clock skew
// between the two machines does not change the wait, and from now otherwise.
// Negative waits and dates in the past give 0.
func RetryAfter(h http.Header, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After-Ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil {
			return clampDuration(ms * float64(time.Millisecond))
		}
	}

	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if seconds, err := strconv.ParseFloat(v, 64); err == nil {
		return clampDuration(seconds * float64(time.Second))
	}

	at, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	if date, err := http.ParseTime(h.Get("Date")); err == nil {
		now = date
	}
	return max(at.Sub(now), 0)
}

// clampDuration converts a count of nanoseconds to a Duration, mapping NaN and
// negative values to 0 and values too large for a Duration to its maximum.
func clampDuration(nanoseconds float64) time.Duration {
	switch {
	case math.IsNaN(nanoseconds) || nanoseconds <= 0:
		return 0
	case nanoseconds >= math.MaxInt64:
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(nanoseconds)
}

// Reply is a model server's HTTP reply with its body read whole.
type Reply struct {
	StatusCode int
	Header     http.Header
	Body       []byte
}

// OK reports whether the reply has a 2xx status.
func (r Reply) OK() bool {
	return r.StatusCode >= 200 && r.StatusCode <= 299
}

// PostJSON sends body as a JSON POST request to url with the extra headers in
// header, and reads the whole reply.
//
// A failure to connect, send or read is returned as an error that wraps the
// cause, such as context.DeadlineExceeded. A reply body longer than
// [MaxBodyBytes] gives an error wrapping [ErrBodyTooLarge], together with the
// Reply's status and headers.
func PostJSON(ctx context.Context, client *http.Client, url string, header http.Header,
	body []byte) (Reply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return Reply{}, fmt.Errorf("create request: %w", err)
	}
	for key, values := range header {
		req.Header[key] = values
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")

	resp, err := client.Do(req)
	if err != nil {
		return Reply{}, fmt.Errorf("send request: %w", err)
	}
	defer resp.Body.Close()

	reply := Reply{StatusCode: resp.StatusCode, Header: resp.Header}
	reply.Body, err = ReadBody(resp.Body, MaxBodyBytes)
	if err != nil {
		return reply, fmt.Errorf("read reply (HTTP %d): %w", resp.StatusCode, err)
	}
	return reply, nil
}

// ReadBody reads all of r, failing with [ErrBodyTooLarge] when r holds more
// than limit bytes.
func ReadBody(r io.Reader, limit int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read response body: %w", err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrBodyTooLarge, limit)
	}
	return body, nil
}

// maxIdlePerHost is above any concurrency a backend is likely to be given.
const maxIdlePerHost = 4096

// NewHTTPClient returns the client a backend uses when its configuration
// names none.
//
// It has no overall timeout, because backends bound each call with a context
// deadline instead. It does not follow redirects, so that one Send is one
// call and a redirect shows up as an error naming its Location. It keeps up
// to maxIdlePerHost idle connections per host: the default of 2 would make a
// backend that runs many requests at once open and close a connection for
// almost every request. In practice the backend's concurrency bounds them,
// since only a connection that a call opened is kept, and the transport's
// idle timeout closes those left unused.
func NewHTTPClient() *http.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = 0
	transport.MaxIdleConnsPerHost = maxIdlePerHost
	return &http.Client{
		Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// CheckBaseURL checks that base is an absolute http or https URL with a
// host, so that a configuration mistake is reported when a backend is created
// instead of on every request.
func CheckBaseURL(base string) error {
	if base == "" {
		return errors.New("base URL is missing")
	}

	u, err := url.Parse(base)
	if err != nil {
		return fmt.Errorf("invalid base URL %q: %w", base, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("invalid base URL %q: the scheme must be http or https", base)
	}
	if u.Host == "" {
		return fmt.Errorf("invalid base URL %q: the host is missing", base)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("invalid base URL %q: it must not have a query or fragment", base)
	}
	return nil
}

// JoinURL appends path to base, which may carry a path prefix of its own,
// with exactly one slash between them.
func JoinURL(base, path string) string {
	return strings.TrimRight(base, "/") + "/" + strings.TrimLeft(path, "/")
}

// StatusLine returns "HTTP 502 Bad Gateway", or "HTTP 529" for a status that
// net/http has no text for.
func StatusLine(status int) string {
	if text := http.StatusText(status); text != "" {
		return fmt.Sprintf("HTTP %d %s", status, text)
	}
	return fmt.Sprintf("HTTP %d", status)
}

// DescribeReply returns an error message for a reply whose body is not an
// error object: its status line and the start of its body. A redirect also
// names its Location, since it usually means a wrong base URL.
func DescribeReply(reply Reply) string {
	msg := "the model server returned " + StatusLine(reply.StatusCode)
	if location := reply.Header.Get("Location"); location != "" && reply.StatusCode/100 == 3 {
		msg += " to " + location + "; check the backend's base URL"
	}
	if text := Snippet(reply.Body, 200); text != "" {
		msg += ": " + text
	}
	return msg
}

// Snippet returns up to limit bytes of body as printable one-line text, for
// error messages: invalid UTF-8 is replaced and runs of white space, line
// breaks included, become one space.
func Snippet(body []byte, limit int) string {
	if len(body) > limit {
		body = body[:limit]
	}
	text := strings.ToValidUTF8(string(body), "\uFFFD")
	return strings.Join(strings.Fields(text), " ")
}
