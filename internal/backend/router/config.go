package router

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/batchd/batchd/internal/backend/policy"
)

// Backend types that a config file can name.
const (
	TypeAnthropic = "anthropic"
	TypeOpenAI    = "openai"
	TypeTestModel = "testmodel"
)

var knownTypes = []string{TypeAnthropic, TypeOpenAI, TypeTestModel}

// Config is the routing configuration: the backends and the routes from
// model names to them. docs/config.md describes its file format.
type Config struct {
	Backends []BackendConfig `yaml:"backends"`
	Routes   []RouteConfig   `yaml:"routes"`
}

// BackendConfig is one model backend. The router builds the backend itself
// with the [Factory] registered for Type, and wraps it in a [policy.Policy]
// configured by the remaining fields.
type BackendConfig struct {
	// Name identifies the backend in routes, logs and metrics.
	Name string `yaml:"name"`
	// Type is anthropic, openai or testmodel.
	Type string `yaml:"type"`

	// BaseURL is the model server's URL, required for anthropic and openai.
	BaseURL string `yaml:"base_url"`
	// APIKeyEnv names the environment variable that contains the API key.
	APIKeyEnv string `yaml:"api_key_env"`
	// APIKey is the value of APIKeyEnv, set by [Load] or
	// [Config.ResolveAPIKeys]. A config file cannot set it.
	APIKey string `yaml:"-"`
	// ModelMap renames models before they are sent, from the name in the
	// batch request to the name the server uses. Only for type openai.
	ModelMap map[string]string `yaml:"model_map"`
	// AnthropicVersion is the anthropic-version header to send. Only for
	// type anthropic. Empty means the anthropic backend's default.
	AnthropicVersion string `yaml:"anthropic_version"`

	// Concurrency is the maximum number of requests in flight. Nil means
	// the policy's default.
	Concurrency *int `yaml:"concurrency"`
	// MinConcurrency is the floor of the adaptive limit. Nil means 1.
	MinConcurrency *int `yaml:"min_concurrency"`
	// Timeout bounds each attempt.
	Timeout Duration `yaml:"timeout"`
	// Retry sets the retries of temporary failures.
	Retry RetryConfig `yaml:"retry"`
	// Pacing sets when rate-limit reports hold new sends.
	Pacing PacingConfig `yaml:"pacing"`

	// TestModel sets the test model's behaviour. It is allowed only with
	// type testmodel.
	TestModel *TestModelConfig `yaml:"testmodel"`
}

// RetryConfig is the retry part of a [BackendConfig]. Unset fields take the
// defaults of [policy.Config].
type RetryConfig struct {
	MaxAttempts   *int     `yaml:"max_attempts"`
	BaseDelay     Duration `yaml:"base_delay"`
	MaxDelay      Duration `yaml:"max_delay"`
	MaxRetryAfter Duration `yaml:"max_retry_after"`
}

// PacingConfig is the pacing part of a [BackendConfig].
type PacingConfig struct {
	// RequestsReserve is the count of requests remaining at which new sends
	// wait for the rate-limit reset. Default 0.
	RequestsReserve int64 `yaml:"requests_reserve"`
	// TokensReserve is the same for tokens remaining. Default 0.
	TokensReserve int64 `yaml:"tokens_reserve"`
}

// TestModelConfig sets how the built-in test model behaves, so that a
// deployment or a load test can exercise slow responses and failures. The
// rates are fractions of sends, from 0 to 1, and add up to at most 1. The
// fields mirror the test model's own configuration.
type TestModelConfig struct {
	// Latency is the fixed delay before each response.
	Latency Duration `yaml:"latency"`
	// Jitter adds a further random delay from 0 up to Jitter.
	Jitter Duration `yaml:"jitter"`
	// OverloadedRate is the fraction of sends that fail with
	// overloaded_error (529).
	OverloadedRate float64 `yaml:"overloaded_rate"`
	// RateLimitRate is the fraction that fail with rate_limit_error (429).
	RateLimitRate float64 `yaml:"rate_limit_rate"`
	// APIErrorRate is the fraction that fail with api_error (500).
	APIErrorRate float64 `yaml:"api_error_rate"`
	// Seed selects which sends the rates hit, so that runs are repeatable.
	Seed uint64 `yaml:"seed"`
	// RetryAfter is the wait that a rate_limit_error requests. Unset means
	// the test model's default.
	RetryAfter Duration `yaml:"retry_after"`
}

// RouteConfig sends the requests whose model matches Model to Backend.
type RouteConfig struct {
	// Model is an exact model name or a glob in the syntax of path.Match,
	// except that * and ? also match '/'.
	Model string `yaml:"model"`
	// Backend is the name of a backend.
	Backend string `yaml:"backend"`
}

