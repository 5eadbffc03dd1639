package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"iter"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/api"
	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/backend/testmodel"
	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/clock"
	"github.com/batchd/batchd/internal/engine"
	"github.com/batchd/batchd/internal/store"
)

const (
	// throughputBatchSize is the number of requests in the measured batch.
	throughputBatchSize = 100_000

	// storeChunk is how many requests the store baseline claims and finishes
	// per call, the engine's default claim and flush size.
	storeChunk = 500

	// endPollInterval is how often the client asks whether the batch ended.
	endPollInterval = 20 * time.Millisecond

	// endTimeout bounds the wait for one batch to end.
	endTimeout = 10 * time.Minute
)

// BenchmarkThroughput measures one batch of throughputBatchSize requests on
// the test model at zero latency, from the start of the HTTP create to the
// GET that first reports processing_status ended. The server runs in this
// process on loopback, with engine and API defaults as `batchd serve` uses
// them. With -baseline (the default), each run then measures, untimed, the
// bare store work for the same batch and the test model's Send rate, and
// reports the ratios of the engine's rate to both.
func BenchmarkThroughput(b *testing.B) {
	body := createBody(throughputBatchSize)
	for _, bc := range backends {
		b.Run(bc.name, func(b *testing.B) {
			benchThroughput(b, bc, body)
		})
	}
}

func benchThroughput(b *testing.B, bc backendCase, body []byte) {
	var engineTime, createTime, storeTime, modelTime time.Duration

	b.StopTimer()
	for range b.N {
		engineRun, createRun := runEngine(b, bc, body)
		engineTime += engineRun
		createTime += createRun

		if *baselineFlag {
			storeTime += runStoreOnly(b, bc)
			modelTime += runModelOnly(b)
		}
	}

	requests := float64(throughputBatchSize * b.N)
	engineRate := requests / engineTime.Seconds()
	b.ReportMetric(engineRate, "req/s")
	b.ReportMetric(createTime.Seconds()/float64(b.N), "create_s")
	if *baselineFlag {
		storeRate := requests / storeTime.Seconds()
		modelRate := requests / modelTime.Seconds()
		b.ReportMetric(storeRate, "store_req/s")
		b.ReportMetric(modelRate, "model_req/s")
		b.ReportMetric(engineRate/storeRate, "engine/store")
		b.ReportMetric(engineRate/modelRate, "engine/model")
	}
}

// runEngine creates the batch over HTTP on a new store and waits until it
// has ended. It returns the time from the start of the create to the end,
// and the time the create alone took. Only that span runs the benchmark
// timer.
func runEngine(b *testing.B, bc backendCase, body []byte) (time.Duration, time.Duration) {
	st, closeStore := bc.open(b)
	defer closeStore()
	putBenchKey(b, st)

	eng := engine.New(engine.Config{Retention: engine.RetentionDefault}, st,
		testmodel.New(testmodel.Config{}), clock.System{}, discardLogger())
	srv := startServer(st, eng)
	defer srv.close()

	req, err := newAPIRequest(http.MethodPost, srv.url+"/v1/messages/batches",
		bytes.NewReader(body))
	if err != nil {
		b.Fatalf("new request: %v", err)
	}

	b.StartTimer()
	start := time.Now()
	created, err := doBatch(srv.client, req)
	if err != nil {
		b.Fatalf("create: %v", err)
	}
	createTime := time.Since(start)
	ended, err := waitEnded(srv.client, srv.url, created.ID, endPollInterval, endTimeout)
	if err != nil {
		b.Fatalf("wait for the batch to end: %v", err)
	}
	total := time.Since(start)
	b.StopTimer()

	if got := ended.RequestCounts.Succeeded; got != throughputBatchSize {
		b.Fatalf("succeeded = %d, want %d; counts %+v", got, throughputBatchSize,
			ended.RequestCounts)
	}
	return total, createTime
}

