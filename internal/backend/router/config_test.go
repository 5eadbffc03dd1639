package router

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/backend/policy"
)

const validConfig = `
backends:
  - name: claude
    type: anthropic
    base_url: https://api.anthropic.example
    anthropic_version: "2023-06-01"
    api_key_env: ANTHROPIC_UPSTREAM_KEY
    concurrency: 64
    min_concurrency: 4
    timeout: 10m
    retry: {max_attempts: 5, base_delay: 1s, max_delay: 60s, max_retry_after: 2m}
    pacing: {requests_reserve: 3, tokens_reserve: 1000}
  - name: local
    type: openai
    base_url: http://127.0.0.1:8000
    model_map: {claude-haiku-4-5: Qwen/Qwen2.5-7B-Instruct}
  - name: fake
    type: testmodel
    testmodel:
      latency: 50ms
      jitter: 20ms
      api_error_rate: 0.01
      rate_limit_rate: 0.02
      overloaded_rate: 0.03
      seed: 7
      retry_after: 3s
routes:
  - model: "claude-*"
    backend: claude
  - model: test-model
    backend: fake
  - model: "*"
    backend: local
`

func TestParseValidConfig(t *testing.T) {
	t.Parallel()

	cfg, err := Parse([]byte(validConfig))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}

	if got := len(cfg.Backends); got != 3 {
		t.Fatalf("got %d backends, want 3", got)
	}
	claude := cfg.Backends[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"name", claude.Name, "claude"},
		{"type", claude.Type, TypeAnthropic},
		{"base_url", claude.BaseURL, "https://api.anthropic.example"},
		{"api_key_env", claude.APIKeyEnv, "ANTHROPIC_UPSTREAM_KEY"},
		{"anthropic_version", claude.AnthropicVersion, "2023-06-01"},
		{"concurrency", *claude.Concurrency, 64},
		{"min_concurrency", *claude.MinConcurrency, 4},
		{"timeout", claude.Timeout.Duration, 10 * time.Minute},
		{"retry.max_attempts", *claude.Retry.MaxAttempts, 5},
		{"retry.base_delay", claude.Retry.BaseDelay.Duration, time.Second},
		{"retry.max_delay", claude.Retry.MaxDelay.Duration, time.Minute},
		{"retry.max_retry_after", claude.Retry.MaxRetryAfter.Duration, 2 * time.Minute},
		{"pacing.requests_reserve", claude.Pacing.RequestsReserve, int64(3)},
		{"pacing.tokens_reserve", claude.Pacing.TokensReserve, int64(1000)},
		{"local model_map", cfg.Backends[1].ModelMap["claude-haiku-4-5"], "Qwen/Qwen2.5-7B-Instruct"},
		{"local concurrency unset", cfg.Backends[1].Concurrency == nil, true},
		{"local timeout unset", cfg.Backends[1].Timeout.IsSet(), false},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}

	tm := cfg.Backends[2].TestModel
	if tm == nil {
		t.Fatal("fake backend: got no testmodel section")
	}
	tmChecks := []struct {
		name      string
		got, want any
	}{
		{"latency", tm.Latency.Duration, 50 * time.Millisecond},
		{"jitter", tm.Jitter.Duration, 20 * time.Millisecond},
		{"api_error_rate", tm.APIErrorRate, 0.01},
		{"rate_limit_rate", tm.RateLimitRate, 0.02},
		{"overloaded_rate", tm.OverloadedRate, 0.03},
		{"seed", tm.Seed, uint64(7)},
		{"retry_after", tm.RetryAfter.Duration, 3 * time.Second},
	}
	for _, c := range tmChecks {
		if c.got != c.want {
			t.Errorf("testmodel.%s: got %v, want %v", c.name, c.got, c.want)
		}
	}

	wantRoutes := []RouteConfig{
		{Model: "claude-*", Backend: "claude"},
		{Model: "test-model", Backend: "fake"},
		{Model: "*", Backend: "local"},
	}
	if len(cfg.Routes) != len(wantRoutes) {
		t.Fatalf("got %d routes, want %d", len(cfg.Routes), len(wantRoutes))
	}
	for i, want := range wantRoutes {
		if cfg.Routes[i] != want {
			t.Errorf("routes[%d]: got %+v, want %+v", i, cfg.Routes[i], want)
		}
	}
}

// anyRoute is a routes section that sends every model to backend a.
const anyRoute = "routes: [{model: '*', backend: a}]\n"

