// Package durability tests batchd as separate processes that are killed
// with SIGKILL. Three nodes on one PostgreSQL schema lose a node in the
// middle of a batch, one SQLite data directory is crashed and restarted
// twenty times, and a results download is cut off by a kill. The package
// has no code of its own, only tests and benchmarks.
//
// TestMain builds cmd/batchd once per run. Each test starts batchd serve on
// 127.0.0.1 with a port the kernel picks, reads the base URL from the line
// it prints, and kills every process it started when it ends. The tests do
// not run in parallel, because they measure timing on a shared machine.
//
// The PostgreSQL tests and benchmarks need BATCHD_TEST_DATABASE_URL and skip
// without it. Each creates a schema of its own and drops it at the end:
//
//	export BATCHD_TEST_DATABASE_URL="$(scripts/start-postgres)"
//	go test ./internal/durability/
//
// -short skips the whole package. BATCHD_DURABILITY_SEED fixes the crash
// loop's random choices; the seed in use is logged.
//
// The benchmarks measure throughput with one and three nodes, and how long
// the survivors take to claim a killed node's requests:
//
//	go test ./internal/durability/ -run '^$' -bench . -benchtime 3x
package durability
