package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/store"
)

// A create writes its requests in chunks of at most copyChunkRows requests
// and about copyChunkBytes of params, one COPY and one transaction per chunk.
// The request source is read between chunks, so no transaction stays open
// while a client uploads slowly.
const (
	copyChunkRows  = 5000
	copyChunkBytes = 8 << 20
)

// errStagingGone means that another node deleted a staged batch as abandoned
// while it was still being written.
var errStagingGone = errors.New("the staged batch was deleted as abandoned " +
	"because no chunk was written to it for longer than the staging max age")

// BatchCreate implements [store.Store]. The requests are written under a seq
// registered in batch_staging. No reader finds them until the final
// transaction inserts the batch row and deletes the staging row.
func (s *Store) BatchCreate(ctx context.Context, params store.BatchCreateParams) (batch.Batch, error) {
	if params.IdempotencyKey != "" {
		b, found, err := findByIdempotencyKey(ctx, s.pool, params.WorkspaceID, params.IdempotencyKey)
		if err != nil || found {
			return b, err
		}
	}

	var seq int64
	err := s.pool.QueryRow(ctx, `INSERT INTO batch_staging (seq)
		VALUES (nextval('batch_seq')) RETURNING seq`).Scan(&seq)
	if err != nil {
		return batch.Batch{}, fmt.Errorf("stage batch: %w", err)
	}

	b, err := s.writeCreate(ctx, seq, params)
	if errors.Is(err, errReplayed) {
		cleanupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if err := s.abortCreate(cleanupCtx, seq); err != nil {
			return batch.Batch{}, err
		}
		return b, nil
	}
	if err != nil {
		cleanupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if cleanupErr := s.abortCreate(cleanupCtx, seq); cleanupErr != nil {
			return batch.Batch{}, fmt.Errorf("%w (and removing its rows: %v)", err, cleanupErr)
		}
		return batch.Batch{}, err
	}
	return b, nil
}

func (s *Store) writeCreate(ctx context.Context, seq int64,
	params store.BatchCreateParams) (batch.Batch, error) {
	chunk := make([]batch.NewRequest, 0, 256)
	chunkBytes := 0
	var count int64

	for req, err := range params.Requests {
		if err != nil {
			return batch.Batch{}, err
		}
		chunk = append(chunk, req)
		chunkBytes += len(req.Params) + len(req.CustomID)
		if len(chunk) < copyChunkRows && chunkBytes < copyChunkBytes {
			continue
		}

		if err := s.insertRequests(ctx, seq, count, chunk); err != nil {
			return batch.Batch{}, err
		}
		count += int64(len(chunk))
		clear(chunk) // drop references to params already written
		chunk = chunk[:0]
		chunkBytes = 0
	}

	if len(chunk) > 0 {
		if err := s.insertRequests(ctx, seq, count, chunk); err != nil {
			return batch.Batch{}, err
		}
		count += int64(len(chunk))
	}
	if count == 0 {
		return batch.Batch{}, fmt.Errorf("store: a batch needs at least one request: %w",
			batch.ErrInvalidRequest)
	}

	return s.publish(ctx, seq, count, params)
}

// errReplayed signals to BatchCreate that publish found an earlier batch with the
// same idempotency key, so the staged rows must go.
var errReplayed = errors.New("replayed")

func findByIdempotencyKey(ctx context.Context, q querier, workspaceID, key string) (batch.Batch, bool, error) {
	row := q.QueryRow(ctx, `SELECT `+batchColumns+` FROM batches
		WHERE workspace_id = $1 AND idempotency_key = $2`, workspaceID, key)
	b, _, err := scanBatch(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return batch.Batch{}, false, nil
	}
	if err != nil {
		return batch.Batch{}, false, fmt.Errorf("find batch by idempotency key: %w", err)
	}
	return b, true, nil
}

// insertRequests copies one chunk of requests in a transaction that first
// touches the staging row. The row lock it takes keeps StagingDeleteStale
// from deleting the staged batch during the copy, and a missing row means it
// was deleted earlier.
func (s *Store) insertRequests(ctx context.Context, seq, firstIndex int64,
	reqs []batch.NewRequest) error {
	return s.inTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx,
			`UPDATE batch_staging SET touched_at = now() WHERE seq = $1`, seq)
		if err != nil {
			return fmt.Errorf("touch staged batch: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return errStagingGone
		}

		source := &requestSource{seq: seq, firstIndex: firstIndex, reqs: reqs, next: -1}
		_, err = tx.CopyFrom(ctx, pgx.Identifier{"requests"},
			[]string{"batch_seq", "request_index", "custom_id", "params"}, source)
		if err != nil {
			return fmt.Errorf("insert requests %d to %d: %w",
				firstIndex, firstIndex+int64(len(reqs))-1, err)
		}
		return nil
	})
}

