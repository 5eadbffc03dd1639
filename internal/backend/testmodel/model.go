package testmodel

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/messages"
)

// RetryAfterDefault is the wait a rate_limit_error requests when
// Config.RetryAfter is zero.
const RetryAfterDefault = time.Second

// maxTracked bounds the bookkeeping maps of a Model. When one reaches this
// many entries it is cleared; see [Model].
const maxTracked = 1 << 20

// Config sets the delays and faults of a [Model]. With the zero value, a
// Model responds to every valid request at once and never fails on its own.
type Config struct {
	// Latency is the fixed delay before each response. Zero means none.
	// A request whose context ends during the delay returns the context's
	// error.
	Latency time.Duration

	// Jitter adds a further delay drawn from [0, Jitter), the same for every
	// send of one request. Zero adds none.
	Jitter time.Duration

	// OverloadedRate is the fraction of sends, from 0 to 1, that fail with
	// overloaded_error (HTTP 529).
	OverloadedRate float64

	// RateLimitRate is the fraction of sends, from 0 to 1, that fail with
	// rate_limit_error (HTTP 429) and a RetryAfter.
	RateLimitRate float64

	// APIErrorRate is the fraction of sends, from 0 to 1, that fail with
	// api_error (HTTP 500).
	APIErrorRate float64

	// Seed selects which sends the fault rates hit. Two Models with the same
	// Seed fail the same sends of the same requests, so tests are repeatable.
	Seed uint64

	// RetryAfter is the wait a rate_limit_error requests. Zero means
	// RetryAfterDefault.
	RetryAfter time.Duration
}

// Validate checks c: the delays must not be negative, and each fault rate and
// their sum must lie in [0, 1].
func (c Config) Validate() error {
	if c.Latency < 0 {
		return fmt.Errorf("test model latency %v is negative", c.Latency)
	}
	if c.Jitter < 0 {
		return fmt.Errorf("test model jitter %v is negative", c.Jitter)
	}
	if c.RetryAfter < 0 {
		return fmt.Errorf("test model retry-after %v is negative", c.RetryAfter)
	}

	rates := []struct {
		name  string
		value float64
	}{
		{"overloaded rate", c.OverloadedRate},
		{"rate-limit rate", c.RateLimitRate},
		{"api error rate", c.APIErrorRate},
	}
	for _, r := range rates {
		// The negated comparison also rejects NaN.
		if !(r.value >= 0 && r.value <= 1) {
			return fmt.Errorf("test model %s %v is outside [0, 1]", r.name, r.value)
		}
	}
	if sum := c.OverloadedRate + c.RateLimitRate + c.APIErrorRate; sum > 1 {
		return fmt.Errorf("test model fault rates add up to %v, more than 1", sum)
	}
	return nil
}

func (c Config) faulty() bool {
	return c.OverloadedRate > 0 || c.RateLimitRate > 0 || c.APIErrorRate > 0
}

// Model is the built-in deterministic test model. It is safe for concurrent
// use.
//
// To make fault draws and fail-once directives repeatable, a Model counts the
// consecutive failed sends of each request that is in a failure streak, and
// remembers which requests have used their fail-once. Each of those two maps
// is cleared when it reaches about a million entries, which restarts the
// streaks and lets fail-once requests fail once more.
type Model struct {
	cfg Config

	mu sync.Mutex
	// failures counts the consecutive failed sends of each request whose
	// last send failed because of a fault rate. Guarded by mu.
	failures map[digest]uint32
	// failedOnce contains the requests whose fail-once directive has fired.
	// Guarded by mu.
	failedOnce map[digest]struct{}
}

var _ backend.Backend = (*Model)(nil)

// New returns a test model with the given configuration. It panics when
// cfg.Validate fails, so callers that take the configuration from users must
// call Validate first.
func New(cfg Config) *Model {
	if err := cfg.Validate(); err != nil {
		panic("testmodel.New: " + err.Error())
	}
	if cfg.RetryAfter == 0 {
		cfg.RetryAfter = RetryAfterDefault
	}
	return &Model{
		cfg:        cfg,
		failures:   make(map[digest]uint32),
		failedOnce: make(map[digest]struct{}),
	}
}

// Send generates the response to one request. It returns a [*backend.Error]
// of type invalid_request_error at once when the params, their tool_choice
// or a directive in them are invalid. Otherwise it waits for the configured latency, applies
// the fail directives and fault rates, and returns the generated Message.
func (m *Model) Send(ctx context.Context, req backend.Request) (backend.Response, error) {
	if ctx.Err() != nil {
		return backend.Response{}, contextError(ctx)
	}

	parsed, err := messages.Parse(req.Params)
	if err != nil {
		return backend.Response{}, err
	}
	if err := checkToolChoice(parsed); err != nil {
		return backend.Response{}, err
	}
	lastText := lastUserText(parsed)
	dirs, err := readDirectives(lastText)
	if err != nil {
		return backend.Response{}, err
	}

	content := contentDigest(req.Params)
	id := requestDigest(content, req.BatchID, req.CustomID)

	if err := m.wait(ctx, id, dirs.delay); err != nil {
		return backend.Response{}, err
	}
	if err := m.fault(id, dirs); err != nil {
		return backend.Response{}, err
	}

	msg, err := generate(parsed, lastText, content, id)
	if err != nil {
		return backend.Response{}, err
	}
	body, err := msg.AppendJSON(make([]byte, 0, 1024))
	if err != nil {
		return backend.Response{}, fmt.Errorf("test model: encode message: %w", err)
	}
	return backend.Response{Message: body, Limits: backend.NoLimits}, nil
}