// runStoreOnly does the store work of the same batch on a new store, with
// no HTTP, engine or model: BatchCreate, RequestClaim and RequestFinish in
// chunks of storeChunk, and BatchEnd. Every result has the body the test
// model returns for the first request. It returns the time taken.
func runStoreOnly(b *testing.B, bc backendCase) time.Duration {
	ctx := context.Background()
	st, closeStore := bc.open(b)
	defer closeStore()
	resultBody := sampleMessage(b)

	start := time.Now()
	created, err := st.BatchCreate(ctx, store.BatchCreateParams{
		Requests:    smallRequests(throughputBatchSize),
		WorkspaceID: benchWorkspace,
		NewBatch:    newBatchFunc(benchWorkspace),
	})
	if err != nil {
		b.Fatalf("BatchCreate: %v", err)
	}

	finished := 0
	for {
		now := time.Now()
		reqs, err := st.RequestClaim(ctx, store.RequestClaimParams{
			BatchID: created.ID, Owner: "bench", Limit: storeChunk,
			Now: now, LeaseUntil: now.Add(engine.LeaseDefault),
		})
		if err != nil {
			b.Fatalf("RequestClaim: %v", err)
		}
		if len(reqs) == 0 {
			break
		}

		results := make([]batch.Result, len(reqs))
		for i, req := range reqs {
			results[i] = batch.Result{BatchID: req.BatchID, Index: req.Index, Fence: req.Fence,
				Outcome: batch.OutcomeSucceeded, Body: resultBody}
		}
		n, err := st.RequestFinish(ctx, store.RequestFinishParams{Owner: "bench", Results: results})
		if err != nil {
			b.Fatalf("RequestFinish: %v", err)
		}
		finished += n
	}

	ended, err := st.BatchEnd(ctx, store.BatchEndParams{ID: created.ID, Now: time.Now()})
	if err != nil {
		b.Fatalf("BatchEnd: %v", err)
	}
	elapsed := time.Since(start)

	if finished != throughputBatchSize || !ended {
		b.Fatalf("recorded %d results and ended = %t, want %d and true", finished, ended,
			throughputBatchSize)
	}
	return elapsed
}

// runModelOnly sends the batch's requests straight to a new test model with
// one worker per CPU, and returns the time taken.
func runModelOnly(b *testing.B) time.Duration {
	ctx := context.Background()
	model := testmodel.New(testmodel.Config{})
	var next atomic.Int64
	var failed atomic.Pointer[error]

	start := time.Now()
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= throughputBatchSize {
					return
				}
				_, err := model.Send(ctx, backend.Request{
					BatchID: "msgbatch_bench", CustomID: smallCustomID(i),
					Params: smallParams(i), Model: "claude-test",
				})
				if err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	if err := failed.Load(); err != nil {
		b.Fatalf("Send: %v", *err)
	}
	return elapsed
}

// sampleMessage returns the test model's response to the first request.
func sampleMessage(b *testing.B) json.RawMessage {
	resp, err := testmodel.New(testmodel.Config{}).Send(context.Background(), backend.Request{
		BatchID: "msgbatch_bench", CustomID: smallCustomID(0), Params: smallParams(0),
		Model: "claude-test",
	})
	if err != nil {
		b.Fatalf("Send: %v", err)
	}
	return resp.Message
}

// smallRequests yields n requests made by smallParams.
func smallRequests(n int) iter.Seq2[batch.NewRequest, error] {
	return func(yield func(batch.NewRequest, error) bool) {
		for i := range n {
			req := batch.NewRequest{CustomID: smallCustomID(i), Params: smallParams(i)}
			if !yield(req, nil) {
				return
			}
		}
	}
}

// newBatchFunc returns a BatchCreateParams.NewBatch for workspace, with the
// API's default expiry.
func newBatchFunc(workspace string) func(int64) batch.Batch {
	return func(count int64) batch.Batch {
		now := time.Now()
		return batch.Batch{
			ID:           batch.NewBatchID(now),
			WorkspaceID:  workspace,
			Status:       batch.StatusInProgress,
			RequestCount: count,
			CreatedAt:    now,
			ExpiresAt:    now.Add(api.ExpiryDefault),
		}
	}
}