// requestSource feeds a chunk of requests to COPY without building a row
// slice for each.
type requestSource struct {
	seq        int64
	firstIndex int64
	reqs       []batch.NewRequest
	next       int
}

func (r *requestSource) Next() bool {
	r.next++
	return r.next < len(r.reqs)
}

func (r *requestSource) Values() ([]any, error) {
	req := r.reqs[r.next]
	return []any{r.seq, r.firstIndex + int64(r.next), req.CustomID, []byte(req.Params)}, nil
}

func (r *requestSource) Err() error {
	return nil
}

// publish inserts the batch row, which makes the batch visible. NewBatch runs
// under a transaction-level advisory lock that is held until commit, so a
// batch whose id is made later also becomes visible later, on every node.
// The same lock makes the idempotency key check and the insert one step: an
// earlier batch with the key is returned with errReplayed.
func (s *Store) publish(ctx context.Context, seq, count int64,
	params store.BatchCreateParams) (batch.Batch, error) {
	var (
		b        batch.Batch
		replayed bool
	)
	err := s.inTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext(coalesce(current_schema(), '')))`,
			lockPublish)
		if err != nil {
			return fmt.Errorf("take publish lock: %w", err)
		}

		tag, err := tx.Exec(ctx, `DELETE FROM batch_staging WHERE seq = $1`, seq)
		if err != nil {
			return fmt.Errorf("remove staging row: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return errStagingGone
		}

		var key *string
		if params.IdempotencyKey != "" {
			earlier, found, err := findByIdempotencyKey(ctx, tx, params.WorkspaceID,
				params.IdempotencyKey)
			if err != nil {
				return err
			}
			if found {
				b, replayed = earlier, true
				return nil
			}
			key = &params.IdempotencyKey
		}

		b = params.NewBatch(count)
		b.RequestCount = count
		betas := b.Betas
		if betas == nil {
			betas = []string{}
		}
		_, err = tx.Exec(ctx, `INSERT INTO batches (seq, id, workspace_id, status,
			request_count, created_at, expires_at, betas, idempotency_key)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			seq, b.ID, b.WorkspaceID, string(b.Status), count, b.CreatedAt, b.ExpiresAt, betas,
			key)
		if err != nil {
			return fmt.Errorf("insert batch %s: %w", b.ID, err)
		}
		return nil
	})
	if err != nil {
		return batch.Batch{}, fmt.Errorf("publish batch: %w", err)
	}
	if replayed {
		return b, errReplayed
	}
	return b, nil
}

// abortCreate removes a staged batch and the requests written for it. It
// leaves the requests alone if the batch row exists after all, which happens
// when a commit succeeded but its reply was lost.
func (s *Store) abortCreate(ctx context.Context, seq int64) error {
	return s.inTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM requests WHERE batch_seq = $1
			AND NOT EXISTS (SELECT 1 FROM batches WHERE seq = $1)`, seq)
		if err != nil {
			return fmt.Errorf("remove staged requests: %w", err)
		}
		_, err = tx.Exec(ctx, `DELETE FROM batch_staging WHERE seq = $1`, seq)
		if err != nil {
			return fmt.Errorf("remove staging row: %w", err)
		}
		return nil
	})
}

// StagingDeleteStale deletes staged batches, and their requests, that have
// gone without a write for longer than olderThan, as measured by the
// database's clock. These are left by creates whose node died. A create that
// is still running touches its staging row with every chunk it writes, so it
// keeps its rows unless its request source stalls for longer than olderThan.
// It returns how many staged batches it deleted.
func (s *Store) StagingDeleteStale(ctx context.Context, olderThan time.Duration) (int, error) {
	var seqs []int64
	err := s.inTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `DELETE FROM batch_staging
			WHERE touched_at < now() - $1 * interval '1 microsecond' RETURNING seq`,
			olderThan.Microseconds())
		if err != nil {
			return err
		}
		seqs, err = pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil || len(seqs) == 0 {
			return err
		}

		_, err = tx.Exec(ctx, `DELETE FROM requests WHERE batch_seq = ANY($1)`, seqs)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("delete stale staged batches: %w", err)
	}
	return len(seqs), nil
}
