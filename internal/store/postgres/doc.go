// Package postgres is batchd's PostgreSQL store, for several batchd nodes
// that share one database. It uses pgx through a connection pool and keeps
// its tables in the first schema of the connection's search_path.
//
// # Sharing one database
//
// Every node opens the same database. Open applies the embedded migrations
// under an advisory lock, so nodes that start at once do not race. Nodes
// coordinate only through the database:
//
//   - RequestClaim locks the requests it takes with FOR UPDATE SKIP LOCKED,
//     so two nodes never claim the same request, and bumps each request's
//     fencing token. RequestFinish records a result only while the request
//     is still claimed by the same owner under the same token.
//   - BatchCancel, BatchDelete, BatchEnd, RequestEndUnclaimed and
//     BatchArchive lock the batch row first, so one node's call waits for
//     another's and each batch ends, or is archived, exactly once.
//   - RequestFinish and RequestEndUnclaimed lock request rows in key order,
//     so they cannot deadlock with each other.
//   - BatchCreate writes requests in chunks, each chunk in its own
//     transaction, under a seq that no reader looks at until the final
//     transaction inserts the batch row. That transaction takes a
//     transaction-level advisory lock before it calls NewBatch, so batch ids,
//     which sort by time, become visible in the order they were made.
//
// # Abandoned creates
//
// A node that dies in the middle of BatchCreate leaves staged requests
// behind. Other nodes may be writing their own staged batches at the same
// moment, so Open deletes only staged batches that have gone without a write
// for [Config.StagingMaxAge] (one hour by default), and
// [Store.StagingDeleteStale] does the same on demand. A create whose request
// source stalls for longer than that between two chunks loses its staged
// rows and fails.
//
// # Limitations
//
// Batch ids come from each node's clock, so ids follow commit order across
// nodes only as far as the nodes' clocks agree. ResultList reads from one
// REPEATABLE READ snapshot for as long as its callback takes, and a
// long-lived snapshot delays vacuum of the rows changed meanwhile. Times are
// stored as timestamptz, which keeps microseconds and drops nanoseconds.
package postgres
