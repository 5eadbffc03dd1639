package router

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/backend/policy"
	"github.com/batchd/batchd/internal/clock"
)

// fakeBackend records the requests it gets and fails the first fails of
// them with a 529.
type fakeBackend struct {
	name string

	mu     sync.Mutex
	models []string
	fails  int
}

func (b *fakeBackend) Send(ctx context.Context, req backend.Request) (backend.Response, error) {
	b.mu.Lock()
	defer b.mu.Unlock()

	b.models = append(b.models, req.Model)
	if b.fails > 0 {
		b.fails--
		return backend.Response{}, &backend.Error{Type: backend.TypeOverloaded, StatusCode: 529}
	}
	msg := []byte(`{"backend":"` + b.name + `"}`)
	return backend.Response{Message: msg, Limits: backend.NoLimits}, nil
}

func (b *fakeBackend) calls() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.models...)
}

// fixture builds a Router whose factories hand out one fakeBackend per
// backend name and record the configs they were given.
type fixture struct {
	router   *Router
	backends map[string]*fakeBackend
	configs  map[string]BackendConfig
	sleeper  *policy.FakeSleeper
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()

	f := &fixture{backends: map[string]*fakeBackend{}, configs: map[string]BackendConfig{}}
	build := func(bc BackendConfig) (backend.Backend, error) {
		b := &fakeBackend{name: bc.Name}
		f.backends[bc.Name] = b
		f.configs[bc.Name] = bc
		return b, nil
	}
	factories := map[string]Factory{TypeAnthropic: build, TypeOpenAI: build, TypeTestModel: build}

	clk := clock.NewFake(time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC))
	f.sleeper = policy.NewFakeSleeper(clk)
	r, err := New(cfg, factories, clk, f.sleeper, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	f.router = r
	return f
}

