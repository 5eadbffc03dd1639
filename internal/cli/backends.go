package cli

import (
	"log/slog"

	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/backend/anthropic"
	"github.com/batchd/batchd/internal/backend/openai"
	"github.com/batchd/batchd/internal/backend/router"
	"github.com/batchd/batchd/internal/backend/testmodel"
	"github.com/batchd/batchd/internal/clock"
)

// backendFactories builds each backend type of the config file. Timeouts are
// left to the router's policy, which applies them per attempt.
var backendFactories = map[string]router.Factory{
	router.TypeTestModel: func(b router.BackendConfig) (backend.Backend, error) {
		cfg := testModelConfig(b.TestModel)
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
		return testmodel.New(cfg), nil
	},
	router.TypeAnthropic: func(b router.BackendConfig) (backend.Backend, error) {
		return anthropic.New(anthropic.Config{
			BaseURL: b.BaseURL, APIKey: b.APIKey, Version: b.AnthropicVersion,
		})
	},
	router.TypeOpenAI: func(b router.BackendConfig) (backend.Backend, error) {
		return openai.New(openai.Config{BaseURL: b.BaseURL, APIKey: b.APIKey, ModelMap: b.ModelMap})
	},
}

func testModelConfig(c *router.TestModelConfig) testmodel.Config {
	if c == nil {
		return testmodel.Config{}
	}
	return testmodel.Config{
		Latency:        c.Latency.Duration,
		Jitter:         c.Jitter.Duration,
		OverloadedRate: c.OverloadedRate,
		RateLimitRate:  c.RateLimitRate,
		APIErrorRate:   c.APIErrorRate,
		Seed:           c.Seed,
		RetryAfter:     c.RetryAfter.Duration,
	}
}

// newBackend returns the router over the backends of the config file at
// path. Without a file, every model goes to one test model configured by the
// --test-model-* flags, allowed as many calls in flight as the engine makes.
func newBackend(cfg serveConfig, clk clock.Clock, logger *slog.Logger) (*router.Router, error) {
	routes := router.DefaultConfig()
	if cfg.configFile != "" {
		loaded, err := router.Load(cfg.configFile)
		if err != nil {
			return nil, err
		}
		routes = loaded
	} else {
		model := cfg.testModel
		concurrency := cfg.engine.Concurrency
		routes.Backends[0].Concurrency = &concurrency
		routes.Backends[0].TestModel = &router.TestModelConfig{
			Latency:        router.Duration{Duration: model.Latency},
			Jitter:         router.Duration{Duration: model.Jitter},
			OverloadedRate: model.OverloadedRate,
			RateLimitRate:  model.RateLimitRate,
			APIErrorRate:   model.APIErrorRate,
			Seed:           model.Seed,
			RetryAfter:     router.Duration{Duration: model.RetryAfter},
		}
	}
	return router.New(routes, backendFactories, clk, nil, logger)
}
