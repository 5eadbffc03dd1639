package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/api"
	"github.com/batchd/batchd/internal/backend/testmodel"
	"github.com/batchd/batchd/internal/clock"
	"github.com/batchd/batchd/internal/engine"
)

func slowModel() testmodel.Config {
	return testmodel.Config{Latency: 200 * time.Millisecond}
}

// resultTypes downloads a batch's results and counts lines by result type.
func (h *harness) resultTypes(id string) map[string]int {
	h.t.Helper()
	r := h.do("GET", "/v1/messages/batches/"+id+"/results", nil, nil)
	if r.status != http.StatusOK {
		h.t.Fatalf("results status %d: %s", r.status, r.body)
	}
	types := map[string]int{}
	scanner := bufio.NewScanner(bytes.NewReader(r.body))
	scanner.Buffer(nil, 1<<30)
	for scanner.Scan() {
		if err := h.spec.ResultLine(scanner.Bytes()); err != nil {
			h.t.Errorf("result line does not match the schema: %v\n%s", err, scanner.Bytes())
		}
		var line struct {
			Result struct {
				Type string `json:"type"`
			} `json:"result"`
		}
		if err := json.Unmarshal(scanner.Bytes(), &line); err != nil {
			h.t.Fatalf("decode result line: %v", err)
		}
		types[line.Result.Type]++
	}
	return types
}

func TestCancelWhileRunning(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{
		model:  slowModel(),
		engine: engine.Config{Concurrency: 4},
	})

	created := h.decodeBatch(h.do("POST", "/v1/messages/batches", createBody(40), nil))
	// Let the first requests start: with 4 workers and 200 ms per call, the
	// batch needs 2 s, so most requests are still waiting.
	time.Sleep(100 * time.Millisecond)

	canceled := h.decodeBatch(h.do("POST", "/v1/messages/batches/"+created.ID+"/cancel", nil, nil))
	if canceled.ProcessingStatus != "canceling" {
		t.Errorf("status after cancel = %s, want canceling", canceled.ProcessingStatus)
	}
	if canceled.RequestCounts.Processing != 40 {
		t.Errorf("processing after cancel = %d, want 40", canceled.RequestCounts.Processing)
	}

	again := h.decodeBatch(h.do("POST", "/v1/messages/batches/"+created.ID+"/cancel", nil, nil))
	if again.ProcessingStatus == "in_progress" {
		t.Errorf("second cancel: status in_progress")
	}

	ended := h.waitEnded(keyA, created.ID, 20*time.Second)
	counts := ended.RequestCounts
	if counts.Canceled == 0 {
		t.Errorf("no request was canceled: %+v", counts)
	}
	if counts.Succeeded == 0 {
		t.Errorf("no running request finished: %+v", counts)
	}
	if counts.Succeeded+counts.Canceled != 40 || counts.Processing != 0 {
		t.Errorf("counts %+v do not add up to 40", counts)
	}

	types := h.resultTypes(created.ID)
	if types["succeeded"] != int(counts.Succeeded) || types["canceled"] != int(counts.Canceled) {
		t.Errorf("result lines %v disagree with counts %+v", types, counts)
	}

	after := h.do("POST", "/v1/messages/batches/"+created.ID+"/cancel", nil, nil)
	h.checkError(after, http.StatusBadRequest, "invalid_request_error")
}

func TestResultsAndDeleteBeforeEnd(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{noEngine: true})
	created := h.decodeBatch(h.do("POST", "/v1/messages/batches", createBody(2), nil))

	r := h.do("GET", "/v1/messages/batches/"+created.ID+"/results", nil, nil)
	h.checkError(r, http.StatusBadRequest, "invalid_request_error")

	r = h.do("DELETE", "/v1/messages/batches/"+created.ID, nil, nil)
	h.checkError(r, http.StatusBadRequest, "invalid_request_error")

	if created.ResultsURL != nil {
		t.Errorf("results_url = %q before the end, want null", *created.ResultsURL)
	}
}

func TestExpiryWithFakeClock(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC))
	h := newHarness(t, harnessOptions{clock: clk, noEngine: true,
		api:    api.Config{Expiry: 2 * time.Hour},
		engine: engine.Config{ClaimSize: 2, Concurrency: 1}})
	ctx := context.Background()

	created := h.decodeBatch(h.do("POST", "/v1/messages/batches", createBody(5), nil))

	clk.Advance(2*time.Hour - time.Second)
	if err := h.engine.RunOnce(ctx); err != nil { // claims and runs two requests
		t.Fatalf("engine round: %v", err)
	}

	clk.Advance(time.Second) // now at expires_at
	if err := h.engine.RunOnce(ctx); err != nil {
		t.Fatalf("engine round: %v", err)
	}

	ended := h.decodeBatch(h.do("GET", "/v1/messages/batches/"+created.ID, nil, nil))
	if ended.ProcessingStatus != "ended" {
		t.Fatalf("status at expires_at = %s, want ended", ended.ProcessingStatus)
	}
	if ended.RequestCounts.Expired != 3 || ended.RequestCounts.Succeeded != 2 {
		t.Errorf("counts = %+v, want 2 succeeded and 3 expired", ended.RequestCounts)
	}
	if types := h.resultTypes(created.ID); types["expired"] != 3 {
		t.Errorf("result lines = %v, want 3 expired", types)
	}
}

func TestRetentionArchivesResults(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC))
	h := newHarness(t, harnessOptions{clock: clk, noEngine: true,
		engine: engine.Config{Retention: 29 * 24 * time.Hour}})
	ctx := context.Background()

	created := h.decodeBatch(h.do("POST", "/v1/messages/batches", createBody(3), nil))
	if err := h.engine.RunOnce(ctx); err != nil {
		t.Fatalf("engine round: %v", err)
	}
	if err := h.engine.RunOnce(ctx); err != nil { // ends the batch
		t.Fatalf("engine round: %v", err)
	}
	ended := h.decodeBatch(h.do("GET", "/v1/messages/batches/"+created.ID, nil, nil))
	if ended.ProcessingStatus != "ended" || ended.ResultsURL == nil {
		t.Fatalf("batch did not end: %+v", ended)
	}

	clk.Advance(29*24*time.Hour - time.Minute)
	if err := h.engine.Maintain(ctx); err != nil {
		t.Fatalf("maintain: %v", err)
	}
	if kept := h.decodeBatch(h.do("GET", "/v1/messages/batches/"+created.ID, nil, nil)); kept.ArchivedAt != nil {
		t.Fatalf("archived a minute early: %+v", kept)
	}

	clk.Advance(2 * time.Minute)
	if err := h.engine.Maintain(ctx); err != nil {
		t.Fatalf("maintain: %v", err)
	}
	archived := h.decodeBatch(h.do("GET", "/v1/messages/batches/"+created.ID, nil, nil))
	if archived.ArchivedAt == nil {
		t.Fatalf("archived_at is null after 29 days: %+v", archived)
	}
	if archived.ResultsURL != nil {
		t.Errorf("results_url = %q after archival, want null", *archived.ResultsURL)
	}
	if archived.RequestCounts.Succeeded != 3 {
		t.Errorf("counts after archival = %+v, want 3 succeeded", archived.RequestCounts)
	}
	r := h.do("GET", "/v1/messages/batches/"+created.ID+"/results", nil, nil)
	message := h.checkError(r, http.StatusNotFound, "not_found_error")
	if !strings.Contains(message, "retention") {
		t.Errorf("message %q does not say the results were removed by retention", message)
	}
}