func mustParse(t *testing.T, text string) Config {
	t.Helper()

	cfg, err := Parse([]byte(text))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

const routingConfig = `
backends:
  - {name: haiku, type: testmodel}
  - {name: claude, type: anthropic, base_url: "http://127.0.0.1:9"}
  - {name: local, type: openai, base_url: "http://127.0.0.1:8000"}
routes:
  - {model: claude-haiku-4-5, backend: haiku}
  - {model: "claude-*", backend: claude}
  - {model: "Qwen/*", backend: local}
  - {model: "gpt-?", backend: local}
`

func TestRouterSendsToFirstMatchingRoute(t *testing.T) {
	t.Parallel()

	f := newFixture(t, mustParse(t, routingConfig))

	tests := []struct {
		model string
		want  string
	}{
		{"claude-haiku-4-5", "haiku"},   // exact route listed before the glob
		{"claude-sonnet-4-5", "claude"}, // glob
		{"claude-haiku-4-5-20251001", "claude"},
		{"Qwen/Qwen2.5-7B-Instruct", "local"},
		{"gpt-4", "local"},
	}
	for _, tt := range tests {
		resp, err := f.router.Send(t.Context(), backend.Request{Model: tt.model})
		if err != nil {
			t.Errorf("model %s: got error %v, want success", tt.model, err)
			continue
		}
		if want := `{"backend":"` + tt.want + `"}`; string(resp.Message) != want {
			t.Errorf("model %s: got message %s, want %s", tt.model, resp.Message, want)
		}
		if name, ok := f.router.Route(tt.model); !ok || name != tt.want {
			t.Errorf("Route(%s): got %q, %v, want %q, true", tt.model, name, ok, tt.want)
		}
	}

	if got := f.backends["haiku"].calls(); len(got) != 1 {
		t.Errorf("haiku: got calls %v, want one", got)
	}
}

func TestRouterNoRouteIsInvalidRequest(t *testing.T) {
	t.Parallel()

	f := newFixture(t, mustParse(t, routingConfig))

	_, err := f.router.Send(t.Context(), backend.Request{Model: "gpt-4o"})
	var be *backend.Error
	if !errors.As(err, &be) {
		t.Fatalf("got error %v, want a *backend.Error", err)
	}
	if be.Type != backend.TypeInvalidRequest {
		t.Errorf("got type %s, want invalid_request_error", be.Type)
	}
	if want := `no backend is configured for model "gpt-4o"`; be.Message != want {
		t.Errorf("got message %q, want %q", be.Message, want)
	}
	if be.Temporary() {
		t.Error("got a temporary error, want a permanent one")
	}
	if _, ok := f.router.Route("gpt-4o"); ok {
		t.Error("Route(gpt-4o): got a match, want none")
	}
}

func TestMatchModel(t *testing.T) {
	t.Parallel()

	tests := []struct {
		pattern, model string
		want           bool
	}{
		{"claude-sonnet-4-5", "claude-sonnet-4-5", true},
		{"claude-sonnet-4-5", "claude-sonnet-4-5-x", false},
		{"claude-*", "claude-opus-4-1", true},
		{"claude-*", "claude-", true},
		{"claude-*", "claud", false},
		{"*", "anything", true},
		{"*", "", true},
		{"*", "Qwen/Qwen2.5-7B-Instruct", true}, // * crosses '/'
		{"Qwen/*", "Qwen/Qwen2.5-7B-Instruct", true},
		{"Qwen/*", "meta/Llama", false},
		{"*/*-Instruct", "Qwen/Qwen2.5-7B-Instruct", true},
		{"gpt-?", "gpt-4", true},
		{"gpt-?", "gpt-4o", false},
		{"a?b", "a/b", true},
		{"claude-[hs]*", "claude-haiku-4-5", true},
		{"claude-[hs]*", "claude-opus-4-1", false},
		{`claude-\*`, "claude-*", true},
		{`claude-\*`, "claude-x", false},
	}
	for _, tt := range tests {
		got, err := matchModel(tt.pattern, tt.model)
		if err != nil {
			t.Errorf("matchModel(%q, %q): got error %v", tt.pattern, tt.model, err)
			continue
		}
		if got != tt.want {
			t.Errorf("matchModel(%q, %q): got %v, want %v", tt.pattern, tt.model, got, tt.want)
		}
	}
}

func TestRouterSendsThroughPolicy(t *testing.T) {
	t.Parallel()

	cfg := mustParse(t, `
backends:
  - name: fake
    type: testmodel
    concurrency: 3
    retry: {max_attempts: 4, base_delay: 2s, max_delay: 8s}
routes:
  - {model: "*", backend: fake}
`)
	f := newFixture(t, cfg)
	f.backends["fake"].fails = 2

	if _, err := f.router.Send(t.Context(), backend.Request{Model: "m"}); err != nil {
		t.Fatalf("Send: got error %v, want success after two retries", err)
	}
	if got := len(f.backends["fake"].calls()); got != 3 {
		t.Errorf("got %d calls, want 3", got)
	}

	// The waits follow the configured backoff: [1s, 2s], then [2s, 4s].
	waits := f.sleeper.Waits()
	if len(waits) != 2 {
		t.Fatalf("got waits %v, want two", waits)
	}
	if waits[0] < time.Second || waits[0] > 2*time.Second {
		t.Errorf("first wait %v, want within [1s, 2s]", waits[0])
	}
	if waits[1] < 2*time.Second || waits[1] > 4*time.Second {
		t.Errorf("second wait %v, want within [2s, 4s]", waits[1])
	}

	stats := f.router.Stats()
	if len(stats) != 1 {
		t.Fatalf("got stats for %d backends, want 1", len(stats))
	}
	s := stats[0]
	if s.Name != "fake" || s.Type != TypeTestModel {
		t.Errorf("got stats for %s (%s), want fake (testmodel)", s.Name, s.Type)
	}
	if s.MaxConcurrency != 3 {
		t.Errorf("got max concurrency %d, want 3 from the config", s.MaxConcurrency)
	}
	if s.Retries != 2 || s.Attempts != 3 || s.Overloads != 2 {
		t.Errorf("got %d attempts, %d retries, %d overloads; want 3, 2, 2",
			s.Attempts, s.Retries, s.Overloads)
	}

	// The retry budget from the config ends the retries.
	f.backends["fake"].fails = 10
	_, err := f.router.Send(t.Context(), backend.Request{Model: "m"})
	if backend.AsError(err).Type != backend.TypeOverloaded {
		t.Errorf("got error %v, want the last overloaded_error", err)
	}
	if got := len(f.backends["fake"].calls()); got != 3+4 {
		t.Errorf("got %d calls in all, want 7", got)
	}
}

func TestRouterPassesConfigToFactory(t *testing.T) {
	t.Parallel()

	cfg := mustParse(t, routingConfig)
	cfg.Backends[2].ModelMap = map[string]string{"claude-x": "Qwen/Qwen2.5-7B-Instruct"}
	cfg.Backends[1].APIKey = "sk-test"
	f := newFixture(t, cfg)

	if got := f.configs["claude"].APIKey; got != "sk-test" {
		t.Errorf("claude: factory got API key %q, want sk-test", got)
	}
	if got := f.configs["local"].ModelMap["claude-x"]; got != "Qwen/Qwen2.5-7B-Instruct" {
		t.Errorf("local: factory got model map entry %q, want Qwen/Qwen2.5-7B-Instruct", got)
	}
	if got := f.configs["local"].BaseURL; got != "http://127.0.0.1:8000" {
		t.Errorf("local: factory got base URL %q, want http://127.0.0.1:8000", got)
	}
}

func TestRouterDefaultConfigServesEveryModel(t *testing.T) {
	t.Parallel()

	f := newFixture(t, DefaultConfig())
	for _, model := range []string{"claude-sonnet-4-5", "Qwen/Qwen2.5-7B-Instruct", ""} {
		if _, err := f.router.Send(t.Context(), backend.Request{Model: model}); err != nil {
			t.Errorf("model %q: got error %v, want success", model, err)
		}
	}
	if got := len(f.backends[TypeTestModel].calls()); got != 3 {
		t.Errorf("got %d calls to the test model, want 3", got)
	}
}

func TestNewRejectsBadSetup(t *testing.T) {
	t.Parallel()

	ok := func(BackendConfig) (backend.Backend, error) { return &fakeBackend{}, nil }
	failing := func(BackendConfig) (backend.Backend, error) {
		return nil, errors.New("connect refused")
	}
	logger := slog.New(slog.DiscardHandler)

	tests := []struct {
		name      string
		cfg       Config
		factories map[string]Factory
		want      string
	}{
		{
			"no factory for type",
			DefaultConfig(),
			map[string]Factory{TypeOpenAI: ok},
			`create backend "testmodel": no constructor is registered for type "testmodel"`,
		},
		{
			"factory fails",
			DefaultConfig(),
			map[string]Factory{TypeTestModel: failing},
			`create backend "testmodel": connect refused`,
		},
		{
			"invalid config",
			Config{},
			map[string]Factory{TypeTestModel: ok},
			"invalid backend config: backends: at least one backend is required",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			_, err := New(tt.cfg, tt.factories, clock.System{}, nil, logger)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
