package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/store"
)

// DefaultStagingMaxAge is how long a staged batch may go without a write
// before Open deletes it as abandoned.
const DefaultStagingMaxAge = time.Hour

// Advisory lock classes, the first key of the two-key advisory lock
// functions. The second key is a hash of the schema name, so deployments in
// different schemas of one database do not wait for each other.
const (
	lockMigrate int32 = 0x62746301 // session lock around migrations
	lockPublish int32 = 0x62746302 // transaction lock around making a batch visible
)

// cleanupTimeout bounds the removal of a failed create's rows, which runs
// even after the caller's context is canceled.
const cleanupTimeout = time.Minute

// Config configures [OpenWithConfig].
type Config struct {
	// DatabaseURL is a connection string in any form pgx accepts: a
	// postgres:// URL or keyword=value pairs, with pgxpool's pool_* settings.
	DatabaseURL string

	// StagingMaxAge is how long a half-written batch may go without a write
	// before Open deletes it as abandoned. Zero means DefaultStagingMaxAge.
	StagingMaxAge time.Duration
}

// Store is a [store.Store] on a PostgreSQL database.
type Store struct {
	pool *pgxpool.Pool
}

var _ store.Store = (*Store)(nil)

// Open connects to the database at databaseURL, brings its schema up to date
// and deletes staged batches abandoned for longer than DefaultStagingMaxAge.
func Open(ctx context.Context, databaseURL string) (*Store, error) {
	return OpenWithConfig(ctx, Config{DatabaseURL: databaseURL})
}

// OpenWithConfig is [Open] with settings.
func OpenWithConfig(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.StagingMaxAge < 0 {
		return nil, fmt.Errorf("postgres: invalid staging max age %v: must not be negative",
			cfg.StagingMaxAge)
	}
	maxAge := cfg.StagingMaxAge
	if maxAge == 0 {
		maxAge = DefaultStagingMaxAge
	}

	poolConfig, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		// pgx redacts passwords from its message only on a best-effort
		// basis, so the message is not passed on.
		return nil, errors.New("postgres: invalid database URL: expected " +
			"postgres://user:password@host:port/database?options or key=value pairs")
	}
	pool, err := pgxpool.NewWithConfig(ctx, poolConfig)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}

	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: migrate: %w", err)
	}

	s := &Store{pool: pool}
	if _, err := s.StagingDeleteStale(ctx, maxAge); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return s, nil
}

