// Package e2e tests batchd's execution path as one piece. The path is a
// SQLite store, the engine, the router built from a YAML config, the retry
// and pacing policy and a concrete HTTP backend. It runs against fake model
// servers on loopback that fail on purpose. The package has no code of its
// own. The tests check that every
// request ends with exactly one result and that the policy's retries, waits
// and pacing show in what the fake server received. The benchmarks measure
// throughput, goodput under a rate limit and batchd's overhead per call.
package e2e