// Duration is a duration in the config file, written in the syntax of
// time.ParseDuration, such as "90s", "10m" or "1h30m". A value that does not
// parse is kept as an error for [Config.Validate] to report with its field.
type Duration struct {
	Duration time.Duration

	set bool
	err error
}

// UnmarshalYAML parses a duration from a scalar node.
func (d *Duration) UnmarshalYAML(node *yaml.Node) error {
	d.set = true
	if node.Kind != yaml.ScalarNode {
		d.err = fmt.Errorf("invalid duration on line %d: want a string such as 30s or 10m",
			node.Line)
		return nil
	}

	v, err := time.ParseDuration(node.Value)
	if err != nil {
		d.err = fmt.Errorf("invalid duration %q: want a number with a unit, such as 30s or 10m",
			node.Value)
		return nil
	}
	d.Duration = v
	return nil
}

// IsSet reports whether the file gave a value.
func (d Duration) IsSet() bool { return d.set }

// DefaultConfig returns the configuration used without a config file: one
// test model backend named testmodel that serves every model.
func DefaultConfig() Config {
	return Config{
		Backends: []BackendConfig{{Name: TypeTestModel, Type: TypeTestModel}},
		Routes:   []RouteConfig{{Model: "*", Backend: TypeTestModel}},
	}
}

// Load reads the config file at name, checks it and fills in each backend's
// API key from the environment.
func Load(name string) (Config, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return Config{}, fmt.Errorf("read backend config: %w", err)
	}

	cfg, err := Parse(data)
	if err != nil {
		return Config{}, fmt.Errorf("backend config %s: %w", name, err)
	}
	if err := cfg.ResolveAPIKeys(os.LookupEnv); err != nil {
		return Config{}, fmt.Errorf("backend config %s: %w", name, err)
	}
	return cfg, nil
}

// Parse decodes a YAML config and checks it with [Config.Validate]. Keys
// that the format does not define are errors.
func Parse(data []byte) (Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)

	var cfg Config
	if err := dec.Decode(&cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return Config{}, errors.New("the config is empty")
		}
		return Config{}, fmt.Errorf("parse YAML: %w", err)
	}

	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Config{}, errors.New("the config has more than one YAML document")
	}

	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// ResolveAPIKeys sets the APIKey of every backend that names an api_key_env
// to that variable's value, as returned by lookupEnv (os.LookupEnv outside
// tests). A variable that is unset or empty is an error.
func (c *Config) ResolveAPIKeys(lookupEnv func(string) (string, bool)) error {
	var errs []error
	for i := range c.Backends {
		b := &c.Backends[i]
		if b.APIKeyEnv == "" {
			continue
		}

		key, ok := lookupEnv(b.APIKeyEnv)
		if !ok || key == "" {
			errs = append(errs, fmt.Errorf(
				"backends[%d].api_key_env: environment variable %s is not set; "+
					"set it to the API key of backend %q", i, b.APIKeyEnv, b.Name))
			continue
		}
		b.APIKey = key
	}
	return errors.Join(errs...)
}

var (
	namePattern   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	envVarPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Validate checks c and returns every problem found. Each names the field,
// as in backends[1].timeout, and the value.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}

	if len(c.Backends) == 0 {
		add("backends: at least one backend is required")
	}
	firstIndex := map[string]int{}
	for i, b := range c.Backends {
		if j, ok := firstIndex[b.Name]; ok && b.Name != "" {
			add("backends[%d].name: duplicate backend name %q, already used by backends[%d]",
				i, b.Name, j)
		} else {
			firstIndex[b.Name] = i
		}
		errs = append(errs, b.validate(fmt.Sprintf("backends[%d]", i))...)
	}

	if len(c.Routes) == 0 {
		add("routes: at least one route is required")
	}
	catchAll := -1
	for i, r := range c.Routes {
		field := fmt.Sprintf("routes[%d]", i)
		if err := checkPattern(r.Model); err != nil {
			add("%s.model: %w", field, err)
		}
		if catchAll >= 0 {
			add("%s: unreachable, because routes[%d] matches every model before it",
				field, catchAll)
		}
		if r.Model == "*" && catchAll < 0 {
			catchAll = i
		}

		_, ok := firstIndex[r.Backend]
		switch {
		case r.Backend == "":
			add("%s.backend: missing", field)
		case !ok:
			add("%s.backend: no backend is named %q; defined: %s",
				field, r.Backend, strings.Join(c.backendNames(), ", "))
		}
	}
	return errors.Join(errs...)
}

func (c *Config) backendNames() []string {
	names := make([]string, 0, len(c.Backends))
	for _, b := range c.Backends {
		names = append(names, b.Name)
	}
	return names
}

