// Package sqlite is batchd's embedded store: one SQLite database file in WAL
// mode, written through a single connection and read through a pool.
//
// Because the store is the only writer of its file, it keeps the newest
// batches of each workspace in memory (package listcache) and serves list
// and get calls from there when it can, without a query.
//
// Limitations: one batchd process may use a database file at a time (the
// caller holds a lock on the data directory). Another process writing the
// same file would leave the in-memory copy stale. synchronous=NORMAL means a
// power loss, unlike a crash of the process, can lose the last transactions
// before a WAL checkpoint.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/store"
	"github.com/batchd/batchd/internal/store/listcache"
)

// seqShift places a batch's seq above the request index inside a request's
// rid. 2^20 is more than ten times the maximum batch size.
const seqShift = 20

// insertChunk is how many requests one create transaction writes, so other
// writers can take turns while a large batch arrives.
const insertChunk = 2000

// Store is a [store.Store] on one SQLite file.
type Store struct {
	write *sql.DB // exactly one connection: SQLite allows one writer
	read  *sql.DB // long reads, such as a results download

	// quick serves the short reads of the API, get and list, on connections
	// of their own, so that downloads holding read connections do not hold
	// them up. quickGate admits callers to it in arrival order: database/sql
	// hands a freed connection to a random waiter, which under load gives
	// some calls many times the wait of others.
	quick     *sql.DB
	quickGate chan struct{}

	// quickStmts caches the prepared statements of the short reads, so
	// SQLite does not parse their SQL on every call.
	quickStmtsMu sync.Mutex
	quickStmts   map[string]*sql.Stmt

	// cache is the in-memory copy of the newest batches, nil when turned
	// off. batchMu is held from the start of each transaction that changes
	// batch rows until its changes are in the cache, so that the cache
	// receives them in commit order.
	cache   *listcache.Cache
	batchMu sync.Mutex
}

var _ store.Store = (*Store)(nil)

// Options are the settings of a Store. The zero value gives the defaults.
type Options struct {
	// ListCacheSize is the maximum number of batches the store keeps in
	// memory to serve list and get calls: [listcache.DefaultSize] if zero,
	// none if negative. Lists and gets of batches older than the cached ones
	// read the database.
	ListCacheSize int
}

