package api_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
)

func TestIdempotentCreateConcurrentRetries(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{noEngine: true})

	const retries = 10
	ids := make([]string, retries)
	var wg sync.WaitGroup
	for i := range retries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := h.do("POST", "/v1/messages/batches", createBody(20),
				map[string]string{"idempotency-key": "retry-me"})
			ids[i] = h.decodeBatch(r).ID
		}()
	}
	wg.Wait()

	for i, id := range ids {
		if id != ids[0] {
			t.Errorf("retry %d returned %s, want %s", i, id, ids[0])
		}
	}
	page := h.do("GET", "/v1/messages/batches", nil, nil)
	if n := strings.Count(string(page.body), `"type":"message_batch"`); n != 1 {
		t.Errorf("list has %d batches after %d retries of one create, want 1", n, retries)
	}

	// Without the header every create makes a batch; another key makes its own.
	a := h.decodeBatch(h.do("POST", "/v1/messages/batches", createBody(1), nil))
	b := h.decodeBatch(h.do("POST", "/v1/messages/batches", createBody(1), nil))
	c := h.decodeBatch(h.do("POST", "/v1/messages/batches", createBody(1),
		map[string]string{"idempotency-key": "other"}))
	if a.ID == b.ID || c.ID == ids[0] {
		t.Errorf("distinct creates shared an id: %s %s %s", a.ID, b.ID, c.ID)
	}

	// The key belongs to a workspace: workspace b gets its own batch.
	other := h.decodeBatch(h.do("POST", "/v1/messages/batches", createBody(1),
		map[string]string{"idempotency-key": "retry-me", "x-api-key": keyB}))
	if other.ID == ids[0] {
		t.Error("workspace b received workspace a's batch")
	}

	long := h.do("POST", "/v1/messages/batches", createBody(1),
		map[string]string{"idempotency-key": strings.Repeat("k", 256)})
	h.checkError(long, http.StatusBadRequest, "invalid_request_error")
}
