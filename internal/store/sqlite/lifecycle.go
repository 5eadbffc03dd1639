package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/store"
)

// archiveChunk is how many batches one BatchArchive transaction handles.
const archiveChunk = 50

// BatchCancel implements [store.Store].
func (s *Store) BatchCancel(ctx context.Context, params store.BatchCancelParams) (batch.Batch, error) {
	var result batch.Batch
	err := s.inBatchTx(ctx, func(tx *sql.Tx, changes *batchChanges) error {
		b, seq, err := getBatch(ctx, tx, params.WorkspaceID, params.ID)
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

		_, err = tx.ExecContext(ctx, `UPDATE batches SET status = 'canceling',
			cancel_initiated_at = ? WHERE seq = ?`, micros(params.Now), seq)
		if err != nil {
			return fmt.Errorf("cancel batch %s: %w", params.ID, err)
		}
		b.Status = batch.StatusCanceling
		b.CancelInitiatedAt = params.Now
		result = b
		changes.put = append(changes.put, b)
		return nil
	})
	return result, err
}

// BatchDelete implements [store.Store].
func (s *Store) BatchDelete(ctx context.Context, params store.BatchDeleteParams) error {
	return s.inBatchTx(ctx, func(tx *sql.Tx, changes *batchChanges) error {
		b, seq, err := getBatch(ctx, tx, params.WorkspaceID, params.ID)
		if err != nil {
			return err
		}
		if b.Status != batch.StatusEnded {
			return fmt.Errorf("batch %s is %s; cancel it and wait until it has ended "+
				"before deleting it: %w", params.ID, b.Status, store.ErrWrongState)
		}

		low, high := ridRange(seq)
		if _, err := tx.ExecContext(ctx,
			`DELETE FROM requests WHERE rid BETWEEN ? AND ?`, low, high); err != nil {
			return fmt.Errorf("delete batch %s: %w", params.ID, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM batches WHERE seq = ?`, seq); err != nil {
			return fmt.Errorf("delete batch %s: %w", params.ID, err)
		}
		changes.deleted = append(changes.deleted, b)
		return nil
	})
}

// BatchEnd implements [store.Store].
func (s *Store) BatchEnd(ctx context.Context, params store.BatchEndParams) (bool, error) {
	ended := false
	err := s.inBatchTx(ctx, func(tx *sql.Tx, changes *batchChanges) error {
		b, seq, err := getBatch(ctx, tx, "", params.ID)
		if err != nil || b.Status == batch.StatusEnded {
			return err
		}

		low, high := ridRange(seq)
		var open bool
		// One probe per state, so that each is a seek in requests_open.
		err = tx.QueryRowContext(ctx, `SELECT
			EXISTS (SELECT 1 FROM requests WHERE state = 0 AND state < 2 AND rid BETWEEN ?1 AND ?2)
			OR EXISTS (SELECT 1 FROM requests WHERE state = 1 AND state < 2 AND rid BETWEEN ?1 AND ?2)`,
			low, high).Scan(&open)
		if err != nil || open {
			return err
		}

		counts, err := countOutcomes(ctx, tx, low, high)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE batches SET status = 'ended', ended_at = ?,
			succeeded = ?, errored = ?, canceled = ?, expired = ? WHERE seq = ?`,
			micros(params.Now), counts.Succeeded, counts.Errored, counts.Canceled,
			counts.Expired, seq)
		if err != nil {
			return fmt.Errorf("end batch %s: %w", params.ID, err)
		}
		b.Status = batch.StatusEnded
		b.EndedAt = params.Now
		b.Final = counts
		changes.put = append(changes.put, b)
		ended = true
		return nil
	})
	return ended, err
}

func countOutcomes(ctx context.Context, tx *sql.Tx, low, high int64) (batch.Counts, error) {
	rows, err := tx.QueryContext(ctx, `SELECT outcome, COUNT(*) FROM requests
		WHERE rid BETWEEN ? AND ? GROUP BY outcome`, low, high)
	if err != nil {
		return batch.Counts{}, fmt.Errorf("count outcomes: %w", err)
	}
	defer rows.Close()

	var counts batch.Counts
	for rows.Next() {
		var (
			outcome sql.NullString
			n       int64
		)
		if err := rows.Scan(&outcome, &n); err != nil {
			return batch.Counts{}, err
		}
		switch batch.Outcome(outcome.String) {
		case batch.OutcomeSucceeded:
			counts.Succeeded = n
		case batch.OutcomeErrored:
			counts.Errored = n
		case batch.OutcomeCanceled:
			counts.Canceled = n
		case batch.OutcomeExpired:
			counts.Expired = n
		default:
			return batch.Counts{}, fmt.Errorf("count outcomes: %d requests have outcome %q",
				n, outcome.String)
		}
	}
	return counts, rows.Err()
}

// BatchArchive implements [store.Store].
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
	n := 0
	err := s.inBatchTx(ctx, func(tx *sql.Tx, changes *batchChanges) error {
		rows, err := tx.QueryContext(ctx, `SELECT `+batchColumns+` FROM batches
			WHERE archived_at IS NULL AND created_at < ? AND status = 'ended'
			ORDER BY created_at LIMIT ?`, micros(params.CreatedBefore), archiveChunk)
		if err != nil {
			return fmt.Errorf("find batches to archive: %w", err)
		}
		var (
			found []batch.Batch
			seqs  []int64
			scan  batchScan
		)
		for rows.Next() {
			b, seq, err := scan.scan(rows)
			if err != nil {
				rows.Close()
				return err
			}
			found = append(found, b)
			seqs = append(seqs, seq)
		}
		rows.Close()

		for i, seq := range seqs {
			low, high := ridRange(seq)
			if _, err := tx.ExecContext(ctx,
				`DELETE FROM requests WHERE rid BETWEEN ? AND ?`, low, high); err != nil {
				return fmt.Errorf("archive batch: %w", err)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE batches SET archived_at = ? WHERE seq = ?`,
				micros(params.Now), seq); err != nil {
				return fmt.Errorf("archive batch: %w", err)
			}
			found[i].ArchivedAt = params.Now
		}
		changes.put = found
		n = len(seqs)
		return nil
	})
	return n, err
}
