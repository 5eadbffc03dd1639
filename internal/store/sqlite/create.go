package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/store"
)

// cleanupTimeout bounds the removal of a failed create's rows, which runs
// even after the caller's context is canceled.
const cleanupTimeout = time.Minute

// BatchCreate implements [store.Store]. The requests are written in chunks,
// each in its own transaction, under a seq from batch_staging that no reader
// looks at. The final transaction inserts the batch row, which is what makes
// the batch visible, and deletes the staging row.
func (s *Store) BatchCreate(ctx context.Context, params store.BatchCreateParams) (batch.Batch, error) {
	if params.IdempotencyKey != "" {
		b, found, err := findByIdempotencyKey(ctx, s.read, params.WorkspaceID, params.IdempotencyKey)
		if err != nil || found {
			return b, err
		}
	}

	seq, err := s.beginCreate(ctx)
	if err != nil {
		return batch.Batch{}, err
	}

	b, err := s.writeCreate(ctx, seq, params)
	if errors.Is(err, errReplayed) {
		if err := s.abortCreate(context.WithoutCancel(ctx), seq); err != nil {
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

func (s *Store) beginCreate(ctx context.Context) (int64, error) {
	var seq int64
	err := s.write.QueryRowContext(ctx,
		`INSERT INTO batch_staging (started_at) VALUES (?) RETURNING seq`,
		time.Now().UnixMicro()).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("stage batch: %w", err)
	}
	return seq, nil
}

func (s *Store) writeCreate(ctx context.Context, seq int64, params store.BatchCreateParams) (batch.Batch, error) {
	base, _ := ridRange(seq)
	chunk := make([]batch.NewRequest, 0, insertChunk)
	var count int64

	for req, err := range params.Requests {
		if err != nil {
			return batch.Batch{}, err
		}
		chunk = append(chunk, req)
		if len(chunk) == insertChunk {
			if err := s.insertRequests(ctx, base+count, chunk); err != nil {
				return batch.Batch{}, err
			}
			count += int64(len(chunk))
			chunk = chunk[:0]
		}
	}

	if len(chunk) > 0 {
		if err := s.insertRequests(ctx, base+count, chunk); err != nil {
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
	row := q.QueryRowContext(ctx, `SELECT `+batchColumns+` FROM batches
		WHERE workspace_id = ? AND idempotency_key = ?`, workspaceID, key)
	b, _, err := scanBatch(row)
	if errors.Is(err, sql.ErrNoRows) {
		return batch.Batch{}, false, nil
	}
	if err != nil {
		return batch.Batch{}, false, fmt.Errorf("find batch by idempotency key: %w", err)
	}
	return b, true, nil
}

func (s *Store) insertRequests(ctx context.Context, firstRID int64, reqs []batch.NewRequest) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("insert requests: %w", err)
	}
	defer tx.Rollback()

	stmt, err := tx.PrepareContext(ctx,
		`INSERT INTO requests (rid, custom_id, params) VALUES (?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("insert requests: %w", err)
	}
	defer stmt.Close()

	rowCtx := unwatched(ctx)
	for i, req := range reqs {
		_, err := stmt.ExecContext(rowCtx, firstRID+int64(i), req.CustomID, []byte(req.Params))
		if err != nil {
			return fmt.Errorf("insert request %s: %w", req.CustomID, err)
		}
	}
	return tx.Commit()
}

// publish inserts the batch row. NewBatch runs inside the write transaction,
// which SQLite serializes and inBatchTx holds batchMu for, so batch ids grow
// in the order batches appear, also in the cache. An idempotency key checked
// here cannot be taken by another create before the commit. An earlier batch
// with the key is returned with errReplayed.
func (s *Store) publish(ctx context.Context, seq, count int64,
	params store.BatchCreateParams) (batch.Batch, error) {
	var b batch.Batch
	err := s.inBatchTx(ctx, func(tx *sql.Tx, changes *batchChanges) error {
		var key sql.NullString
		if params.IdempotencyKey != "" {
			earlier, found, err := findByIdempotencyKey(ctx, tx, params.WorkspaceID,
				params.IdempotencyKey)
			if err != nil {
				return err
			}
			if found {
				b = earlier
				return errReplayed
			}
			key = sql.NullString{String: params.IdempotencyKey, Valid: true}
		}

		b = params.NewBatch(count)
		b.RequestCount = count
		_, err := tx.ExecContext(ctx, `INSERT INTO batches (seq, id, workspace_id, status,
			request_count, created_at, expires_at, betas, idempotency_key)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			seq, b.ID, b.WorkspaceID, string(b.Status), count,
			micros(b.CreatedAt), micros(b.ExpiresAt), strings.Join(b.Betas, ","), key)
		if err != nil {
			return fmt.Errorf("publish batch %s: %w", b.ID, err)
		}

		_, err = tx.ExecContext(ctx, `DELETE FROM batch_staging WHERE seq = ?`, seq)
		if err != nil {
			return fmt.Errorf("publish batch %s: %w", b.ID, err)
		}
		changes.put = append(changes.put, storedBatch(b))
		return nil
	})
	if err != nil && !errors.Is(err, errReplayed) {
		return batch.Batch{}, err
	}
	return b, err
}

// storedBatch returns the fields of a new batch that publish writes, so that
// the cache contains what a read of the row returns.
func storedBatch(b batch.Batch) batch.Batch {
	return batch.Batch{
		ID:           b.ID,
		WorkspaceID:  b.WorkspaceID,
		Status:       b.Status,
		RequestCount: b.RequestCount,
		CreatedAt:    b.CreatedAt,
		ExpiresAt:    b.ExpiresAt,
		Betas:        b.Betas,
	}
}

// abortCreate removes a staged batch and any requests written for it.
func (s *Store) abortCreate(ctx context.Context, seq int64) error {
	low, high := ridRange(seq)
	return s.inWriteTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			`DELETE FROM requests WHERE rid BETWEEN ? AND ?`, low, high); err != nil {
			return fmt.Errorf("remove staged requests: %w", err)
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM batch_staging WHERE seq = ?`, seq)
		return err
	})
}

func (s *Store) inWriteTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()

	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}