func TestParseRejectsInvalidConfig(t *testing.T) {
	t.Parallel()

	// Each case is a complete file. want lists substrings of the error.
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			"unknown top-level key",
			"backends: [{name: a, type: testmodel}]\nroutes: [{model: '*', backend: a}]\nextra: 1\n",
			[]string{"field extra not found"},
		},
		{
			"unknown backend key",
			"backends: [{name: a, type: testmodel, concurency: 3}]\n" + anyRoute,
			[]string{"field concurency not found"},
		},
		{
			"unknown retry key",
			"backends: [{name: a, type: testmodel, retry: {attempts: 3}}]\n" +
				anyRoute,
			[]string{"field attempts not found"},
		},
		{
			"unknown backend type",
			"backends: [{name: a, type: gemini}]\n" + anyRoute,
			[]string{`backends[0].type: unknown backend type "gemini"`, "anthropic, openai, testmodel"},
		},
		{
			"missing type",
			"backends: [{name: a}]\n" + anyRoute,
			[]string{"backends[0].type: missing"},
		},
		{
			"missing name",
			"backends: [{type: testmodel}]\n" + anyRoute,
			[]string{"backends[0].name: missing"},
		},
		{
			"invalid name",
			"backends: [{name: 'my backend', type: testmodel}]\n" +
				"routes: [{model: '*', backend: 'my backend'}]\n",
			[]string{`backends[0].name: invalid name "my backend"`},
		},
		{
			"duplicate names",
			"backends: [{name: a, type: testmodel}, {name: a, type: testmodel}]\n" +
				anyRoute,
			[]string{`backends[1].name: duplicate backend name "a", already used by backends[0]`},
		},
		{
			"route to missing backend",
			"backends: [{name: a, type: testmodel}]\nroutes: [{model: '*', backend: b}]\n",
			[]string{`routes[0].backend: no backend is named "b"; defined: a`},
		},
		{
			"route without backend",
			"backends: [{name: a, type: testmodel}]\nroutes: [{model: '*'}]\n",
			[]string{"routes[0].backend: missing"},
		},
		{
			"route without model",
			"backends: [{name: a, type: testmodel}]\nroutes: [{backend: a}]\n",
			[]string{"routes[0].model: missing"},
		},
		{
			"bad glob",
			"backends: [{name: a, type: testmodel}]\nroutes: [{model: 'claude-[', backend: a}]\n",
			[]string{`routes[0].model: invalid pattern "claude-["`},
		},
		{
			"route after catch-all",
			"backends: [{name: a, type: testmodel}]\n" +
				"routes: [{model: '*', backend: a}, {model: claude, backend: a}]\n",
			[]string{"routes[1]: unreachable, because routes[0] matches every model"},
		},
		{
			"no backends",
			"backends: []\n" + anyRoute,
			[]string{"backends: at least one backend is required"},
		},
		{
			"no routes",
			"backends: [{name: a, type: testmodel}]\n",
			[]string{"routes: at least one route is required"},
		},
		{
			"bad duration",
			"backends: [{name: a, type: testmodel, timeout: 10x}]\n" + anyRoute,
			[]string{`backends[0].timeout: invalid duration "10x"`},
		},
		{
			"duration without unit",
			"backends: [{name: a, type: testmodel, retry: {base_delay: 5}}]\n" +
				anyRoute,
			[]string{`backends[0].retry.base_delay: invalid duration "5"`},
		},
		{
			"duration as a list",
			"backends: [{name: a, type: testmodel, timeout: [1s]}]\n" + anyRoute,
			[]string{"backends[0].timeout: invalid duration on line 1"},
		},
		{
			"zero timeout",
			"backends: [{name: a, type: testmodel, timeout: 0s}]\n" + anyRoute,
			[]string{"backends[0].timeout: invalid value 0s: it must be positive"},
		},
		{
			"negative max delay",
			"backends: [{name: a, type: testmodel, retry: {max_delay: -1s}}]\n" +
				anyRoute,
			[]string{"backends[0].retry.max_delay: invalid value -1s: it must be positive"},
		},
		{
			"max delay below base delay",
			"backends: [{name: a, type: testmodel, retry: {base_delay: 10s, max_delay: 2s}}]\n" +
				anyRoute,
			[]string{"backends[0].retry.max_delay: invalid value 2s: it is below base_delay 10s"},
		},
		{
			"zero concurrency",
			"backends: [{name: a, type: testmodel, concurrency: 0}]\n" + anyRoute,
			[]string{"backends[0].concurrency: invalid value 0: it must be at least 1"},
		},
		{
			"negative concurrency",
			"backends: [{name: a, type: testmodel, concurrency: -4}]\n" + anyRoute,
			[]string{"backends[0].concurrency: invalid value -4"},
		},
		{
			"min concurrency above concurrency",
			"backends: [{name: a, type: testmodel, concurrency: 4, min_concurrency: 8}]\n" +
				anyRoute,
			[]string{"backends[0].min_concurrency: invalid value 8: it exceeds concurrency 4"},
		},
		{
			"min concurrency above default",
			"backends: [{name: a, type: testmodel, min_concurrency: 1000}]\n" +
				anyRoute,
			[]string{"backends[0].min_concurrency: invalid value 1000: it exceeds the default concurrency"},
		},
		{
			"zero max attempts",
			"backends: [{name: a, type: testmodel, retry: {max_attempts: 0}}]\n" +
				anyRoute,
			[]string{"backends[0].retry.max_attempts: invalid value 0"},
		},
		{
			"negative reserve",
			"backends: [{name: a, type: testmodel, pacing: {requests_reserve: -1}}]\n" +
				anyRoute,
			[]string{"backends[0].pacing.requests_reserve: invalid value -1"},
		},
		{
			"missing base URL",
			"backends: [{name: a, type: openai}]\n" + anyRoute,
			[]string{"backends[0].base_url: missing"},
		},
		{
			"base URL without scheme",
			"backends: [{name: a, type: anthropic, base_url: 127.0.0.1:8000}]\n" +
				anyRoute,
			[]string{`backends[0].base_url: invalid URL "127.0.0.1:8000"`},
		},
		{
			"base URL with ftp scheme",
			"backends: [{name: a, type: anthropic, base_url: 'ftp://127.0.0.1'}]\n" +
				anyRoute,
			[]string{"the scheme must be http or https"},
		},
		{
			"bad env var name",
			"backends: [{name: a, type: anthropic, base_url: 'http://127.0.0.1', api_key_env: 'MY-KEY'}]\n" +
				anyRoute,
			[]string{`backends[0].api_key_env: invalid environment variable name "MY-KEY"`},
		},
		{
			"empty model map target",
			"backends: [{name: a, type: openai, base_url: 'http://127.0.0.1', model_map: {x: ''}}]\n" +
				anyRoute,
			[]string{`backends[0].model_map: invalid entry "x": ""`},
		},
		{
			"model map on anthropic",
			"backends: [{name: a, type: anthropic, base_url: 'http://127.0.0.1', model_map: {x: y}}]\n" +
				anyRoute,
			[]string{"backends[0].model_map: allowed only with type openai, not anthropic"},
		},
		{
			"anthropic version on openai",
			"backends: [{name: a, type: openai, base_url: 'http://127.0.0.1', anthropic_version: v}]\n" +
				anyRoute,
			[]string{"backends[0].anthropic_version: allowed only with type anthropic, not openai"},
		},
		{
			"NaN rate",
			"backends: [{name: a, type: testmodel, testmodel: {rate_limit_rate: .nan}}]\n" + anyRoute,
			[]string{"backends[0].testmodel.rate_limit_rate: invalid value NaN"},
		},
		{
			"negative retry after",
			"backends: [{name: a, type: testmodel, testmodel: {retry_after: -1s}}]\n" + anyRoute,
			[]string{"backends[0].testmodel.retry_after: invalid value -1s"},
		},
		{
			"testmodel section on openai",
			"backends: [{name: a, type: openai, base_url: 'http://127.0.0.1', testmodel: {seed: 1}}]\n" +
				anyRoute,
			[]string{"backends[0].testmodel: allowed only with type testmodel, not openai"},
		},
		{
			"base URL on testmodel",
			"backends: [{name: a, type: testmodel, base_url: 'http://127.0.0.1'}]\n" +
				anyRoute,
			[]string{"backends[0].base_url: not used by type testmodel"},
		},
		{
			"rate above one",
			"backends: [{name: a, type: testmodel, testmodel: {api_error_rate: 1.5}}]\n" +
				anyRoute,
			[]string{"backends[0].testmodel.api_error_rate: invalid value 1.5"},
		},
		{
			"negative rate",
			"backends: [{name: a, type: testmodel, testmodel: {overloaded_rate: -0.1}}]\n" +
				anyRoute,
			[]string{"backends[0].testmodel.overloaded_rate: invalid value -0.1"},
		},
		{
			"rates above one in total",
			"backends: [{name: a, type: testmodel, testmodel: {api_error_rate: 0.6, rate_limit_rate: 0.6}}]\n" +
				anyRoute,
			[]string{"backends[0].testmodel: the overloaded, rate limit and API error rates add up to 1.2"},
		},
		{
			"negative latency",
			"backends: [{name: a, type: testmodel, testmodel: {latency: -5ms}}]\n" +
				anyRoute,
			[]string{"backends[0].testmodel.latency: invalid value -5ms: it must not be negative"},
		},
		{
			"several problems at once",
			"backends: [{name: a, type: x, concurrency: 0}]\nroutes: [{model: '*', backend: b}]\n",
			[]string{"backends[0].type", "backends[0].concurrency", "routes[0].backend"},
		},
		{
			"empty file",
			"",
			[]string{"the config is empty"},
		},
		{
			"two documents",
			"backends: [{name: a, type: testmodel}]\nroutes: [{model: '*', backend: a}]\n---\nbackends: []\n",
			[]string{"more than one YAML document"},
		},
		{
			"duplicate key",
			"backends: [{name: a, type: testmodel, type: openai}]\n" + anyRoute,
			[]string{"already defined"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			_, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatalf("got no error, want one containing %q", tt.want)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("got error %q, want it to contain %q", err, want)
				}
			}
		})
	}
}