// wait sleeps for the configured latency, the request's jitter and the delay
// its directive requests, or until ctx ends.
func (m *Model) wait(ctx context.Context, id digest, extra time.Duration) error {
	delay := m.cfg.Latency + extra
	if m.cfg.Jitter > 0 {
		delay += time.Duration(unitFloat(mix(id.word(1))) * float64(m.cfg.Jitter))
	}
	if delay <= 0 {
		return nil
	}

	timer := time.NewTimer(delay)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return contextError(ctx)
	}
}

// contextError returns the error for a send whose context ended. It wraps
// both ctx.Err(), which callers test for context.DeadlineExceeded, and the
// cancellation cause when there is a distinct one.
func contextError(ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return fmt.Errorf("test model: %w: %w", err, cause)
	}
	return fmt.Errorf("test model: %w", err)
}

// fault returns the error that this send of the request fails with, or nil.
// A fail directive takes precedence over fail-once, and both over the fault
// rates.
func (m *Model) fault(id digest, dirs directives) error {
	if dirs.fail != "" {
		return forcedError(dirs.fail, "fail", m.cfg.RetryAfter)
	}

	if dirs.failOnce != "" {
		m.mu.Lock()
		_, done := m.failedOnce[id]
		if !done {
			if len(m.failedOnce) >= maxTracked {
				clear(m.failedOnce)
			}
			m.failedOnce[id] = struct{}{}
		}
		m.mu.Unlock()

		if !done {
			return forcedError(dirs.failOnce, "fail-once", m.cfg.RetryAfter)
		}
	}

	if !m.cfg.faulty() {
		return nil
	}
	return m.drawFault(id)
}

// drawFault draws the fault-rate outcome of this send. The draw depends on
// the Seed, the request and how many sends of it failed in a row before, so
// a retried request gets a fresh draw and a rerun of the same test gets the
// same sequence of outcomes.
func (m *Model) drawFault(id digest) error {
	m.mu.Lock()
	defer m.mu.Unlock()

	streak := m.failures[id]
	u := unitFloat(mix(m.cfg.Seed ^ mix(id.word(0)+uint64(streak))))

	var errType string
	var rate float64
	switch {
	case u < m.cfg.OverloadedRate:
		errType, rate = backend.TypeOverloaded, m.cfg.OverloadedRate
	case u < m.cfg.OverloadedRate+m.cfg.RateLimitRate:
		errType, rate = backend.TypeRateLimit, m.cfg.RateLimitRate
	case u < m.cfg.OverloadedRate+m.cfg.RateLimitRate+m.cfg.APIErrorRate:
		errType, rate = backend.TypeAPI, m.cfg.APIErrorRate
	default:
		delete(m.failures, id)
		return nil
	}

	if streak == 0 && len(m.failures) >= maxTracked {
		clear(m.failures)
	}
	m.failures[id] = streak + 1

	err := newError(errType, fmt.Sprintf("simulated %s from the test model (fault rate %g)",
		errType, rate))
	if errType == backend.TypeRateLimit {
		err.RetryAfter = m.cfg.RetryAfter
	}
	return err
}

// statusCodes maps each error type the test model can return to the HTTP
// status the Messages API uses for it.
var statusCodes = map[string]int{
	backend.TypeInvalidRequest: http.StatusBadRequest,
	backend.TypeAuthentication: http.StatusUnauthorized,
	backend.TypePermission:     http.StatusForbidden,
	backend.TypeNotFound:       http.StatusNotFound,
	backend.TypeRateLimit:      http.StatusTooManyRequests,
	backend.TypeAPI:            http.StatusInternalServerError,
	backend.TypeTimeout:        http.StatusGatewayTimeout,
	backend.TypeOverloaded:     529,
}

func newError(errType, message string) *backend.Error {
	return &backend.Error{
		Type:       errType,
		Message:    message,
		StatusCode: statusCodes[errType],
		Limits:     backend.NoLimits,
	}
}

// forcedError returns the error that a fail or fail-once directive requests.
func forcedError(errType, directive string, retryAfter time.Duration) *backend.Error {
	err := newError(errType, fmt.Sprintf("%s forced by the test model's [[batchd:%s=%s]] directive",
		errType, directive, errType))
	if errType == backend.TypeRateLimit {
		err.RetryAfter = retryAfter
	}
	return err
}
