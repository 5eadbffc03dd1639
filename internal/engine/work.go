package engine

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/messages"
	"github.com/batchd/batchd/internal/store"
)

// work sends queued requests to the backend until the queue is closed. Once
// runCtx is done it starts no new call: requests still queued keep their
// claim and run again after the lease ends or the node restarts.
func (e *Engine) work(runCtx, callCtx context.Context, work *queue, results chan<- batch.Result) {
	for j := range work.ch {
		e.runJob(runCtx, callCtx, work, j, results)
	}
}

// runJob produces the result of one queued request, then releases the
// requests that waited for it as the first of their prompt-prefix group.
func (e *Engine) runJob(runCtx, callCtx context.Context, work *queue, j job,
	results chan<- batch.Result) {
	req := j.req
	e.mu.Lock()
	e.queued--
	stop, stopping := e.stopping[req.BatchID]
	e.mu.Unlock()

	switch {
	case runCtx.Err() != nil:
		e.release(req.BatchID, 1)
	case stopping:
		results <- batch.Result{BatchID: req.BatchID, Index: req.Index, Fence: req.Fence,
			Outcome: stop}
	default:
		res, ok := e.execute(callCtx, req, j.model)
		if ok {
			results <- res
		} else {
			e.release(req.BatchID, 1)
		}
	}

	if j.group != "" {
		for _, follower := range e.groups.release(req.BatchID, j.group) {
			e.enqueue(work, follower)
		}
	}
}

// enqueue queues j, or drops it when the queue has closed. Its claim then
// stays in the store until its lease ends or the node restarts.
func (e *Engine) enqueue(work *queue, j job) {
	if !work.push(j) {
		e.mu.Lock()
		e.queued--
		e.mu.Unlock()
		e.release(j.req.BatchID, 1)
	}
}

// execute validates one request and sends it to the backend. It reports
// false, with no result, when the engine's shutdown cut the call off: the
// request keeps its claim and runs again after a restart or on another node.
func (e *Engine) execute(ctx context.Context, req batch.Request, model string) (batch.Result, bool) {
	result := batch.Result{BatchID: req.BatchID, Index: req.Index, Fence: req.Fence}

	if err := messages.Validate(req.Params); err != nil {
		return e.errored(ctx, result, req, err), true
	}

	// Once the batch is canceling or expired, a failed attempt is final:
	// retry wrappers check this before each further attempt.
	sendCtx := backend.WithRetryStop(ctx, func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		_, stopping := e.stopping[req.BatchID]
		return stopping
	})
	resp, err := e.backend.Send(sendCtx, backend.Request{
		BatchID:  req.BatchID,
		CustomID: req.CustomID,
		Params:   req.Params,
		Model:    model,
		Betas:    req.Betas,
	})
	if err != nil && errors.Is(context.Cause(ctx), errStopped) {
		return batch.Result{}, false
	}
	if err != nil {
		return e.errored(ctx, result, req, err), true
	}

	result.Outcome = batch.OutcomeSucceeded
	result.Body = resp.Message
	return result, true
}

func (e *Engine) errored(ctx context.Context, result batch.Result, req batch.Request,
	err error) batch.Result {
	be := backend.AsError(err)
	if be.Type != backend.TypeInvalidRequest {
		e.logger.WarnContext(ctx, "request errored", "batch_id", req.BatchID,
			"custom_id", req.CustomID, "err", err)
	}
	result.Outcome = batch.OutcomeErrored
	result.Body = errorEnvelope(be)
	return result
}

// errorEnvelope renders the error object of an errored result line: the
// Messages API's error envelope.
func errorEnvelope(be *backend.Error) json.RawMessage {
	type inner struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	}
	envelope := struct {
		Type      string `json:"type"`
		Error     inner  `json:"error"`
		RequestID string `json:"request_id"`
	}{
		Type:      "error",
		Error:     inner{Type: be.Type, Message: be.Message},
		RequestID: batch.NewRequestID(),
	}
	body, _ := json.Marshal(envelope) // cannot fail: strings only
	return body
}

// release removes n requests of a batch from this node's in-flight count.
func (e *Engine) release(batchID string, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.inFlight[batchID] -= n
	if e.inFlight[batchID] <= 0 {
		delete(e.inFlight, batchID)
	}
}

// flushLoop writes results to the store in groups until results is closed.
func (e *Engine) flushLoop(ctx context.Context, results <-chan batch.Result) {
	pending := make([]batch.Result, 0, e.cfg.FlushSize)
	timer := time.NewTimer(e.cfg.FlushInterval)
	defer timer.Stop()

	for {
		select {
		case res, ok := <-results:
			if !ok {
				e.flush(ctx, pending)
				return
			}
			pending = append(pending, res)
			if len(pending) < e.cfg.FlushSize {
				continue
			}
		case <-timer.C:
			timer.Reset(e.cfg.FlushInterval)
			if len(pending) == 0 {
				continue
			}
		}

		e.flush(ctx, pending)
		pending = pending[:0]
	}
}

// flush writes one group of results and wakes the dispatcher, which ends the
// batches that are now complete.
func (e *Engine) flush(ctx context.Context, results []batch.Result) {
	if len(results) == 0 {
		return
	}

	err := retry(ctx, func() error {
		_, err := e.store.RequestFinish(ctx, store.RequestFinishParams{
			Owner: e.cfg.Owner, Results: results,
		})
		return err
	})
	if err != nil {
		// The requests keep their claims; once the leases end they run again.
		e.logger.ErrorContext(ctx, "recording results failed", "results", len(results), "err", err)
	} else {
		for _, res := range results {
			e.cfg.Metrics.AddResults(string(res.Outcome), 1)
		}
	}

	for _, res := range results {
		e.release(res.BatchID, 1)
	}
	e.Notify()
}