// Open opens or creates the database at path, brings its schema up to date,
// removes what half-finished creates of an earlier process left behind and
// loads the newest batches into memory.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	write, err := openDB(path, true)
	if err != nil {
		return nil, err
	}
	write.SetMaxOpenConns(1)

	if err := migrate(ctx, write); err != nil {
		write.Close()
		return nil, fmt.Errorf("migrate %s: %w", path, err)
	}

	readers := readPoolSize()
	read, err := openReadDB(path, readers)
	if err != nil {
		write.Close()
		return nil, err
	}
	quick, err := openReadDB(path, readers)
	if err != nil {
		write.Close()
		read.Close()
		return nil, err
	}

	s := &Store{write: write, read: read, quick: quick,
		quickGate: make(chan struct{}, readers), quickStmts: map[string]*sql.Stmt{}}
	if err := s.dropStaging(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.releaseClaims(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if opts.ListCacheSize >= 0 {
		if err := s.loadCache(ctx, listcache.New(opts.ListCacheSize)); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// loadCache fills cache with the newest batches of the database, as many as
// fit, and makes it the store's cache. It loads them oldest first, which
// fills the cache's chunks.
func (s *Store) loadCache(ctx context.Context, cache *listcache.Cache) error {
	var cut string
	err := s.read.QueryRowContext(ctx, `SELECT id FROM batches
		ORDER BY id DESC LIMIT 1 OFFSET ?`, cache.Size()).Scan(&cut)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		cut = ""
	case err != nil:
		return fmt.Errorf("load batches into memory: %w", err)
	default:
		cache.Cut(cut)
	}

	rows, err := s.read.QueryContext(ctx, `SELECT `+batchColumns+` FROM batches
		WHERE id > ? ORDER BY id`, cut)
	if err != nil {
		return fmt.Errorf("load batches into memory: %w", err)
	}
	defer rows.Close()

	var scan batchScan
	for rows.Next() {
		b, _, err := scan.scan(rows)
		if err != nil {
			return fmt.Errorf("load batches into memory: %w", err)
		}
		cache.Put(b)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load batches into memory: %w", err)
	}
	s.cache = cache
	return nil
}

// batchChanges records what a transaction did to batch rows, for the cache.
type batchChanges struct {
	put     []batch.Batch
	deleted []batch.Batch
}

// inBatchTx runs fn in a write transaction, and once it has committed,
// applies the changes fn recorded to the cache.
func (s *Store) inBatchTx(ctx context.Context,
	fn func(tx *sql.Tx, changes *batchChanges) error) error {
	s.batchMu.Lock()
	defer s.batchMu.Unlock()

	var changes batchChanges
	err := s.inWriteTx(ctx, func(tx *sql.Tx) error {
		return fn(tx, &changes)
	})
	if err != nil || s.cache == nil {
		return err
	}

	for _, b := range changes.put {
		s.cache.Put(b)
	}
	for _, b := range changes.deleted {
		s.cache.Delete(b.WorkspaceID, b.ID)
	}
	return nil
}

// releaseClaims returns every claimed request to pending. Only one process
// uses the file, so claims found at open belong to a process that is gone,
// and their requests can run again at once instead of after their lease.
// The fence moves on, so a result of the old claim can never be recorded.
func (s *Store) releaseClaims(ctx context.Context) error {
	_, err := s.write.ExecContext(ctx, `UPDATE requests
		SET state = 0, owner = NULL, lease_until = NULL, fence = fence + 1
		WHERE state = 1 AND state < 2`)
	if err != nil {
		return fmt.Errorf("release claims of an earlier process: %w", err)
	}
	return nil
}

func openDB(path string, immediate bool) (*sql.DB, error) {
	query := url.Values{}
	query.Add("_pragma", "journal_mode(WAL)")
	query.Add("_pragma", "busy_timeout(10000)")
	query.Add("_pragma", "synchronous(NORMAL)")
	if immediate {
		// Write transactions take the lock at BEGIN, so two of them never
		// deadlock upgrading a read lock.
		query.Set("_txlock", "immediate")
	}

	dsn := "file:" + path + "?" + query.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %q: %w", path, err)
	}
	return db, nil
}

// readPoolSize returns the number of connections in each read pool.
func readPoolSize() int {
	return max(4, 2*runtime.GOMAXPROCS(0))
}

// openReadDB opens a pool of n read connections to path.
func openReadDB(path string, n int) (*sql.DB, error) {
	db, err := openDB(path, false)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(n)
	// database/sql keeps only 2 idle connections by default, so under load
	// it would close the others after each query and open them again, with
	// a cold page cache and statements to prepare anew.
	db.SetMaxIdleConns(n)
	return db, nil
}

// Close closes the connection pools.
func (s *Store) Close() error {
	s.quickStmtsMu.Lock()
	for _, stmt := range s.quickStmts {
		stmt.Close()
	}
	s.quickStmtsMu.Unlock()
	return errors.Join(s.quick.Close(), s.read.Close(), s.write.Close())
}

// enterQuick waits for a turn on the quick-read pool, in arrival order, and
// returns the function that ends the turn.
func (s *Store) enterQuick(ctx context.Context) (func(), error) {
	select {
	case s.quickGate <- struct{}{}:
		return func() { <-s.quickGate }, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// quickStmt returns the prepared statement for query on the quick-read
// pool, preparing it on first use.
func (s *Store) quickStmt(ctx context.Context, query string) (*sql.Stmt, error) {
	s.quickStmtsMu.Lock()
	defer s.quickStmtsMu.Unlock()
	if stmt, ok := s.quickStmts[query]; ok {
		return stmt, nil
	}
	stmt, err := s.quick.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	s.quickStmts[query] = stmt
	return stmt, nil
}

// dropStaging deletes batches that an earlier process started to create but
// never finished. Only one process uses the file, so every staged batch found
// at open is dead.
func (s *Store) dropStaging(ctx context.Context) error {
	rows, err := s.write.QueryContext(ctx, `SELECT seq FROM batch_staging`)
	if err != nil {
		return fmt.Errorf("list staged batches: %w", err)
	}
	var seqs []int64
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			rows.Close()
			return err
		}
		seqs = append(seqs, seq)
	}
	rows.Close()

	for _, seq := range seqs {
		if err := s.abortCreate(ctx, seq); err != nil {
			return err
		}
	}
	return nil
}

func ridRange(seq int64) (int64, int64) {
	low := seq << seqShift
	return low, low + 1<<seqShift - 1
}

func micros(t time.Time) int64 {
	return t.UnixMicro()
}

func nullMicros(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

func fromMicros(v int64) time.Time {
	return time.UnixMicro(v).UTC()
}

func fromNullMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMicros(v.Int64)
}

// KeyPut implements [store.Store].
func (s *Store) KeyPut(ctx context.Context, params store.KeyPutParams) error {
	_, err := s.write.ExecContext(ctx, `
		INSERT INTO api_keys (hash, workspace_id, created_at) VALUES (?, ?, ?)
		ON CONFLICT (hash) DO UPDATE SET workspace_id = excluded.workspace_id`,
		params.Hash, params.WorkspaceID, micros(params.CreatedAt))
	if err != nil {
		return fmt.Errorf("put api key: %w", err)
	}
	return nil
}

// KeyGet implements [store.Store].
func (s *Store) KeyGet(ctx context.Context, hash string) (store.Key, error) {
	key := store.Key{Hash: hash}
	var created int64
	err := s.read.QueryRowContext(ctx,
		`SELECT workspace_id, created_at FROM api_keys WHERE hash = ?`, hash).
		Scan(&key.WorkspaceID, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Key{}, store.ErrNotFound
	}
	if err != nil {
		return store.Key{}, fmt.Errorf("get api key: %w", err)
	}
	key.CreatedAt = fromMicros(created)
	return key, nil
}

// KeyCount implements [store.Store].
func (s *Store) KeyCount(ctx context.Context) (int, error) {
	var n int
	err := s.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM api_keys`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count api keys: %w", err)
	}
	return n, nil
}

const batchColumns = `seq, id, workspace_id, status, request_count,
	succeeded, errored, canceled, expired,
	created_at, expires_at, ended_at, cancel_initiated_at, archived_at, betas`

type scanner interface {
	Scan(dest ...any) error
}

func scanBatch(row scanner) (batch.Batch, int64, error) {
	var bs batchScan
	return bs.scan(row)
}

// batchScan contains the scan targets of one batch row. A query that reads
// many rows reuses one, because Scan takes pointers: targets declared per
// row would each be allocated anew, several hundred bytes per row.
type batchScan struct {
	b                      batch.Batch
	seq, created, expires  int64
	ended, cancel, archive sql.NullInt64
	status, betas          string
	dest                   []any
}

// scan reads the batchColumns of row.
func (s *batchScan) scan(row scanner) (batch.Batch, int64, error) {
	if s.dest == nil {
		s.dest = []any{&s.seq, &s.b.ID, &s.b.WorkspaceID, &s.status, &s.b.RequestCount,
			&s.b.Final.Succeeded, &s.b.Final.Errored, &s.b.Final.Canceled, &s.b.Final.Expired,
			&s.created, &s.expires, &s.ended, &s.cancel, &s.archive, &s.betas}
	}
	if err := row.Scan(s.dest...); err != nil {
		return batch.Batch{}, 0, err
	}

	b := s.b
	b.Status = batch.Status(s.status)
	b.CreatedAt = fromMicros(s.created)
	b.ExpiresAt = fromMicros(s.expires)
	b.EndedAt = fromNullMicros(s.ended)
	b.CancelInitiatedAt = fromNullMicros(s.cancel)
	b.ArchivedAt = fromNullMicros(s.archive)
	b.Betas = nil
	if s.betas != "" {
		b.Betas = strings.Split(s.betas, ",")
	}
	return b, s.seq, nil
}

// querier is the QueryRowContext method shared by *sql.DB and *sql.Tx.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

const getBatchQuery = `SELECT ` + batchColumns + ` FROM batches
	WHERE id = ? AND (? = '' OR workspace_id = ?)`

// getBatch reads one batch, scoped to a workspace unless workspaceID is empty.
func getBatch(ctx context.Context, q querier, workspaceID, id string) (batch.Batch, int64, error) {
	return scanBatchRow(q.QueryRowContext(ctx, getBatchQuery, id, workspaceID, workspaceID), id)
}

// scanBatchRow reads the result of getBatchQuery for batch id.
func scanBatchRow(row *sql.Row, id string) (batch.Batch, int64, error) {
	b, seq, err := scanBatch(row)
	if errors.Is(err, sql.ErrNoRows) {
		return batch.Batch{}, 0, store.ErrNotFound
	}
	if err != nil {
		return batch.Batch{}, 0, fmt.Errorf("get batch %s: %w", id, err)
	}
	return b, seq, nil
}

// BatchGet implements [store.Store].
func (s *Store) BatchGet(ctx context.Context, params store.BatchGetParams) (batch.Batch, error) {
	if s.cache != nil {
		b, found, covered := s.cache.Get(params.WorkspaceID, params.ID)
		if covered && found {
			return b, nil
		}
		if covered {
			return batch.Batch{}, store.ErrNotFound
		}
	}

	leave, err := s.enterQuick(ctx)
	if err != nil {
		return batch.Batch{}, fmt.Errorf("get batch %s: %w", params.ID, err)
	}
	defer leave()

	stmt, err := s.quickStmt(ctx, getBatchQuery)
	if err != nil {
		return batch.Batch{}, fmt.Errorf("get batch %s: %w", params.ID, err)
	}
	row := stmt.QueryRowContext(unwatched(ctx), params.ID, params.WorkspaceID,
		params.WorkspaceID)
	b, _, err := scanBatchRow(row, params.ID)
	return b, err
}

// unwatched returns ctx without its cancellation, for statements that take
// microseconds: a page of the list, or one row of a write transaction that
// runs a statement per row. With a context that can end, database/sql and
// the driver each start a goroutine per statement to watch it, which costs
// more than such a statement itself. A write transaction still ends with the
// context it began with: database/sql rolls it back.
func unwatched(ctx context.Context) context.Context {
	return context.WithoutCancel(ctx)
}

// listQueries contains the list query for each combination of cursors,
// indexed by whether after_id and before_id are set.
var listQueries = [2][2]string{
	{listQuery(false, false), listQuery(false, true)},
	{listQuery(true, false), listQuery(true, true)},
}

// listQuery returns the list query with the given cursors. Paging toward
// newer batches reads upward from before_id, so that the page holds the
// batches closest to the cursor.
func listQuery(after, before bool) string {
	where := []string{"workspace_id = ?"}
	if after {
		where = append(where, "id < ?")
	}
	if before {
		where = append(where, "id > ?")
	}
	order := "DESC"
	if before {
		order = "ASC"
	}
	return `SELECT ` + batchColumns + ` FROM batches WHERE ` +
		strings.Join(where, " AND ") + ` ORDER BY id ` + order + ` LIMIT ?`
}

func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}

// BatchList implements [store.Store].
func (s *Store) BatchList(ctx context.Context, params store.BatchListParams) (store.BatchPage, error) {
	if params.Limit < 1 {
		return store.BatchPage{}, fmt.Errorf("list batches: limit %d is below 1", params.Limit)
	}
	if s.cache != nil {
		if page, ok := s.cache.List(params); ok {
			return page, nil
		}
	}

	args := make([]any, 1, 4)
	args[0] = params.WorkspaceID
	if params.AfterID != "" {
		args = append(args, params.AfterID)
	}
	if params.BeforeID != "" {
		args = append(args, params.BeforeID)
	}
	args = append(args, params.Limit+1)
	query := listQueries[boolIndex(params.AfterID != "")][boolIndex(params.BeforeID != "")]
	ascending := params.BeforeID != ""

	leave, err := s.enterQuick(ctx)
	if err != nil {
		return store.BatchPage{}, fmt.Errorf("list batches: %w", err)
	}
	defer leave()

	stmt, err := s.quickStmt(ctx, query)
	if err != nil {
		return store.BatchPage{}, fmt.Errorf("list batches: %w", err)
	}
	rows, err := stmt.QueryContext(unwatched(ctx), args...)
	if err != nil {
		return store.BatchPage{}, fmt.Errorf("list batches: %w", err)
	}
	defer rows.Close()

	page := store.BatchPage{Batches: make([]batch.Batch, 0, params.Limit+1)}
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

	if len(page.Batches) > params.Limit {
		page.HasMore = true
		page.Batches = page.Batches[:params.Limit]
	}
	if ascending {
		slices.Reverse(page.Batches)
	}
	return page, nil
}

// BatchListActive implements [store.Store].
func (s *Store) BatchListActive(ctx context.Context) ([]batch.Batch, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+batchColumns+` FROM batches
		WHERE status <> 'ended' ORDER BY seq`)
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