// validate checks b, naming fields under prefix.
func (b BackendConfig) validate(prefix string) []error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(prefix+"."+format, args...))
	}

	switch {
	case b.Name == "":
		add("name: missing")
	case !namePattern.MatchString(b.Name):
		add("name: invalid name %q: use letters, digits, '_', '-' and '.', "+
			"starting with a letter or digit", b.Name)
	}

	switch {
	case b.Type == "":
		add("type: missing; want one of %s", strings.Join(knownTypes, ", "))
	case !slices.Contains(knownTypes, b.Type):
		add("type: unknown backend type %q; want one of %s", b.Type, strings.Join(knownTypes, ", "))
	case b.Type == TypeTestModel:
		errs = append(errs, b.validateTestModel(prefix)...)
	default:
		errs = append(errs, b.validateUpstream(prefix)...)
	}

	if b.Concurrency != nil && *b.Concurrency < 1 {
		add("concurrency: invalid value %d: it must be at least 1", *b.Concurrency)
	}
	if b.MinConcurrency != nil && *b.MinConcurrency < 1 {
		add("min_concurrency: invalid value %d: it must be at least 1", *b.MinConcurrency)
	}
	switch {
	case b.MinConcurrency == nil:
	case b.Concurrency == nil && *b.MinConcurrency > policy.DefaultMaxConcurrency:
		add("min_concurrency: invalid value %d: it exceeds the default concurrency %d",
			*b.MinConcurrency, policy.DefaultMaxConcurrency)
	case b.Concurrency != nil && *b.Concurrency >= 1 && *b.MinConcurrency > *b.Concurrency:
		add("min_concurrency: invalid value %d: it exceeds concurrency %d",
			*b.MinConcurrency, *b.Concurrency)
	}

	errs = append(errs, checkPositive(prefix+".timeout", b.Timeout)...)
	errs = append(errs, b.Retry.validate(prefix+".retry")...)

	if b.Pacing.RequestsReserve < 0 {
		add("pacing.requests_reserve: invalid value %d: it must not be negative",
			b.Pacing.RequestsReserve)
	}
	if b.Pacing.TokensReserve < 0 {
		add("pacing.tokens_reserve: invalid value %d: it must not be negative",
			b.Pacing.TokensReserve)
	}
	return errs
}

// validateUpstream checks the fields of an anthropic or openai backend.
func (b BackendConfig) validateUpstream(prefix string) []error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(prefix+"."+format, args...))
	}

	if err := checkBaseURL(b.BaseURL); err != nil {
		add("base_url: %w", err)
	}
	if b.APIKeyEnv != "" && !envVarPattern.MatchString(b.APIKeyEnv) {
		add("api_key_env: invalid environment variable name %q", b.APIKeyEnv)
	}
	if len(b.ModelMap) > 0 && b.Type != TypeOpenAI {
		add("model_map: allowed only with type openai, not %s", b.Type)
	}
	for from, to := range b.ModelMap {
		if from == "" || to == "" {
			add("model_map: invalid entry %q: %q: both names must be non-empty", from, to)
		}
	}
	if b.AnthropicVersion != "" && b.Type != TypeAnthropic {
		add("anthropic_version: allowed only with type anthropic, not %s", b.Type)
	}
	if b.TestModel != nil {
		add("testmodel: allowed only with type testmodel, not %s", b.Type)
	}
	return errs
}

// validateTestModel checks the fields of a testmodel backend.
func (b BackendConfig) validateTestModel(prefix string) []error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(prefix+"."+format, args...))
	}

	if b.BaseURL != "" {
		add("base_url: not used by type testmodel; remove it")
	}
	if b.APIKeyEnv != "" {
		add("api_key_env: not used by type testmodel; remove it")
	}
	if len(b.ModelMap) > 0 {
		add("model_map: not used by type testmodel; remove it")
	}
	if b.AnthropicVersion != "" {
		add("anthropic_version: not used by type testmodel; remove it")
	}
	if b.TestModel == nil {
		return errs
	}

	tm := b.TestModel
	errs = append(errs, checkNonNegative(prefix+".testmodel.latency", tm.Latency)...)
	errs = append(errs, checkNonNegative(prefix+".testmodel.jitter", tm.Jitter)...)
	errs = append(errs, checkNonNegative(prefix+".testmodel.retry_after", tm.RetryAfter)...)
	rates := []struct {
		name  string
		value float64
	}{
		{"overloaded_rate", tm.OverloadedRate},
		{"rate_limit_rate", tm.RateLimitRate},
		{"api_error_rate", tm.APIErrorRate},
	}
	for _, r := range rates {
		if !(r.value >= 0 && r.value <= 1) {
			add("testmodel.%s: invalid value %v: it must be between 0 and 1", r.name, r.value)
		}
	}
	if sum := tm.OverloadedRate + tm.RateLimitRate + tm.APIErrorRate; sum > 1 {
		add("testmodel: the overloaded, rate limit and API error rates add up to %v; "+
			"the total must be at most 1", sum)
	}
	return errs
}