// Close closes the connection pool, waiting for connections in use to be
// returned.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// inTx runs fn in a transaction and commits it if fn returns nil. The
// rollback after a failure runs even if ctx is canceled, so the connection
// goes back to the pool clean.
func (s *Store) inTx(ctx context.Context, opts pgx.TxOptions, fn func(tx pgx.Tx) error) error {
	tx, err := s.pool.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer rollback(ctx, tx)

	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func rollback(ctx context.Context, tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = tx.Rollback(ctx) // after a commit this returns pgx.ErrTxClosed
}

func nullTime(t time.Time) pgtype.Timestamptz {
	return pgtype.Timestamptz{Time: t, Valid: !t.IsZero()}
}

func fromNullTime(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}

// KeyPut implements [store.Store].
func (s *Store) KeyPut(ctx context.Context, params store.KeyPutParams) error {
	_, err := s.pool.Exec(ctx, `
		INSERT INTO api_keys (hash, workspace_id, created_at) VALUES ($1, $2, $3)
		ON CONFLICT (hash) DO UPDATE SET workspace_id = excluded.workspace_id`,
		params.Hash, params.WorkspaceID, params.CreatedAt)
	if err != nil {
		return fmt.Errorf("put api key: %w", err)
	}
	return nil
}

// KeyGet implements [store.Store].
func (s *Store) KeyGet(ctx context.Context, hash string) (store.Key, error) {
	key := store.Key{Hash: hash}
	err := s.pool.QueryRow(ctx,
		`SELECT workspace_id, created_at FROM api_keys WHERE hash = $1`, hash).
		Scan(&key.WorkspaceID, &key.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Key{}, store.ErrNotFound
	}
	if err != nil {
		return store.Key{}, fmt.Errorf("get api key: %w", err)
	}
	key.CreatedAt = key.CreatedAt.UTC()
	return key, nil
}

// KeyCount implements [store.Store].
func (s *Store) KeyCount(ctx context.Context) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM api_keys`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count api keys: %w", err)
	}
	return n, nil
}

const batchColumns = `seq, id, workspace_id, status, request_count,
	succeeded, errored, canceled, expired,
	created_at, expires_at, ended_at, cancel_initiated_at, archived_at, betas`

func scanBatch(row pgx.Row) (batch.Batch, int64, error) {
	var bs batchScan
	return bs.scan(row)
}

// batchScan contains the scan targets of one batch row. A query that reads
// many rows reuses one, because Scan takes pointers: targets declared per
// row would each be allocated anew.
type batchScan struct {
	b                      batch.Batch
	seq                    int64
	status                 string
	ended, cancel, archive pgtype.Timestamptz
	dest                   []any
}

// scan reads the batchColumns of row.
func (s *batchScan) scan(row pgx.Row) (batch.Batch, int64, error) {
	if s.dest == nil {
		s.dest = []any{&s.seq, &s.b.ID, &s.b.WorkspaceID, &s.status, &s.b.RequestCount,
			&s.b.Final.Succeeded, &s.b.Final.Errored, &s.b.Final.Canceled, &s.b.Final.Expired,
			&s.b.CreatedAt, &s.b.ExpiresAt, &s.ended, &s.cancel, &s.archive, &s.b.Betas}
	}
	// A fresh slice for each row, so that rows never share the betas' array.
	s.b.Betas = nil
	if err := row.Scan(s.dest...); err != nil {
		return batch.Batch{}, 0, err
	}

	b := s.b
	b.Status = batch.Status(s.status)
	b.CreatedAt = b.CreatedAt.UTC()
	b.ExpiresAt = b.ExpiresAt.UTC()
	b.EndedAt = fromNullTime(s.ended)
	b.CancelInitiatedAt = fromNullTime(s.cancel)
	b.ArchivedAt = fromNullTime(s.archive)
	if len(b.Betas) == 0 {
		b.Betas = nil
	}
	return b, s.seq, nil
}

// querier is the QueryRow method shared by *pgxpool.Pool and pgx.Tx.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// getBatch reads one batch, scoped to a workspace unless workspaceID is
// empty. With forUpdate it also locks the batch row until the transaction
// ends.
func getBatch(ctx context.Context, q querier, workspaceID, id string,
	forUpdate bool) (batch.Batch, int64, error) {
	query := `SELECT ` + batchColumns + ` FROM batches
		WHERE id = $1 AND ($2 = '' OR workspace_id = $2)`
	if forUpdate {
		query += ` FOR UPDATE`
	}

	b, seq, err := scanBatch(q.QueryRow(ctx, query, id, workspaceID))
	if errors.Is(err, pgx.ErrNoRows) {
		return batch.Batch{}, 0, store.ErrNotFound
	}
	if err != nil {
		return batch.Batch{}, 0, fmt.Errorf("get batch %s: %w", id, err)
	}
	return b, seq, nil
}

// BatchGet implements [store.Store].
func (s *Store) BatchGet(ctx context.Context, params store.BatchGetParams) (batch.Batch, error) {
	b, _, err := getBatch(ctx, s.pool, params.WorkspaceID, params.ID, false)
	return b, err
}

// BatchList implements [store.Store].
func (s *Store) BatchList(ctx context.Context, params store.BatchListParams) (store.BatchPage, error) {
	var (
		where = []string{"workspace_id = $1"}
		args  = []any{params.WorkspaceID}
	)
	if params.AfterID != "" {
		args = append(args, params.AfterID)
		where = append(where, fmt.Sprintf("id < $%d", len(args)))
	}
	if params.BeforeID != "" {
		args = append(args, params.BeforeID)
		where = append(where, fmt.Sprintf("id > $%d", len(args)))
	}

	// Paging toward newer batches reads upward from before_id, so that the
	// page contains the batches closest to the cursor.
	ascending := params.BeforeID != ""
	order := "DESC"
	if ascending {
		order = "ASC"
	}
	limit := max(params.Limit, 0)
	args = append(args, limit+1)
	query := fmt.Sprintf(`SELECT %s FROM batches WHERE %s ORDER BY id %s LIMIT $%d`,
		batchColumns, strings.Join(where, " AND "), order, len(args))

	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return store.BatchPage{}, fmt.Errorf("list batches: %w", err)
	}
	defer rows.Close()

	page := store.BatchPage{Batches: make([]batch.Batch, 0, limit+1)}
	var scan batchScan
	for rows.Next() {
		b, _, err := scan.scan(rows)
		if err != nil {
			return store.BatchPage{}, fmt.Errorf("list batches: %w", err)
		}
		page.Batches = append(page.Batches, b)
	}
	if err := rows.Err(); err != nil {
		return store.BatchPage{}, fmt.Errorf("list batches: %w", err)
	}

	if len(page.Batches) > limit {
		page.HasMore = true
		page.Batches = page.Batches[:limit]
	}
	if ascending {
		slices.Reverse(page.Batches)
	}
	return page, nil
}

// BatchListActive implements [store.Store].
func (s *Store) BatchListActive(ctx context.Context) ([]batch.Batch, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+batchColumns+` FROM batches
		WHERE status <> 'ended' ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list active batches: %w", err)
	}
	defer rows.Close()

	var (
		batches []batch.Batch
		scan    batchScan
	)
	for rows.Next() {
		b, _, err := scan.scan(rows)
		if err != nil {
			return nil, fmt.Errorf("list active batches: %w", err)
		}
		batches = append(batches, b)
	}
	return batches, rows.Err()
}
