// Package router sends each request to the backend configured for its model.
//
// A [Config], usually read from a YAML file with [Load], lists the backends
// and the routes. A route pairs a model name or glob with a backend, and the
// first route whose pattern matches a request's model wins. Each backend is
// built by the [Factory] registered for its type and wrapped in a
// [policy.Policy], which retries, limits concurrency and paces by rate-limit
// headers for that backend alone. The router does not import the concrete
// backends: the program registers their constructors.
package router

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/backend/policy"
	"github.com/batchd/batchd/internal/clock"
)

// Factory builds the backend that one [BackendConfig] describes. The router
// wraps what it returns in a policy, so a factory adds no retries of its own.
type Factory = func(BackendConfig) (backend.Backend, error)

// Router is a [backend.Backend] that passes each request to the policy of the
// backend its model routes to. It is safe for concurrent use.
type Router struct {
	routes   []route
	backends []*target
}

type route struct {
	pattern string
	target  *target
}

type target struct {
	name   string
	typ    string
	policy *policy.Policy
}

// BackendStats is the state of one backend's policy, for metrics.
type BackendStats struct {
	Name string
	Type string
	policy.Stats
}

// New checks cfg, builds every backend with the factory for its type and
// wraps each in a policy that reads time from clk and waits with sleeper (nil
// means real timers).
func New(
	cfg Config, factories map[string]Factory, clk clock.Clock, sleeper policy.Sleeper,
	logger *slog.Logger,
) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid backend config: %w", err)
	}

	r := &Router{}
	byName := make(map[string]*target, len(cfg.Backends))
	for _, b := range cfg.Backends {
		factory := factories[b.Type]
		if factory == nil {
			return nil, fmt.Errorf("create backend %q: no constructor is registered for type %q",
				b.Name, b.Type)
		}

		pcfg := b.PolicyConfig(sleeper)
		if err := pcfg.Validate(); err != nil {
			return nil, fmt.Errorf("create backend %q: %w", b.Name, err)
		}

		inner, err := factory(b)
		if err != nil {
			return nil, fmt.Errorf("create backend %q: %w", b.Name, err)
		}

		t := &target{name: b.Name, typ: b.Type, policy: policy.New(inner, pcfg, clk, logger)}
		r.backends = append(r.backends, t)
		byName[b.Name] = t
	}

	for _, rc := range cfg.Routes {
		r.routes = append(r.routes, route{pattern: rc.Model, target: byName[rc.Backend]})
	}
	return r, nil
}

// Send passes req to the backend of the first route that matches req.Model.
// When no route matches, it returns an invalid_request_error.
func (r *Router) Send(ctx context.Context, req backend.Request) (backend.Response, error) {
	t := r.match(req.Model)
	if t == nil {
		return backend.Response{}, &backend.Error{
			Type:    backend.TypeInvalidRequest,
			Message: fmt.Sprintf("no backend is configured for model %q", req.Model),
		}
	}
	return t.policy.Send(ctx, req)
}

// Route returns the name of the backend that requests for model go to, and
// false when no route matches.
func (r *Router) Route(model string) (string, bool) {
	t := r.match(model)
	if t == nil {
		return "", false
	}
	return t.name, true
}

// Stats returns the state of every backend, in config order.
func (r *Router) Stats() []BackendStats {
	stats := make([]BackendStats, 0, len(r.backends))
	for _, t := range r.backends {
		stats = append(stats, BackendStats{Name: t.name, Type: t.typ, Stats: t.policy.Stats()})
	}
	return stats
}

func (r *Router) match(model string) *target {
	for _, rt := range r.routes {
		// New ran Validate, which rejects malformed patterns, so the
		// error is always nil here.
		if ok, _ := matchModel(rt.pattern, model); ok {
			return rt.target
		}
	}
	return nil
}
