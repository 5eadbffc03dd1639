package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/store"
)

// benchStore opens a store on a new schema for a benchmark.
func benchStore(b *testing.B) store.Store {
	b.Helper()
	s := openStore(b, newSchemaURL(b))
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkCreate100k measures BatchCreate of one batch of 100,000 small
// requests.
func BenchmarkCreate100k(b *testing.B) {
	const size = 100_000
	s := benchStore(b)
	c := &clock{now: epoch}
	ctx := context.Background()

	for b.Loop() {
		_, err := s.BatchCreate(ctx, store.BatchCreateParams{
			Requests: requestsOf(size), NewBatch: c.newBatch("w"),
		})
		if err != nil {
			b.Fatalf("BatchCreate: %v", err)
		}
	}
	b.ReportMetric(float64(size*b.N)/b.Elapsed().Seconds(), "requests/s")
}

// BenchmarkClaimFinish measures one RequestClaim of 500 requests followed by
// one RequestFinish of their 500 results, against a batch of 100,000.
func BenchmarkClaimFinish(b *testing.B) {
	const (
		size  = 100_000
		chunk = 500
	)
	s := benchStore(b)
	c := &clock{now: epoch}
	ctx := context.Background()
	body := json.RawMessage(fmt.Sprintf(`{"id":"msg_x","type":"message","content":[{"type":"text","text":%q}]}`,
		"a reply of about one hundred characters, which is a short answer for a batch request...."))

	newBatch := func() batch.Batch {
		bt, err := s.BatchCreate(ctx, store.BatchCreateParams{
			Requests: requestsOf(size), NewBatch: c.newBatch("w"),
		})
		if err != nil {
			b.Fatalf("BatchCreate: %v", err)
		}
		return bt
	}
	current := newBatch()

	for b.Loop() {
		reqs, err := s.RequestClaim(ctx, store.RequestClaimParams{
			BatchID: current.ID, Owner: "bench", Limit: chunk,
			Now: epoch, LeaseUntil: epoch.Add(time.Hour),
		})
		if err != nil {
			b.Fatalf("RequestClaim: %v", err)
		}
		if len(reqs) < chunk {
			b.Fatalf("claimed %d requests, want %d", len(reqs), chunk)
		}

		results := make([]batch.Result, len(reqs))
		for i, req := range reqs {
			results[i] = batch.Result{BatchID: req.BatchID, Index: req.Index, Fence: req.Fence,
				Outcome: batch.OutcomeSucceeded, Body: body}
		}
		n, err := s.RequestFinish(ctx, store.RequestFinishParams{Owner: "bench", Results: results})
		if err != nil {
			b.Fatalf("RequestFinish: %v", err)
		}
		if n != len(results) {
			b.Fatalf("recorded %d results, want %d", n, len(results))
		}

		if reqs[len(reqs)-1].Index == size-1 { // batch used up
			b.StopTimer()
			current = newBatch()
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(chunk*b.N)/b.Elapsed().Seconds(), "requests/s")
}
