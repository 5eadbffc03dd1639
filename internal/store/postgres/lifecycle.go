package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/store"
)

// archiveChunk is how many batches one BatchArchive transaction handles.
const archiveChunk = 50

// BatchCancel implements [store.Store].
func (s *Store) BatchCancel(ctx context.Context, params store.BatchCancelParams) (batch.Batch, error) {
	var result batch.Batch
	err := s.inTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		b, seq, err := getBatch(ctx, tx, params.WorkspaceID, params.ID, true)
		if err != nil {
			return err
		}

		switch b.Status {
		case batch.StatusEnded:
			return fmt.Errorf("batch %s has ended and cannot be canceled: %w",
				params.ID, store.ErrWrongState)
		case batch.StatusCanceling:
			result = b
			return nil
		}

		_, err = tx.Exec(ctx, `UPDATE batches SET status = 'canceling',
			cancel_initiated_at = $1 WHERE seq = $2`, params.Now, seq)
		if err != nil {
			return fmt.Errorf("cancel batch %s: %w", params.ID, err)
		}
		b.Status = batch.StatusCanceling
		b.CancelInitiatedAt = params.Now
		result = b
		return nil
	})
	if err != nil {
		return batch.Batch{}, err
	}
	return result, nil
}

// BatchDelete implements [store.Store].
func (s *Store) BatchDelete(ctx context.Context, params store.BatchDeleteParams) error {
	return s.inTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		b, seq, err := getBatch(ctx, tx, params.WorkspaceID, params.ID, true)
		if err != nil {
			return err
		}
		if b.Status != batch.StatusEnded {
			return fmt.Errorf("batch %s is %s; cancel it and wait until it has ended "+
				"before deleting it: %w", params.ID, b.Status, store.ErrWrongState)
		}

		if _, err := tx.Exec(ctx, `DELETE FROM requests WHERE batch_seq = $1`, seq); err != nil {
			return fmt.Errorf("delete batch %s: %w", params.ID, err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM batches WHERE seq = $1`, seq); err != nil {
			return fmt.Errorf("delete batch %s: %w", params.ID, err)
		}
		return nil
	})
}

// BatchEnd implements [store.Store]. The batch row stays locked from the
// check to the update, so of several nodes that end a batch at the same
// time exactly one gets true.
func (s *Store) BatchEnd(ctx context.Context, params store.BatchEndParams) (bool, error) {
	ended := false
	err := s.inTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		b, seq, err := getBatch(ctx, tx, "", params.ID, true)
		if err != nil || b.Status == batch.StatusEnded {
			return err
		}

		var open bool
		err = tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM requests
			WHERE batch_seq = $1 AND state < 2)`, seq).Scan(&open)
		if err != nil {
			return fmt.Errorf("end batch %s: %w", params.ID, err)
		}
		if open {
			return nil
		}

		counts, err := countOutcomes(ctx, tx, seq)
		if err != nil {
			return fmt.Errorf("end batch %s: %w", params.ID, err)
		}
		_, err = tx.Exec(ctx, `UPDATE batches SET status = 'ended', ended_at = $1,
			succeeded = $2, errored = $3, canceled = $4, expired = $5 WHERE seq = $6`,
			params.Now, counts.Succeeded, counts.Errored, counts.Canceled, counts.Expired, seq)
		if err != nil {
			return fmt.Errorf("end batch %s: %w", params.ID, err)
		}
		ended = true
		return nil
	})
	if err != nil {
		return false, err
	}
	return ended, nil
}

func countOutcomes(ctx context.Context, tx pgx.Tx, seq int64) (batch.Counts, error) {
	var counts batch.Counts
	err := tx.QueryRow(ctx, `SELECT
			count(*) FILTER (WHERE outcome = 'succeeded'),
			count(*) FILTER (WHERE outcome = 'errored'),
			count(*) FILTER (WHERE outcome = 'canceled'),
			count(*) FILTER (WHERE outcome = 'expired'),
			count(*) FILTER (WHERE outcome IS NULL)
		FROM requests WHERE batch_seq = $1`, seq).
		Scan(&counts.Succeeded, &counts.Errored, &counts.Canceled, &counts.Expired,
			&counts.Processing)
	if err != nil {
		return batch.Counts{}, fmt.Errorf("count outcomes: %w", err)
	}
	if counts.Processing > 0 {
		return batch.Counts{}, fmt.Errorf("count outcomes: %d done requests have no outcome",
			counts.Processing)
	}
	return counts, nil
}

// BatchArchive implements [store.Store]. Each chunk locks its batches with
// SKIP LOCKED, so nodes that archive at the same time split the work and no
// batch is counted twice. A batch that another transaction holds locked at
// that moment is left for a later call.
func (s *Store) BatchArchive(ctx context.Context, params store.BatchArchiveParams) (int, error) {
	total := 0
	for {
		n, err := s.archiveSome(ctx, params)
		total += n
		if err != nil || n < archiveChunk {
			return total, err
		}
	}
}

func (s *Store) archiveSome(ctx context.Context, params store.BatchArchiveParams) (int, error) {
	var seqs []int64
	err := s.inTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT seq FROM batches
			WHERE archived_at IS NULL AND created_at < $1 AND status = 'ended'
			ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED`,
			params.CreatedBefore, archiveChunk)
		if err != nil {
			return fmt.Errorf("find batches to archive: %w", err)
		}
		seqs, err = pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil || len(seqs) == 0 {
			return err
		}

		if _, err := tx.Exec(ctx,
			`DELETE FROM requests WHERE batch_seq = ANY($1)`, seqs); err != nil {
			return fmt.Errorf("archive batches: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE batches SET archived_at = $1 WHERE seq = ANY($2)`,
			params.Now, seqs); err != nil {
			return fmt.Errorf("archive batches: %w", err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return len(seqs), nil
}