func TestDefaultConfigIsValid(t *testing.T) {
	t.Parallel()

	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("DefaultConfig: got error %v, want none", err)
	}
	if got := cfg.Backends[0].Type; got != TypeTestModel {
		t.Errorf("got backend type %q, want testmodel", got)
	}
}

func TestResolveAPIKeys(t *testing.T) {
	t.Parallel()

	env := map[string]string{"KEY_A": "secret-a", "EMPTY": ""}
	lookup := func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
	cfg := Config{Backends: []BackendConfig{
		{Name: "a", APIKeyEnv: "KEY_A"},
		{Name: "none"},
		{Name: "unset", APIKeyEnv: "KEY_UNSET"},
		{Name: "empty", APIKeyEnv: "EMPTY"},
	}}

	err := cfg.ResolveAPIKeys(lookup)
	if got := cfg.Backends[0].APIKey; got != "secret-a" {
		t.Errorf("backend a: got key %q, want secret-a", got)
	}
	if got := cfg.Backends[1].APIKey; got != "" {
		t.Errorf("backend none: got key %q, want none", got)
	}
	if err == nil {
		t.Fatal("got no error, want one for KEY_UNSET and EMPTY")
	}
	for _, want := range []string{
		"backends[2].api_key_env: environment variable KEY_UNSET is not set",
		"backends[3].api_key_env: environment variable EMPTY is not set",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("got error %q, want it to contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "secret-a") {
		t.Errorf("got error %q, want no key in it", err)
	}
}

// Not parallel: it sets an environment variable.
func TestLoadReadsFileAndKey(t *testing.T) {
	t.Setenv("ANTHROPIC_UPSTREAM_KEY", "sk-test")
	name := filepath.Join(t.TempDir(), "backends.yaml")
	if err := os.WriteFile(name, []byte(validConfig), 0o600); err != nil {
		t.Fatal(err)
	}

	cfg, err := Load(name)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := cfg.Backends[0].APIKey; got != "sk-test" {
		t.Errorf("got API key %q, want sk-test", got)
	}

	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("Load of a missing file: got no error, want one")
	}
}

