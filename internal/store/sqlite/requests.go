package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/store"
)

// seqOf returns the seq of a batch of any workspace.
func seqOf(ctx context.Context, q querier, batchID string) (int64, error) {
	var seq int64
	err := q.QueryRowContext(ctx, `SELECT seq FROM batches WHERE id = ?`, batchID).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, store.ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("find batch %s: %w", batchID, err)
	}
	return seq, nil
}

// RequestClaim implements [store.Store]. It takes requests whose lease has
// ended first, then pending ones, each in submission order. Each of the two
// statements names one state, so that SQLite seeks in the requests_open
// index instead of reading every finished row of the batch.
func (s *Store) RequestClaim(ctx context.Context, params store.RequestClaimParams) ([]batch.Request, error) {
	var claimed []batch.Request
	err := s.inWriteTx(ctx, func(tx *sql.Tx) error {
		seq, err := seqOf(ctx, tx, params.BatchID)
		if err != nil {
			return err
		}

		low, high := ridRange(seq)
		for _, state := range []int{stateClaimed, statePending} {
			more, err := claimState(ctx, tx, params, state, low, high, params.Limit-len(claimed))
			if err != nil {
				return fmt.Errorf("claim requests of %s: %w", params.BatchID, err)
			}
			claimed = append(claimed, more...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return claimed, nil
}

// Request states, as stored in requests.state.
const (
	statePending = 0
	stateClaimed = 1
)

// claimState claims up to limit requests in the given state of the rid range
// [low, high]; claimed ones only if their lease ended before params.Now.
func claimState(ctx context.Context, tx *sql.Tx, params store.RequestClaimParams,
	state int, low, high int64, limit int) ([]batch.Request, error) {
	if limit <= 0 {
		return nil, nil
	}

	leaseEnded := ""
	if state == stateClaimed {
		leaseEnded = "AND lease_until < ?"
	}
	query := `UPDATE requests
		SET state = 1, owner = ?, lease_until = ?, fence = fence + 1
		WHERE rid IN (SELECT rid FROM requests
			WHERE state = ? AND state < 2 AND rid BETWEEN ? AND ? ` + leaseEnded + `
			ORDER BY rid LIMIT ?)
		RETURNING rid, custom_id, params, fence`
	args := []any{params.Owner, micros(params.LeaseUntil), state, low, high}
	if state == stateClaimed {
		args = append(args, micros(params.Now))
	}
	args = append(args, limit)

	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()

	var claimed []batch.Request
	for rows.Next() {
		req := batch.Request{BatchID: params.BatchID}
		var rid int64
		if err := rows.Scan(&rid, &req.CustomID, &req.Params, &req.Fence); err != nil {
			return nil, err
		}
		req.Index = rid - low
		claimed = append(claimed, req)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}

	// RETURNING gives rows in no promised order; callers expect submission order.
	sort.Slice(claimed, func(i, j int) bool { return claimed[i].Index < claimed[j].Index })
	return claimed, nil
}

// RequestFinish implements [store.Store].
func (s *Store) RequestFinish(ctx context.Context, params store.RequestFinishParams) (int, error) {
	recorded := 0
	err := s.inWriteTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `UPDATE requests
			SET state = 2, outcome = ?, result = ?, params = NULL, owner = NULL, lease_until = NULL
			WHERE rid = ? AND state = 1 AND owner = ? AND fence = ?`)
		if err != nil {
			return fmt.Errorf("record results: %w", err)
		}
		defer stmt.Close()

		seqs := map[string]int64{}
		rowCtx := unwatched(ctx)
		for _, res := range params.Results {
			seq, ok := seqs[res.BatchID]
			if !ok {
				seq, err = seqOf(ctx, tx, res.BatchID)
				if errors.Is(err, store.ErrNotFound) {
					continue // deleted meanwhile: nothing to record
				}
				if err != nil {
					return err
				}
				seqs[res.BatchID] = seq
			}

			low, _ := ridRange(seq)
			out, err := stmt.ExecContext(rowCtx, string(res.Outcome), []byte(res.Body),
				low+res.Index, params.Owner, res.Fence)
			if err != nil {
				return fmt.Errorf("record result of %s #%d: %w", res.BatchID, res.Index, err)
			}
			n, err := out.RowsAffected()
			if err != nil {
				return err
			}
			recorded += int(n)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return recorded, nil
}

// RequestExtendLeases implements [store.Store].
func (s *Store) RequestExtendLeases(ctx context.Context, params store.RequestExtendLeasesParams) (int, error) {
	out, err := s.write.ExecContext(ctx, `UPDATE requests SET lease_until = ?
		WHERE state = 1 AND state < 2 AND owner = ?`, micros(params.LeaseUntil), params.Owner)
	if err != nil {
		return 0, fmt.Errorf("extend leases: %w", err)
	}
	n, err := out.RowsAffected()
	return int(n), err
}

// RequestEndUnclaimed implements [store.Store].
func (s *Store) RequestEndUnclaimed(ctx context.Context, params store.RequestEndUnclaimedParams) (int, error) {
	changed := 0
	err := s.inWriteTx(ctx, func(tx *sql.Tx) error {
		seq, err := seqOf(ctx, tx, params.BatchID)
		if err != nil {
			return err
		}

		low, high := ridRange(seq)
		for _, state := range []int{statePending, stateClaimed} {
			out, err := tx.ExecContext(ctx, `UPDATE requests
				SET state = 2, outcome = ?, params = NULL, owner = NULL, lease_until = NULL,
					fence = fence + 1
				WHERE state = ? AND state < 2 AND rid BETWEEN ? AND ?
					AND (state = 0 OR lease_until < ?)`,
				string(params.Outcome), state, low, high, micros(params.Now))
			if err != nil {
				return fmt.Errorf("end unclaimed requests of %s: %w", params.BatchID, err)
			}
			n, err := out.RowsAffected()
			if err != nil {
				return err
			}
			changed += int(n)
		}
		return nil
	})
	return changed, err
}

// ResultList implements [store.Store]. It reads in one transaction, so the
// results it returns are one consistent snapshot.
func (s *Store) ResultList(ctx context.Context, params store.ResultListParams,
	fn func(customID string, outcome batch.Outcome, body []byte) error) error {
	tx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("read results: %w", err)
	}
	defer tx.Rollback()

	b, seq, err := getBatch(ctx, tx, params.WorkspaceID, params.BatchID)
	if err != nil {
		return err
	}
	if b.Status != batch.StatusEnded {
		return fmt.Errorf("batch %s is %s; results are available once it has ended: %w",
			b.ID, b.Status, store.ErrWrongState)
	}
	if b.Archived() {
		return fmt.Errorf("the results of batch %s were removed on %s: %w",
			b.ID, b.ArchivedAt.Format("2006-01-02"), store.ErrArchived)
	}

	low, high := ridRange(seq)
	rows, err := tx.QueryContext(ctx, `SELECT custom_id, outcome, result FROM requests
		WHERE rid BETWEEN ? AND ? ORDER BY rid`, low, high)
	if err != nil {
		return fmt.Errorf("read results of %s: %w", b.ID, err)
	}
	defer rows.Close()

	var (
		customID string
		outcome  string
		body     sql.RawBytes
	)
	for rows.Next() {
		if err := rows.Scan(&customID, &outcome, &body); err != nil {
			return fmt.Errorf("read results of %s: %w", b.ID, err)
		}
		if err := fn(customID, batch.Outcome(outcome), body); err != nil {
			return err
		}
	}
	return rows.Err()
}
