package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/store"
	"github.com/batchd/batchd/internal/store/postgres"
)

// expectEmpty fails the test unless the schema has no batches, staged
// batches or requests.
func expectEmpty(t *testing.T, schemaURL string) {
	t.Helper()
	for _, table := range []string{"batches", "batch_staging", "requests"} {
		if n := countRows(t, schemaURL, table); n != 0 {
			t.Errorf("%s has %d rows, want 0", table, n)
		}
	}
}

func TestCreateFailureAfterChunks(t *testing.T) {
	t.Parallel()
	stores, schemaURL := nodes(t, 1)
	failure := errors.New("request 12000 is invalid")
	requests := func(yield func(batch.NewRequest, error) bool) {
		for req := range requestsOf(12000) { // more than two chunks
			if !yield(req, nil) {
				return
			}
		}
		yield(batch.NewRequest{}, failure)
	}

	_, err := stores[0].BatchCreate(context.Background(), store.BatchCreateParams{
		Requests: requests, NewBatch: (&clock{now: epoch}).newBatch("w"),
	})
	if !errors.Is(err, failure) {
		t.Fatalf("BatchCreate error = %v, want %v", err, failure)
	}
	expectEmpty(t, schemaURL)
}

func TestCreateCanceledLeavesNothing(t *testing.T) {
	t.Parallel()
	stores, schemaURL := nodes(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	requests := func(yield func(batch.NewRequest, error) bool) {
		i := 0
		for req := range requestsOf(12000) {
			if i == 7000 { // after the first chunk was written
				cancel()
			}
			i++
			if !yield(req, nil) {
				return
			}
		}
	}

	_, err := stores[0].BatchCreate(ctx, store.BatchCreateParams{
		Requests: requests, NewBatch: (&clock{now: epoch}).newBatch("w"),
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("BatchCreate error = %v, want context.Canceled", err)
	}
	expectEmpty(t, schemaURL)
}

func TestCreateKeepsParamsBytes(t *testing.T) {
	t.Parallel()
	stores, _ := nodes(t, 1)
	params := []string{
		"{\"z\": 1,  \"a\":\"\\u00e9\u00e9\" ,\"m\":[ ] }\n",
		`{"b":2,"a":1}`,
		`{"long":"` + strings.Repeat("x", 9<<20) + `"}`, // over one chunk's byte budget
		`{"after":"long"}`,
	}
	requests := func(yield func(batch.NewRequest, error) bool) {
		for i, p := range params {
			req := batch.NewRequest{CustomID: string(rune('a' + i)), Params: json.RawMessage(p)}
			if !yield(req, nil) {
				return
			}
		}
	}

	b, err := stores[0].BatchCreate(context.Background(), store.BatchCreateParams{
		Requests: requests, NewBatch: (&clock{now: epoch}).newBatch("w"),
	})
	if err != nil {
		t.Fatalf("BatchCreate: %v", err)
	}
	reqs := claim(t, stores[0], b.ID, "o", 10, epoch)
	if len(reqs) != len(params) {
		t.Fatalf("claimed %d requests, want %d", len(reqs), len(params))
	}
	for i, req := range reqs {
		if req.Index != int64(i) {
			t.Errorf("request %d has index %d", i, req.Index)
		}
		if string(req.Params) != params[i] {
			t.Errorf("request %d params = %.60q, want %.60q", i, req.Params, params[i])
		}
	}
}

// stalledCreate starts a create on s that writes one chunk of requests and
// then waits until resume is closed before yielding the rest. It returns a
// channel that is closed once the first chunk has been read, and one that
// receives the create's result.
func stalledCreate(t *testing.T, s store.Store, resume <-chan struct{}) (
	<-chan struct{}, <-chan error) {
	t.Helper()
	stalled := make(chan struct{})
	result := make(chan error, 1)
	requests := func(yield func(batch.NewRequest, error) bool) {
		i := 0
		for req := range requestsOf(7000) {
			if i == 6000 {
				close(stalled)
				select {
				case <-resume:
				case <-time.After(time.Minute):
					yield(batch.NewRequest{}, errors.New("test did not resume the create"))
					return
				}
			}
			i++
			if !yield(req, nil) {
				return
			}
		}
	}
	go func() {
		_, err := s.BatchCreate(context.Background(), store.BatchCreateParams{
			Requests: requests, NewBatch: (&clock{now: epoch}).newBatch("w"),
		})
		result <- err
	}()
	return stalled, result
}

func TestOpenKeepsRunningCreates(t *testing.T) {
	t.Parallel()
	stores, schemaURL := nodes(t, 1)
	resume := make(chan struct{})
	stalled, result := stalledCreate(t, stores[0], resume)
	<-stalled

	// Another node starts with the default max age while the create runs.
	openStore(t, schemaURL).Close()
	n, err := stores[0].StagingDeleteStale(context.Background(), time.Hour)
	if err != nil {
		t.Fatalf("StagingDeleteStale: %v", err)
	}
	if n != 0 {
		t.Errorf("StagingDeleteStale(1h) deleted %d staged batches, want 0", n)
	}

	close(resume)
	if err := <-result; err != nil {
		t.Fatalf("BatchCreate: %v", err)
	}
	if n := countRows(t, schemaURL, "requests"); n != 7000 {
		t.Errorf("requests has %d rows, want 7000", n)
	}
}

func TestOpenDeletesStaleStaging(t *testing.T) {
	t.Parallel()
	stores, schemaURL := nodes(t, 1)
	resume := make(chan struct{})
	stalled, result := stalledCreate(t, stores[0], resume)
	<-stalled
	time.Sleep(20 * time.Millisecond)

	s, err := postgres.OpenWithConfig(context.Background(), postgres.Config{
		DatabaseURL: schemaURL, StagingMaxAge: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("OpenWithConfig: %v", err)
	}
	s.Close()
	if n := countRows(t, schemaURL, "batch_staging"); n != 0 {
		t.Errorf("batch_staging has %d rows after Open, want 0", n)
	}

	close(resume)
	if err := <-result; err == nil || !strings.Contains(err.Error(), "abandoned") {
		t.Fatalf("BatchCreate error = %v, want one saying the staged batch was abandoned", err)
	}
	expectEmpty(t, schemaURL)
}

func TestOpenRejectsNegativeMaxAge(t *testing.T) {
	t.Parallel()
	_, err := postgres.OpenWithConfig(context.Background(), postgres.Config{
		DatabaseURL: "postgres://127.0.0.1:1/none", StagingMaxAge: -time.Second,
	})
	if err == nil {
		t.Fatal("OpenWithConfig with a negative max age succeeded, want an error")
	}
}

func TestOpenHidesPasswordOnBadURL(t *testing.T) {
	t.Parallel()
	_, err := postgres.Open(context.Background(), "postgres://u:secret-pw@127.0.0.1:notaport/db")
	if err == nil {
		t.Fatal("Open with an invalid URL succeeded, want an error")
	}
	if strings.Contains(err.Error(), "secret-pw") {
		t.Errorf("error %q contains the password", err)
	}
}
