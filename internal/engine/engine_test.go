package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/clock"
	"github.com/batchd/batchd/internal/engine"
	"github.com/batchd/batchd/internal/store"
	"github.com/batchd/batchd/internal/store/sqlite"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

const message = `{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],` +
	`"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":1}}`

// funcBackend adapts a function to backend.Backend.
type funcBackend func(ctx context.Context, req backend.Request) (backend.Response, error)

func (f funcBackend) Send(ctx context.Context, req backend.Request) (backend.Response, error) {
	return f(ctx, req)
}

func openStore(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	return st
}

func requests(n int) iter.Seq2[batch.NewRequest, error] {
	return func(yield func(batch.NewRequest, error) bool) {
		for i := range n {
			params := fmt.Sprintf(`{"model":"m","max_tokens":10,`+
				`"messages":[{"role":"user","content":"n%d"}]}`, i)
			if !yield(batch.NewRequest{CustomID: fmt.Sprintf("c%d", i), Params: json.RawMessage(params)}, nil) {
				return
			}
		}
	}
}

func createBatch(t *testing.T, st store.Store, clk clock.Clock, n int) batch.Batch {
	t.Helper()
	b, err := st.BatchCreate(context.Background(), store.BatchCreateParams{
		Requests: requests(n),
		NewBatch: func(int64) batch.Batch {
			now := clk.Now()
			return batch.Batch{ID: batch.NewBatchID(now), WorkspaceID: "w",
				Status: batch.StatusInProgress, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
		},
	})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return b
}

// runUntilEnded runs eng until batch id ends or the timeout passes.
func runUntilEnded(t *testing.T, st store.Store, eng *engine.Engine, id string, timeout time.Duration) batch.Batch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = eng.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()

	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b, err := st.BatchGet(ctx, store.BatchGetParams{ID: id})
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if b.Status == batch.StatusEnded {
			return b
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("batch %s did not end within %s", id, timeout)
	return batch.Batch{}
}

// resultCounts reads the results of an ended batch and counts lines by
// custom_id and by outcome.
func resultCounts(t *testing.T, st store.Store, id string) (map[string]int, map[batch.Outcome]int) {
	t.Helper()
	byID, byOutcome := map[string]int{}, map[batch.Outcome]int{}
	err := st.ResultList(context.Background(), store.ResultListParams{BatchID: id},
		func(customID string, outcome batch.Outcome, body []byte) error {
			byID[customID]++
			byOutcome[outcome]++
			return nil
		})
	if err != nil {
		t.Fatalf("results: %v", err)
	}
	return byID, byOutcome
}

func TestEngineOneResultPerRequest(t *testing.T) {
	t.Parallel()
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	defer st.Close()
	clk := clock.System{}
	b := createBatch(t, st, clk, 2000)

	var calls atomic.Int64
	flaky := funcBackend(func(ctx context.Context, req backend.Request) (backend.Response, error) {
		n := calls.Add(1)
		switch n % 10 {
		case 3:
			return backend.Response{}, &backend.Error{Type: backend.TypeOverloaded, Message: "busy"}
		case 7:
			return backend.Response{}, errors.New("connection reset by peer")
		}
		return backend.Response{Message: json.RawMessage(message)}, nil
	})
	eng := engine.New(engine.Config{Concurrency: 16, ClaimSize: 100}, st, flaky, clk, discard)

	ended := runUntilEnded(t, st, eng, b.ID, 30*time.Second)
	byID, byOutcome := resultCounts(t, st, b.ID)
	if len(byID) != 2000 {
		t.Errorf("%d custom_ids have results, want 2000", len(byID))
	}
	for id, n := range byID {
		if n != 1 {
			t.Errorf("%s has %d results", id, n)
		}
	}
	if calls.Load() != 2000 {
		t.Errorf("backend called %d times, want 2000", calls.Load())
	}
	counts := ended.RequestCounts()
	if counts.Succeeded != int64(byOutcome[batch.OutcomeSucceeded]) ||
		counts.Errored != int64(byOutcome[batch.OutcomeErrored]) || counts.Total() != 2000 {
		t.Errorf("counts %+v disagree with results %v", counts, byOutcome)
	}
	if counts.Errored != 400 {
		t.Errorf("errored = %d, want 400 (every 10th call fails twice)", counts.Errored)
	}
}

func TestEngineInvalidParamsErrored(t *testing.T) {
	t.Parallel()
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	defer st.Close()
	clk := clock.System{}

	b, err := st.BatchCreate(context.Background(), store.BatchCreateParams{
		Requests: func(yield func(batch.NewRequest, error) bool) {
			yield(batch.NewRequest{CustomID: "bad", Params: json.RawMessage(
				`{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}`)}, nil)
		},
		NewBatch: func(int64) batch.Batch {
			now := clk.Now()
			return batch.Batch{ID: batch.NewBatchID(now), WorkspaceID: "w",
				Status: batch.StatusInProgress, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		},
	})
	if err != nil {
		t.Fatalf("create: %v", err)
	}

	called := false
	never := funcBackend(func(ctx context.Context, req backend.Request) (backend.Response, error) {
		called = true
		return backend.Response{Message: json.RawMessage(message)}, nil
	})
	eng := engine.New(engine.Config{}, st, never, clk, discard)
	runUntilEnded(t, st, eng, b.ID, 10*time.Second)

	var line []byte
	err = st.ResultList(context.Background(), store.ResultListParams{BatchID: b.ID},
		func(customID string, outcome batch.Outcome, body []byte) error {
			line = batch.AppendResultLine(nil, customID, outcome, body)
			return nil
		})
	if err != nil {
		t.Fatalf("results: %v", err)
	}
	var parsed struct {
		Result struct {
			Type  string `json:"type"`
			Error struct {
				Type  string `json:"type"`
				Error struct {
					Type    string `json:"type"`
					Message string `json:"message"`
				} `json:"error"`
			} `json:"error"`
		} `json:"result"`
	}
	if err := json.Unmarshal(line, &parsed); err != nil {
		t.Fatalf("result line %s: %v", line, err)
	}
	if parsed.Result.Type != "errored" || parsed.Result.Error.Type != "error" ||
		parsed.Result.Error.Error.Type != "invalid_request_error" {
		t.Errorf("result line = %s, want an errored invalid_request_error envelope", line)
	}
	if called {
		t.Error("the backend was called for invalid params")
	}
}

func TestEngineRestartRunsUnfinishedWork(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "db")
	st := openStore(t, path)
	clk := clock.System{}
	b := createBatch(t, st, clk, 50)

	// The first engine's backend hangs until its call is canceled, as a model
	// that never responds would.
	var started atomic.Int64
	hang := funcBackend(func(ctx context.Context, req backend.Request) (backend.Response, error) {
		started.Add(1)
		<-ctx.Done()
		return backend.Response{}, ctx.Err()
	})
	eng := engine.New(engine.Config{Concurrency: 5, ShutdownGrace: 50 * time.Millisecond},
		st, hang, clk, discard)

	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		_ = eng.Run(ctx)
	}()
	for started.Load() < 5 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("engine did not stop after its grace period")
	}
	st.Close()

	// A restart on the same file finishes every request exactly once.
	st = openStore(t, path)
	defer st.Close()
	ok := funcBackend(func(ctx context.Context, req backend.Request) (backend.Response, error) {
		return backend.Response{Message: json.RawMessage(message)}, nil
	})
	eng = engine.New(engine.Config{}, st, ok, clk, discard)
	ended := runUntilEnded(t, st, eng, b.ID, 10*time.Second)

	byID, _ := resultCounts(t, st, b.ID)
	if len(byID) != 50 {
		t.Errorf("%d requests have results, want 50", len(byID))
	}
	counts := ended.RequestCounts()
	// The 5 calls cut off when the grace period ended recorded no result, so
	// they ran again after the restart, like the requests never started.
	if counts.Total() != 50 || counts.Succeeded != 50 {
		t.Errorf("counts = %+v, want all 50 succeeded", counts)
	}
}

