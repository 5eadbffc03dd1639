// Package engine executes batches. Every batchd node runs one Engine. It
// claims requests from the store under a lease, sends each to the model
// backend with bounded concurrency, records exactly one result per request,
// and ends a batch once every request has one. It also applies the time
// rules: canceled batches stop their unstarted requests, batches past
// expires_at expire theirs, and results older than the retention window are
// archived.
package engine

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/clock"
	"github.com/batchd/batchd/internal/metrics"
	"github.com/batchd/batchd/internal/store"
)

// Defaults for [Config] fields left zero.
const (
	ConcurrencyDefault         = 64
	ClaimSizeDefault           = 500
	LeaseDefault               = 30 * time.Second
	PollIntervalDefault        = 100 * time.Millisecond
	MaintenanceIntervalDefault = time.Minute
	RetentionDefault           = 29 * 24 * time.Hour
	ShutdownGraceDefault       = 30 * time.Second
	FlushSizeDefault           = 500
	FlushIntervalDefault       = 10 * time.Millisecond
)

// Config tunes an [Engine]. Zero fields take the matching …Default constant.
type Config struct {
	// Owner names this node in request leases. It must differ between nodes
	// that share a store. Default: a random id.
	Owner string

	// Concurrency is the maximum number of backend calls in flight.
	Concurrency int

	// ClaimSize is the maximum number of requests claimed in one store call.
	ClaimSize int

	// Lease is how long a claim stays valid without renewal. The engine
	// renews the leases of its requests every Lease/3, so a request runs as
	// long as its call takes, and a request whose node dies is taken by
	// another node between Lease and 4/3 Lease after the death.
	Lease time.Duration

	// PollInterval is how often the engine looks for work when nothing wakes
	// it sooner.
	PollInterval time.Duration

	// MaintenanceInterval is how often retention runs.
	MaintenanceInterval time.Duration

	// Retention is how long after created_at a batch's results are kept.
	Retention time.Duration

	// ShutdownGrace is how long in-flight backend calls may go on after the
	// engine is asked to stop. Calls still running then are canceled, and
	// their requests are run again after a restart.
	ShutdownGrace time.Duration

	// FlushSize and FlushInterval bound how many results wait in memory, and
	// for how long, before they are written to the store in one transaction.
	FlushSize     int
	FlushInterval time.Duration

	// Metrics, if not nil, counts the results this engine records.
	Metrics *metrics.Metrics
}

func (c Config) withDefaults() Config {
	c.Owner = cmp.Or(c.Owner, "node_"+strings.TrimPrefix(batch.NewRequestID(), "req_"))
	c.Concurrency = cmp.Or(c.Concurrency, ConcurrencyDefault)
	c.ClaimSize = cmp.Or(c.ClaimSize, ClaimSizeDefault)
	c.Lease = cmp.Or(c.Lease, LeaseDefault)
	c.PollInterval = cmp.Or(c.PollInterval, PollIntervalDefault)
	c.MaintenanceInterval = cmp.Or(c.MaintenanceInterval, MaintenanceIntervalDefault)
	c.Retention = cmp.Or(c.Retention, RetentionDefault)
	c.ShutdownGrace = cmp.Or(c.ShutdownGrace, ShutdownGraceDefault)
	c.FlushSize = cmp.Or(c.FlushSize, FlushSizeDefault)
	c.FlushInterval = cmp.Or(c.FlushInterval, FlushIntervalDefault)
	return c
}

// Engine runs the requests of every active batch. Create one with [New] and
// start it with [Engine.Run].
type Engine struct {
	cfg     Config
	store   store.Store
	backend backend.Backend
	clock   clock.Clock
	logger  *slog.Logger

	wake chan struct{}

	mu sync.Mutex
	// inFlight counts this node's claimed requests per batch id, queued or
	// running, until their results are written.
	inFlight map[string]int
	// stopping holds ids of batches that are canceling or expired, so that
	// queued requests of theirs are not sent.
	stopping map[string]batch.Outcome
	queued   int

	groups *prefixGroups

	// started is set by the first dispatch round, which logs the unfinished
	// batches it finds: after a crash or a stop, the log then shows that the
	// work left over goes on.
	started bool
}

// New returns an engine that reads and writes st and sends requests to b.
func New(cfg Config, st store.Store, b backend.Backend, clk clock.Clock, logger *slog.Logger) *Engine {
	return &Engine{
		cfg:      cfg.withDefaults(),
		store:    st,
		backend:  b,
		clock:    clk,
		logger:   logger.With("component", "engine"),
		wake:     make(chan struct{}, 1),
		inFlight: map[string]int{},
		stopping: map[string]batch.Outcome{},
		groups:   newPrefixGroups(),
	}
}

// Notify wakes the engine to look for work now, for example after a batch was
// created or canceled. It never blocks.
func (e *Engine) Notify() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// errStopped is the cause given to the backend calls' context when the
// shutdown grace period ends.
var errStopped = errors.New("engine stopped")

// Run executes batches until ctx is done. It then stops claiming, lets calls
// in flight finish for up to ShutdownGrace, writes their results and returns.
func (e *Engine) Run(ctx context.Context) error {
	e.logger.InfoContext(ctx, "engine starting", "owner", e.cfg.Owner,
		"concurrency", e.cfg.Concurrency)

	// Backend calls get their own context, so that a stop lets them finish
	// within the grace period instead of cutting them off.
	callCtx, cancelCalls := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelCalls(errStopped)

	work := newQueue(e.queueLimit())
	results := make(chan batch.Result, e.cfg.FlushSize)

	var workers sync.WaitGroup
	for range e.cfg.Concurrency {
		workers.Add(1)
		go func() {
			defer workers.Done()
			e.work(ctx, callCtx, work, results)
		}()
	}

	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		e.flushLoop(context.WithoutCancel(ctx), results)
	}()

	renewCtx, stopRenewing := context.WithCancel(context.WithoutCancel(ctx))
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		e.renewLoop(renewCtx)
	}()

	e.dispatchLoop(ctx, work)

	work.close()
	e.waitWorkers(ctx, &workers, cancelCalls)
	close(results)
	<-flushed
	stopRenewing()
	<-renewed

	e.logger.InfoContext(ctx, "engine stopped", "owner", e.cfg.Owner)
	return nil
}

func (e *Engine) queueLimit() int {
	return max(2*e.cfg.Concurrency, e.cfg.ClaimSize)
}

// waitWorkers waits for the workers to drain, canceling their backend calls
// once the grace period has passed.
func (e *Engine) waitWorkers(ctx context.Context, workers *sync.WaitGroup,
	cancelCalls context.CancelCauseFunc) {
	done := make(chan struct{})
	go func() {
		workers.Wait()
		close(done)
	}()

	select {
	case <-done:
	case <-time.After(e.cfg.ShutdownGrace):
		e.logger.WarnContext(ctx, "shutdown grace period over, canceling backend calls",
			"grace", e.cfg.ShutdownGrace)
		cancelCalls(errStopped)
		<-done
	}
}

// renewLoop extends this node's leases every Lease/3 until ctx is done.
func (e *Engine) renewLoop(ctx context.Context) {
	tick := time.NewTicker(e.cfg.Lease / 3)
	defer tick.Stop()

	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}

		_, err := e.store.RequestExtendLeases(ctx, store.RequestExtendLeasesParams{
			Owner: e.cfg.Owner, LeaseUntil: e.clock.Now().Add(e.cfg.Lease),
		})
		if err != nil && ctx.Err() == nil {
			e.logger.WarnContext(ctx, "renewing leases failed", "err", err)
		}
	}
}
