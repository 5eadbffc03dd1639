// Package bench contains batchd's end-to-end benchmarks. It has no code of its
// own: everything is in its test files, and BENCHMARKS.md at the repository
// root records the figures with the commands that produced them.
//
//   - BenchmarkThroughput: one batch of 100,000 requests on the test model at
//     zero latency, from the HTTP create to processing_status ended, on SQLite
//     and PostgreSQL. Each run also measures two baselines: the bare store work
//     for the same batch, and the test model's Send rate alone.
//   - BenchmarkCreateMemory: the peak resident memory of a `batchd serve`
//     child process while it accepts the man-page batch of about 90 MB.
//   - BenchmarkListLatency: list latency with 32 concurrent clients over
//     100,000 stored batches, against GET /healthz as the baseline, with the
//     clients and the server in the test process. Its sqlite-uncached case
//     reads the same SQLite file without the store's list cache.
//   - BenchmarkListLatencyProcess: the same calls from wrk against a
//     `batchd serve` child process on SQLite, with the server's own CPU per
//     call. It skips when wrk (Debian's package) is not installed.
//
// The benchmarks on PostgreSQL read the database URL from
// BATCHD_TEST_DATABASE_URL and skip without it. Run each benchmark once per
// -count, for example:
//
//	go test ./internal/bench -run '^$' -bench . -benchtime 1x -count 5 -timeout 60m
package bench
