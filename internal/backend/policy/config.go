package policy

import (
	"cmp"
	"errors"
	"fmt"
	"time"
)

// Defaults for the zero fields of a [Config].
const (
	DefaultMaxAttempts    = 5
	DefaultBaseDelay      = time.Second
	DefaultMaxDelay       = time.Minute
	DefaultMaxRetryAfter  = 5 * time.Minute
	DefaultTimeout        = 10 * time.Minute
	DefaultMaxConcurrency = 32
	DefaultMinConcurrency = 1
)

// Config sets how a [Policy] treats one backend. A zero field takes its
// default. Negative values are invalid.
type Config struct {
	// Name is the backend's name in logs.
	Name string

	// MaxAttempts is the number of times one request is sent at most, the
	// first attempt included. 1 disables retries. Default 5.
	MaxAttempts int

	// BaseDelay is the backoff before the second attempt, doubled for each
	// attempt after it. Default 1s.
	BaseDelay time.Duration

	// MaxDelay caps the backoff computed from BaseDelay. Default 60s.
	MaxDelay time.Duration

	// MaxRetryAfter caps the wait that a server's retry-after or reset time
	// can impose, for a retry and for pacing alike. Default 5m.
	MaxRetryAfter time.Duration

	// Timeout bounds each attempt. Default 10m.
	Timeout time.Duration

	// MaxConcurrency is the most requests in flight at once, and the
	// adaptive limit's starting value. Default 32.
	MaxConcurrency int

	// MinConcurrency is the floor below which 429s and 529s do not push the
	// adaptive limit. Default 1.
	MinConcurrency int

	// RequestsReserve is the number of requests left in the server's window
	// at which pacing holds new sends until the window resets. Default 0:
	// hold only when none are left.
	RequestsReserve int64

	// TokensReserve is the number of tokens left at which pacing holds new
	// sends until the tokens reset. Default 0.
	TokensReserve int64

	// Sleeper waits between attempts and while pacing. Nil means
	// [RealSleeper]; tests set a [FakeSleeper].
	Sleeper Sleeper
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	c.MaxAttempts = cmp.Or(c.MaxAttempts, DefaultMaxAttempts)
	c.BaseDelay = cmp.Or(c.BaseDelay, DefaultBaseDelay)
	c.MaxDelay = cmp.Or(c.MaxDelay, DefaultMaxDelay)
	c.MaxRetryAfter = cmp.Or(c.MaxRetryAfter, DefaultMaxRetryAfter)
	c.Timeout = cmp.Or(c.Timeout, DefaultTimeout)
	c.MaxConcurrency = cmp.Or(c.MaxConcurrency, DefaultMaxConcurrency)
	c.MinConcurrency = cmp.Or(c.MinConcurrency, DefaultMinConcurrency)
	if c.Sleeper == nil {
		c.Sleeper = RealSleeper{}
	}
	return c
}

// Validate checks c after defaults are applied, and returns every problem
// found, each naming the field and its value.
func (c Config) Validate() error {
	c = c.WithDefaults()

	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}

	if c.MaxAttempts < 1 {
		add("max attempts %d is invalid: it must be at least 1", c.MaxAttempts)
	}
	for _, d := range []struct {
		name  string
		value time.Duration
	}{
		{"base delay", c.BaseDelay},
		{"max delay", c.MaxDelay},
		{"max retry-after", c.MaxRetryAfter},
		{"timeout", c.Timeout},
	} {
		if d.value < 0 {
			add("%s %v is invalid: it must not be negative", d.name, d.value)
		}
	}
	if c.MaxDelay < c.BaseDelay {
		add("max delay %v is invalid: it is below base delay %v", c.MaxDelay, c.BaseDelay)
	}

	if c.MinConcurrency < 1 {
		add("min concurrency %d is invalid: it must be at least 1", c.MinConcurrency)
	}
	if c.MaxConcurrency < c.MinConcurrency {
		add("max concurrency %d is invalid: it is below min concurrency %d",
			c.MaxConcurrency, c.MinConcurrency)
	}

	if c.RequestsReserve < 0 {
		add("requests reserve %d is invalid: it must not be negative", c.RequestsReserve)
	}
	if c.TokensReserve < 0 {
		add("tokens reserve %d is invalid: it must not be negative", c.TokensReserve)
	}
	return errors.Join(errs...)
}
