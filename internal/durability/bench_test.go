package durability

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"
)

// Settings shared by the benchmarks: 64 calls of 50 ms in flight give one
// node a ceiling of 1,280 requests a second.
const (
	benchLatency     = 50 * time.Millisecond
	benchConcurrency = 64
)

// BenchmarkScaleOut runs the same batch on one node and on three nodes that
// share a PostgreSQL schema. It reports the throughput of each, from the
// start of the create until a GET returns the batch as ended, and their
// ratio. speedup-server is the ratio of the batches' ended_at minus
// created_at, which leaves out the upload. Each iteration runs one batch on
// each cluster.
func BenchmarkScaleOut(b *testing.B) {
	skipShort(b)
	for _, requests := range []int{6000, 18_000} {
		b.Run(fmt.Sprintf("requests=%d", requests), func(b *testing.B) {
			benchmarkScaleOut(b, requests)
		})
	}
}

func benchmarkScaleOut(b *testing.B, requests int) {
	oneNode := startCluster(b, "one", 1)
	threeNodes := startCluster(b, "three", 3)
	body := createBody("s", requests)

	var oneTimes, threeTimes batchTimes
	b.ResetTimer()
	for range b.N {
		oneTimes.add(runBatch(b, oneNode, body, int64(requests)))
		threeTimes.add(runBatch(b, threeNodes, body, int64(requests)))
	}
	b.StopTimer()

	total := float64(requests * b.N)
	oneRate := total / oneTimes.client.Seconds()
	threeRate := total / threeTimes.client.Seconds()
	b.ReportMetric(oneRate, "req/s-1node")
	b.ReportMetric(threeRate, "req/s-3nodes")
	b.ReportMetric(threeRate/oneRate, "speedup")
	b.ReportMetric(oneTimes.server.Seconds()/threeTimes.server.Seconds(), "speedup-server")
}

// batchTimes is the duration of one or more batches, measured twice.
type batchTimes struct {
	// client runs from the start of the create until a GET returned the
	// batch as ended.
	client time.Duration
	// server runs from the batch's created_at to its ended_at.
	server time.Duration
}

func (t *batchTimes) add(other batchTimes) {
	t.client += other.client
	t.server += other.server
}

// startCluster starts n nodes on a fresh schema.
func startCluster(b *testing.B, name string, n int) []*node {
	b.Helper()
	schema := newSchema(b)
	nodes := make([]*node, n)
	for i := range nodes {
		nodes[i] = startNode(b, nodeConfig{
			name:        fmt.Sprintf("%s-%d", name, i+1),
			databaseURL: schema.url,
			latency:     benchLatency,
			concurrency: benchConcurrency,
		})
	}
	return nodes
}

// runBatch creates a batch on the first node and polls it until it has
// ended.
func runBatch(b *testing.B, nodes []*node, body []byte, requests int64) batchTimes {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	start := time.Now()
	created, err := createBatch(ctx, nodes[0].baseURL, bytes.NewReader(body))
	if err != nil {
		b.Fatalf("create: %v", err)
	}
	ended, err := waitEnded(ctx, nodes[0].baseURL, created.ID)
	if err != nil {
		b.Fatal(err)
	}
	times := batchTimes{client: time.Since(start), server: ended.EndedAt.Sub(ended.CreatedAt)}

	checkCounts(b, ended, requests)
	b.Logf("%d nodes: %d requests in %v (%.0f/s), created_at to ended_at %v",
		len(nodes), requests, times.client.Round(time.Millisecond),
		float64(requests)/times.client.Seconds(), times.server)
	return times
}

// BenchmarkRecovery kills one of two nodes in the middle of a batch and
// measures, from the SIGKILL, when its claimed requests were claimed by the
// other node, for several --lease values. ns/op is the time until all of
// them were claimed again.
func BenchmarkRecovery(b *testing.B) {
	skipShort(b)
	for _, lease := range []time.Duration{time.Second, 2 * time.Second, 5 * time.Second} {
		b.Run("lease="+lease.String(), func(b *testing.B) {
			benchmarkRecovery(b, lease)
		})
	}
}

func benchmarkRecovery(b *testing.B, lease time.Duration) {
	// The kill comes after 500 results, so the surviving node has about 7 s
	// of work left, more than the longest lease measured.
	const requests = 10_000
	body := createBody("v", requests)

	var sum recovery
	b.StopTimer()
	b.ResetTimer()
	for i := range b.N {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		schema := newSchema(b)
		db := openRequestsDB(b, schema)
		config := func(name string) nodeConfig {
			return nodeConfig{
				name:        fmt.Sprintf("%s-%d", name, i),
				databaseURL: schema.url,
				lease:       lease,
				latency:     benchLatency,
				concurrency: benchConcurrency,
			}
		}
		survivor := startNode(b, config("survivor"))
		victim := startNode(b, config("victim"))

		if _, err := createBatch(ctx, survivor.baseURL, bytes.NewReader(body)); err != nil {
			b.Fatalf("create: %v", err)
		}
		if err := db.waitProgress(ctx, victim.name, requests/20); err != nil {
			b.Fatal(err)
		}

		b.StartTimer()
		rec, err := db.killAndMeasure(ctx, victim)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("lease %v: %d claims at SIGKILL, %d finished late; last lease ended after "+
			"%v; first claimed again after %v, all after %v", lease, rec.claimed, rec.late,
			rec.leaseEnd.Round(time.Millisecond), rec.first.Round(time.Millisecond),
			rec.all.Round(time.Millisecond))

		sum.claimed += rec.claimed
		sum.late += rec.late
		sum.leaseEnd += rec.leaseEnd
		sum.first += rec.first
		sum.all += rec.all
		survivor.kill()
		cancel()
	}

	n := float64(b.N)
	b.ReportMetric(float64(sum.claimed)/n, "claims-at-kill")
	b.ReportMetric(float64(sum.late)/n, "finished-late")
	b.ReportMetric(sum.leaseEnd.Seconds()/n, "s-last-lease-end")
	b.ReportMetric(sum.first.Seconds()/n, "s-first-reclaimed")
	b.ReportMetric(sum.all.Seconds()/n, "s-all-reclaimed")
	b.ReportMetric(sum.all.Seconds()/n/lease.Seconds(), "all-reclaimed/lease")
}
