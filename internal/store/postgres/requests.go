package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/store"
)

// claimQuery leases up to $3 requests of the batch with id $1. MATERIALIZED
// makes the locking SELECT a separate step that runs once, so its LIMIT bounds
// the rows the UPDATE changes whatever plan the UPDATE gets. SKIP LOCKED lets
// nodes that claim at the same time take disjoint rows without waiting for
// each other.
const claimQuery = `
WITH picked AS MATERIALIZED (
	SELECT batch_seq, request_index FROM requests
	WHERE batch_seq = (SELECT seq FROM batches WHERE id = $1)
		AND state < 2 AND (state = 0 OR lease_until < $2)
	ORDER BY request_index
	LIMIT $3
	FOR UPDATE SKIP LOCKED
)
UPDATE requests r
SET state = 1, owner = $4, lease_until = $5, fence = r.fence + 1
FROM picked
WHERE r.batch_seq = picked.batch_seq AND r.request_index = picked.request_index
RETURNING r.request_index, r.custom_id, r.params, r.fence`

// RequestClaim implements [store.Store].
func (s *Store) RequestClaim(ctx context.Context, params store.RequestClaimParams) ([]batch.Request, error) {
	if params.Limit <= 0 {
		return nil, nil
	}

	rows, err := s.pool.Query(ctx, claimQuery, params.BatchID, params.Now, params.Limit,
		params.Owner, params.LeaseUntil)
	if err != nil {
		return nil, fmt.Errorf("claim requests of %s: %w", params.BatchID, err)
	}
	claimed, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (batch.Request, error) {
		req := batch.Request{BatchID: params.BatchID}
		var body []byte
		err := row.Scan(&req.Index, &req.CustomID, &body, &req.Fence)
		req.Params = body
		return req, err
	})
	if err != nil {
		return nil, fmt.Errorf("claim requests of %s: %w", params.BatchID, err)
	}

	if len(claimed) == 0 {
		var exists bool
		err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM batches WHERE id = $1)`,
			params.BatchID).Scan(&exists)
		if err != nil {
			return nil, fmt.Errorf("claim requests of %s: %w", params.BatchID, err)
		}
		if !exists {
			return nil, store.ErrNotFound
		}
		return nil, nil
	}

	// RETURNING follows no order, but callers expect batch order.
	slices.SortFunc(claimed, func(a, b batch.Request) int {
		return cmp.Compare(a.Index, b.Index)
	})
	return claimed, nil
}

// finishQuery records the results given as parallel arrays. It first locks
// the requests that are still claimed by $6, in key order, so it cannot
// deadlock with another statement that locks requests in key order. If a
// request has several results, the first one in input order whose fence
// matches is recorded, as if the results were applied one by one.
const finishQuery = `
WITH input AS (
	SELECT b.seq, u.request_index, u.fence, u.outcome, u.body, u.ord
	FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::bytea[])
		WITH ORDINALITY AS u(batch_id, request_index, fence, outcome, body, ord)
	JOIN batches b ON b.id = u.batch_id
),
locked AS (
	SELECT r.batch_seq, r.request_index, r.fence FROM requests r
	WHERE (r.batch_seq, r.request_index) IN (SELECT seq, request_index FROM input)
		AND r.state = 1 AND r.owner = $6
	ORDER BY r.batch_seq, r.request_index
	FOR UPDATE
),
chosen AS (
	SELECT DISTINCT ON (i.seq, i.request_index) i.seq, i.request_index, i.outcome, i.body
	FROM input i
	JOIN locked l ON l.batch_seq = i.seq AND l.request_index = i.request_index
		AND l.fence = i.fence
	ORDER BY i.seq, i.request_index, i.ord
)
UPDATE requests r
SET state = 2, outcome = c.outcome, result = c.body,
	params = NULL, owner = NULL, lease_until = NULL