// TestEngineCancelStopsQueued checks that requests claimed but not yet
// started when a batch is canceled end canceled, not sent.
func TestEngineCancelStopsQueued(t *testing.T) {
	t.Parallel()
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	defer st.Close()
	clk := clock.System{}
	b := createBatch(t, st, clk, 200)

	var (
		mu    sync.Mutex
		sent  int
		gate  = make(chan struct{})
		first = make(chan struct{}, 1)
	)
	slow := funcBackend(func(ctx context.Context, req backend.Request) (backend.Response, error) {
		mu.Lock()
		sent++
		mu.Unlock()
		select {
		case first <- struct{}{}:
		default:
		}
		<-gate
		return backend.Response{Message: json.RawMessage(message)}, nil
	})
	eng := engine.New(engine.Config{Concurrency: 2, ClaimSize: 200}, st, slow, clk, discard)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = eng.Run(ctx) }()
	<-first

	_, err := st.BatchCancel(ctx, store.BatchCancelParams{WorkspaceID: "w", ID: b.ID, Now: clk.Now()})
	if err != nil {
		t.Fatalf("cancel: %v", err)
	}
	eng.Notify()
	time.Sleep(50 * time.Millisecond) // let the engine see the cancel
	close(gate)

	ended := runUntilEnded(t, st, engine.New(engine.Config{}, st, slow, clk, discard), b.ID,
		10*time.Second)
	counts := ended.RequestCounts()
	mu.Lock()
	defer mu.Unlock()
	if counts.Canceled < 150 {
		t.Errorf("canceled = %d, want most of 200 (sent %d)", counts.Canceled, sent)
	}
	if counts.Total() != 200 {
		t.Errorf("counts %+v do not add up to 200", counts)
	}
}