func TestPolicyConfigFromBackend(t *testing.T) {
	t.Parallel()

	cfg, err := Parse([]byte(validConfig))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	sleeper := policy.RealSleeper{}

	got := cfg.Backends[0].PolicyConfig(sleeper)
	want := policy.Config{
		Name: "claude", MaxAttempts: 5, BaseDelay: time.Second, MaxDelay: time.Minute,
		MaxRetryAfter: 2 * time.Minute, Timeout: 10 * time.Minute, MaxConcurrency: 64,
		MinConcurrency: 4, RequestsReserve: 3, TokensReserve: 1000, Sleeper: sleeper,
	}
	if got != want {
		t.Errorf("claude: got %+v, want %+v", got, want)
	}

	// Unset fields stay zero so that the policy's defaults apply.
	got = cfg.Backends[1].PolicyConfig(nil)
	want = policy.Config{Name: "local"}
	if got != want {
		t.Errorf("local: got %+v, want %+v", got, want)
	}
}

func TestParseDocumentedExample(t *testing.T) {
	t.Parallel()

	doc, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "config.md"))
	if err != nil {
		t.Fatalf("read docs/config.md: %v", err)
	}

	_, rest, ok := strings.Cut(string(doc), "```yaml\n")
	if !ok {
		t.Fatal("docs/config.md: got no yaml block, want the example")
	}
	example, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("docs/config.md: the yaml block is not closed")
	}

	cfg, err := Parse([]byte(example))
	if err != nil {
		t.Fatalf("Parse of the documented example: %v", err)
	}
	if got := len(cfg.Backends); got != 3 {
		t.Errorf("got %d backends, want 3", got)
	}
}