FROM chosen c
WHERE r.batch_seq = c.seq AND r.request_index = c.request_index
	AND r.state = 1 AND r.owner = $6`

// RequestFinish implements [store.Store]. Results of batches that no longer
// exist are dropped like any other result that does not match a claim.
func (s *Store) RequestFinish(ctx context.Context, params store.RequestFinishParams) (int, error) {
	if len(params.Results) == 0 {
		return 0, nil
	}

	n := len(params.Results)
	var (
		batchIDs = make([]string, n)
		indexes  = make([]int64, n)
		fences   = make([]int64, n)
		outcomes = make([]string, n)
		bodies   = make([][]byte, n)
	)
	for i, res := range params.Results {
		batchIDs[i] = res.BatchID
		indexes[i] = res.Index
		fences[i] = res.Fence
		outcomes[i] = string(res.Outcome)
		bodies[i] = res.Body
	}

	tag, err := s.pool.Exec(ctx, finishQuery, batchIDs, indexes, fences, outcomes, bodies,
		params.Owner)
	if err != nil {
		return 0, fmt.Errorf("record %d results: %w", n, err)
	}
	return int(tag.RowsAffected()), nil
}

// endUnclaimedQuery ends the open requests of the batch with seq $1 that no
// live lease holds. The subquery locks them in key order, waiting for
// statements that hold some of them, and the outer conditions are checked
// again on the locked rows.
const endUnclaimedQuery = `
UPDATE requests
SET state = 2, outcome = $2, params = NULL, owner = NULL, lease_until = NULL,
	fence = fence + 1
WHERE batch_seq = $1 AND request_index IN (
		SELECT request_index FROM requests
		WHERE batch_seq = $1 AND state < 2 AND (state = 0 OR lease_until < $3)
		ORDER BY request_index
		FOR UPDATE)
	AND state < 2 AND (state = 0 OR lease_until < $3)`

// RequestExtendLeases implements [store.Store].
func (s *Store) RequestExtendLeases(ctx context.Context,
	params store.RequestExtendLeasesParams) (int, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE requests SET lease_until = $1
		WHERE state = 1 AND owner = $2`, params.LeaseUntil, params.Owner)
	if err != nil {
		return 0, fmt.Errorf("extend leases: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// RequestEndUnclaimed implements [store.Store]. It locks the batch row
// first, so calls for one batch from several nodes run one after the other
// and their counts add up to the number of requests changed.
func (s *Store) RequestEndUnclaimed(ctx context.Context,
	params store.RequestEndUnclaimedParams) (int, error) {
	changed := 0
	err := s.inTx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		var seq int64
		err := tx.QueryRow(ctx, `SELECT seq FROM batches WHERE id = $1 FOR UPDATE`,
			params.BatchID).Scan(&seq)
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("find batch %s: %w", params.BatchID, err)
		}

		tag, err := tx.Exec(ctx, endUnclaimedQuery, seq, string(params.Outcome), params.Now)
		if err != nil {
			return fmt.Errorf("end unclaimed requests of %s: %w", params.BatchID, err)
		}
		changed = int(tag.RowsAffected())
		return nil
	})
	if err != nil {
		return 0, err
	}
	return changed, nil
}

// ResultList implements [store.Store]. It reads in a REPEATABLE READ,
// read-only transaction, so the results it returns are one consistent
// snapshot, and it streams the rows as the server sends them.
func (s *Store) ResultList(ctx context.Context, params store.ResultListParams,
	fn func(customID string, outcome batch.Outcome, body []byte) error) error {
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	return s.inTx(ctx, opts, func(tx pgx.Tx) error {
		b, seq, err := getBatch(ctx, tx, params.WorkspaceID, params.BatchID, false)
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

		rows, err := tx.Query(ctx, `SELECT custom_id, outcome, result FROM requests
			WHERE batch_seq = $1 ORDER BY request_index`, seq)
		if err != nil {
			return fmt.Errorf("read results of %s: %w", b.ID, err)
		}
		defer rows.Close()

		var (
			customID string
			outcome  string
			// body points into the driver's buffer until the next row.
			body pgtype.DriverBytes
		)
		for rows.Next() {
			if err := rows.Scan(&customID, &outcome, &body); err != nil {
				return fmt.Errorf("read results of %s: %w", b.ID, err)
			}
			if err := fn(customID, batch.Outcome(outcome), body); err != nil {
				return err
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read results of %s: %w", b.ID, err)
		}
		return nil
	})
}