// TestEngineRenewsLeases runs calls that take longer than the lease on two
// engines sharing a store: renewals keep either from taking over the other's
// requests, so each request is sent exactly once.
func TestEngineRenewsLeases(t *testing.T) {
	t.Parallel()
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	defer st.Close()
	clk := clock.System{}
	b := createBatch(t, st, clk, 8)

	var (
		mu    sync.Mutex
		sends = map[string]int{}
	)
	slow := funcBackend(func(ctx context.Context, req backend.Request) (backend.Response, error) {
		mu.Lock()
		sends[req.CustomID]++
		mu.Unlock()
		select {
		case <-time.After(3 * time.Second):
		case <-ctx.Done():
			return backend.Response{}, ctx.Err()
		}
		return backend.Response{Message: json.RawMessage(message)}, nil
	})
	// Each call outlasts the lease two and a half times, so without renewal
	// the second engine would take every claim over. Renewal runs every 400 ms
	// and may slip by up to 800 ms before a claim lapses: wide enough for a
	// loaded CI machine running the race detector.
	cfg := engine.Config{Concurrency: 4, Lease: 1200 * time.Millisecond,
		PollInterval: 10 * time.Millisecond}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := engine.New(cfg, st, slow, clk, discard)
	go func() { _ = first.Run(ctx) }()
	second := engine.New(cfg, st, slow, clk, discard)
	runUntilEnded(t, st, second, b.ID, 20*time.Second)

	mu.Lock()
	defer mu.Unlock()
	if len(sends) != 8 {
		t.Errorf("%d requests sent, want 8", len(sends))
	}
	for id, n := range sends {
		if n != 1 {
			t.Errorf("%s sent %d times, want 1", id, n)
		}
	}
}

// TestEnginePromptPrefixFirst checks that of the requests sharing a system
// prompt, the first is answered before any other is sent.
func TestEnginePromptPrefixFirst(t *testing.T) {
	t.Parallel()
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	defer st.Close()
	clk := clock.System{}

	const groups, perGroup = 3, 10
	b, err := st.BatchCreate(context.Background(), store.BatchCreateParams{
		Requests: func(yield func(batch.NewRequest, error) bool) {
			for i := range groups * perGroup {
				params := fmt.Sprintf(`{"model":"m","max_tokens":10,"system":"prompt %d",`+
					`"messages":[{"role":"user","content":"n%d"}]}`, i%groups, i)
				if !yield(batch.NewRequest{CustomID: fmt.Sprintf("c%d", i),
					Params: json.RawMessage(params)}, nil) {
					return
				}
			}
		},
		NewBatch: func(int64) batch.Batch {
			now := clk.Now()
			return batch.Batch{ID: batch.NewBatchID(now), WorkspaceID: "w",
				Status: batch.StatusInProgress, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		},
	})
	if err != nil {
		t.Fatalf("create: %v", err)
	}

	type span struct{ start, end time.Time }
	var (
		mu    sync.Mutex
		calls = map[string][]span{} // by system prompt
	)
	model := funcBackend(func(ctx context.Context, req backend.Request) (backend.Response, error) {
		var head struct {
			System string `json:"system"`
		}
		_ = json.Unmarshal(req.Params, &head)
		start := time.Now()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		calls[head.System] = append(calls[head.System], span{start, time.Now()})
		mu.Unlock()
		return backend.Response{Message: json.RawMessage(message)}, nil
	})
	eng := engine.New(engine.Config{Concurrency: 32}, st, model, clk, discard)
	runUntilEnded(t, st, eng, b.ID, 20*time.Second)

	mu.Lock()
	defer mu.Unlock()
	if len(calls) != groups {
		t.Fatalf("%d system prompts seen, want %d", len(calls), groups)
	}
	for system, spans := range calls {
		if len(spans) != perGroup {
			t.Errorf("%s: %d calls, want %d", system, len(spans), perGroup)
		}
		first := spans[0]
		for _, s := range spans {
			if s.start.Before(first.start) {
				first = s
			}
		}
		overlapping := 0
		for _, s := range spans {
			if s != first && s.start.Before(first.end) {
				overlapping++
			}
		}
		if overlapping > 0 {
			t.Errorf("%s: %d calls started before the first one ended", system, overlapping)
		}
	}
}

// TestEngineLogsResumedBatches checks that an engine starting on a store
// with unfinished batches logs them, because an operator reading the log
// after a crash needs to see the leftover work go on.
func TestEngineLogsResumedBatches(t *testing.T) {
	t.Parallel()
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	defer st.Close()
	clk := clock.System{}
	b := createBatch(t, st, clk, 3)

	var (
		mu  sync.Mutex
		log bytes.Buffer
	)
	logger := slog.New(slog.NewTextHandler(&lockedWriter{mu: &mu, w: &log}, nil))
	answer := funcBackend(func(ctx context.Context, req backend.Request) (backend.Response, error) {
		return backend.Response{Message: json.RawMessage(message)}, nil
	})
	eng := engine.New(engine.Config{PollInterval: 10 * time.Millisecond}, st, answer, clk, logger)
	runUntilEnded(t, st, eng, b.ID, 10*time.Second)

	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(log.String(), "resuming unfinished batches") ||
		!strings.Contains(log.String(), "batches=1") {
		t.Errorf("log does not report the unfinished batch:\n%s", log.String())
	}
}

// lockedWriter serializes writes to w, which the engine's goroutines share.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