func (r RetryConfig) validate(prefix string) []error {
	var errs []error
	if r.MaxAttempts != nil && *r.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("%s.max_attempts: invalid value %d: it must be at least 1",
			prefix, *r.MaxAttempts))
	}
	errs = append(errs, checkPositive(prefix+".base_delay", r.BaseDelay)...)
	errs = append(errs, checkPositive(prefix+".max_delay", r.MaxDelay)...)
	errs = append(errs, checkPositive(prefix+".max_retry_after", r.MaxRetryAfter)...)

	base := policy.DefaultBaseDelay
	if r.BaseDelay.set && r.BaseDelay.err == nil {
		base = r.BaseDelay.Duration
	}
	maxDelay := policy.DefaultMaxDelay
	if r.MaxDelay.set && r.MaxDelay.err == nil {
		maxDelay = r.MaxDelay.Duration
	}
	if maxDelay > 0 && base > maxDelay {
		errs = append(errs, fmt.Errorf("%s.max_delay: invalid value %v: it is below base_delay %v",
			prefix, maxDelay, base))
	}
	return errs
}

// checkPositive reports a duration that does not parse or is not positive.
func checkPositive(field string, d Duration) []error {
	switch {
	case !d.set:
		return nil
	case d.err != nil:
		return []error{fmt.Errorf("%s: %w", field, d.err)}
	case d.Duration <= 0:
		return []error{fmt.Errorf("%s: invalid value %v: it must be positive", field, d.Duration)}
	}
	return nil
}

// checkNonNegative reports a duration that does not parse or is negative.
func checkNonNegative(field string, d Duration) []error {
	switch {
	case !d.set:
		return nil
	case d.err != nil:
		return []error{fmt.Errorf("%s: %w", field, d.err)}
	case d.Duration < 0:
		return []error{
			fmt.Errorf("%s: invalid value %v: it must not be negative", field, d.Duration),
		}
	}
	return nil
}

// checkBaseURL checks that base is an absolute http or https URL.
func checkBaseURL(base string) error {
	if base == "" {
		return errors.New("missing; the model server's URL, such as http://127.0.0.1:8000")
	}

	u, err := url.Parse(base)
	switch {
	case err != nil:
		return fmt.Errorf("invalid URL %q: %w", base, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("invalid URL %q: the scheme must be http or https", base)
	case u.Host == "":
		return fmt.Errorf("invalid URL %q: the host is missing", base)
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("invalid URL %q: it must not have a query or fragment", base)
	}
	return nil
}

// checkPattern checks that a route's model pattern is usable.
func checkPattern(pattern string) error {
	switch {
	case pattern == "":
		return errors.New("missing; give a model name or a glob such as claude-*")
	case strings.ContainsRune(pattern, 0):
		return fmt.Errorf("invalid pattern %q: it contains a NUL byte", pattern)
	}
	if _, err := matchModel(pattern, ""); err != nil {
		return fmt.Errorf("invalid pattern %q: %w", pattern, err)
	}
	return nil
}

// PolicyConfig returns the policy settings of b, with sleeper as the
// policy's Sleeper. Unset fields stay zero, so the policy's defaults apply.
func (b BackendConfig) PolicyConfig(sleeper policy.Sleeper) policy.Config {
	cfg := policy.Config{
		Name:            b.Name,
		BaseDelay:       b.Retry.BaseDelay.Duration,
		MaxDelay:        b.Retry.MaxDelay.Duration,
		MaxRetryAfter:   b.Retry.MaxRetryAfter.Duration,
		Timeout:         b.Timeout.Duration,
		RequestsReserve: b.Pacing.RequestsReserve,
		TokensReserve:   b.Pacing.TokensReserve,
		Sleeper:         sleeper,
	}
	if b.Retry.MaxAttempts != nil {
		cfg.MaxAttempts = *b.Retry.MaxAttempts
	}
	if b.Concurrency != nil {
		cfg.MaxConcurrency = *b.Concurrency
	}
	if b.MinConcurrency != nil {
		cfg.MinConcurrency = *b.MinConcurrency
	}
	return cfg
}

// matchModel reports whether model matches pattern. It uses path.Match with
// '/' swapped for NUL on both sides, because model names such as
// Qwen/Qwen2.5-7B-Instruct contain '/', which path.Match's * never crosses.
func matchModel(pattern, model string) (bool, error) {
	if pattern == model {
		return true, nil
	}
	slashless := func(s string) string { return strings.ReplaceAll(s, "/", "\x00") }
	return path.Match(slashless(pattern), slashless(model))
}
