package engine

import (
	"context"
	"time"

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/store"
)

// dispatchLoop claims work until ctx is done. Each round walks the active
// batches, oldest first, and fills the work queue up to its limit.
func (e *Engine) dispatchLoop(ctx context.Context, work *queue) {
	poll := time.NewTicker(e.cfg.PollInterval)
	defer poll.Stop()
	maintain := time.NewTicker(e.cfg.MaintenanceInterval)
	defer maintain.Stop()

	for {
		if err := e.dispatchOnce(ctx, work); err != nil && ctx.Err() == nil {
			e.logger.ErrorContext(ctx, "dispatch round failed", "err", err)
		}

		select {
		case <-ctx.Done():
			return
		case <-e.wake:
		case <-poll.C:
		case <-maintain.C:
			if err := e.Maintain(ctx); err != nil && ctx.Err() == nil {
				e.logger.ErrorContext(ctx, "maintenance failed", "err", err)
			}
		}
	}
}

// dispatchOnce runs one round over the active batches: it applies cancel and
// expiry, claims requests into the queue, and ends batches that are done.
func (e *Engine) dispatchOnce(ctx context.Context, work *queue) error {
	active, err := e.store.BatchListActive(ctx)
	if err != nil {
		return err
	}
	if !e.started {
		e.started = true
		if len(active) > 0 {
			e.logger.InfoContext(ctx, "resuming unfinished batches", "batches", len(active))
		}
	}

	for _, b := range active {
		if err := e.advance(ctx, b, work); err != nil {
			return err
		}
	}
	return nil
}

// advance moves one batch forward as far as it can go in this round.
func (e *Engine) advance(ctx context.Context, b batch.Batch, work *queue) error {
	now := e.clock.Now()

	stop, stopping := stopOutcome(b, now)
	if stopping {
		e.markStopping(b.ID, stop)
		_, err := e.store.RequestEndUnclaimed(ctx, store.RequestEndUnclaimedParams{
			BatchID: b.ID, Outcome: stop, Now: now,
		})
		if err != nil {
			return err
		}
		return e.tryEnd(ctx, b.ID)
	}

	claimed, tried, err := e.claim(ctx, b.ID, now)
	if err != nil || !tried {
		return err
	}
	for _, req := range claimed {
		req.Betas = b.Betas
		if j, now := e.groups.admit(req); now {
			e.enqueue(work, j)
		}
	}
	if len(claimed) == 0 {
		return e.tryEnd(ctx, b.ID)
	}
	return nil
}

// stopOutcome returns the outcome for a batch's unstarted requests when the
// batch must stop: canceled while canceling, expired once past expires_at.
func stopOutcome(b batch.Batch, now time.Time) (batch.Outcome, bool) {
	if b.Status == batch.StatusCanceling {
		return batch.OutcomeCanceled, true
	}
	if !now.Before(b.ExpiresAt) {
		return batch.OutcomeExpired, true
	}
	return "", false
}

func (e *Engine) markStopping(batchID string, outcome batch.Outcome) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.stopping[batchID]; !ok {
		e.stopping[batchID] = outcome
	}
}

// claim takes as many requests of one batch as the queue has room for. It
// reports false, claiming nothing, while the queue is too full to be worth a
// claim: every claim is a write transaction, so while a quarter of the queue
// or more is still waiting, the engine waits for more room to claim in bulk.
func (e *Engine) claim(ctx context.Context, batchID string, now time.Time) ([]batch.Request, bool, error) {
	e.mu.Lock()
	limit := e.queueLimit()
	room := min(limit-e.queued, e.cfg.ClaimSize)
	busy := e.queued > 0 && room < limit/4
	e.mu.Unlock()
	if room <= 0 || busy {
		return nil, false, nil
	}

	claimed, err := e.store.RequestClaim(ctx, store.RequestClaimParams{
		BatchID:    batchID,
		Owner:      e.cfg.Owner,
		Limit:      room,
		Now:        now,
		LeaseUntil: now.Add(e.cfg.Lease),
	})
	if err != nil {
		return nil, true, err
	}

	e.mu.Lock()
	e.queued += len(claimed)
	e.inFlight[batchID] += len(claimed)
	e.mu.Unlock()
	return claimed, true, nil
}

// tryEnd ends a batch if this node holds none of its requests and the store
// finds every request finished. Requests held by other nodes keep it open.
func (e *Engine) tryEnd(ctx context.Context, batchID string) error {
	e.mu.Lock()
	held := e.inFlight[batchID]
	e.mu.Unlock()
	if held > 0 {
		return nil
	}

	ended, err := e.store.BatchEnd(ctx, store.BatchEndParams{ID: batchID, Now: e.clock.Now()})
	if err != nil {
		return err
	}
	if ended {
		e.mu.Lock()
		delete(e.stopping, batchID)
		delete(e.inFlight, batchID)
		e.mu.Unlock()
		e.groups.forget(batchID)
		e.logger.InfoContext(ctx, "batch ended", "batch_id", batchID)
	}
	return nil
}

// Maintain archives the results of batches older than the retention window.
// The engine calls it every MaintenanceInterval; tests call it directly.
func (e *Engine) Maintain(ctx context.Context) error {
	now := e.clock.Now()
	n, err := e.store.BatchArchive(ctx, store.BatchArchiveParams{
		CreatedBefore: now.Add(-e.cfg.Retention),
		Now:           now,
	})
	if n > 0 {
		e.logger.InfoContext(ctx, "archived batch results", "batches", n)
	}
	return err
}

// RunOnce runs one dispatch round and waits until every request it claimed
// has its result written. Tests use it to drive the engine step by step
// under a fake clock; it must not be called while Run is running.
func (e *Engine) RunOnce(ctx context.Context) error {
	work := newQueue(e.queueLimit())
	results := make(chan batch.Result, e.cfg.FlushSize)
	if err := e.dispatchOnce(ctx, work); err != nil {
		return err
	}

	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		e.flushLoop(ctx, results)
	}()

	// One worker, in this goroutine: requests held back behind the first of
	// their prompt-prefix group are queued by the time it has finished.
	for drained := false; !drained; {
		select {
		case j := <-work.ch:
			e.runJob(ctx, ctx, work, j, results)
		default:
			drained = true
		}
	}
	close(results)
	<-flushed
	return nil
}
