package api_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
)

// createMany creates n one-request batches with key, from 8 goroutines, and
// returns their ids.
func (h *harness) createMany(key string, n int) map[string]bool {
	h.t.Helper()
	var (
		mu  sync.Mutex
		ids = map[string]bool{}
		wg  sync.WaitGroup
	)
	next := atomic.Int64{}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				r := h.do("POST", "/v1/messages/batches", createBody(1),
					map[string]string{"x-api-key": key})
				b := h.decodeBatch(r)
				mu.Lock()
				ids[b.ID] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return ids
}

func TestListPagingWhileCreating(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{noEngine: true})
	before := h.createMany(keyA, 1250)
	others := h.createMany(keyB, 1250)

	// Keep creating in both workspaces while the lists run; bounded in count.
	stop := make(chan struct{})
	var creators sync.WaitGroup
	for _, key := range []string{keyA, keyB} {
		creators.Add(1)
		go func() {
			defer creators.Done()
			for range 400 {
				select {
				case <-stop:
					return
				default:
				}
				h.do("POST", "/v1/messages/batches", createBody(1), map[string]string{"x-api-key": key})
			}
		}()
	}

	client := h.client(keyA)
	forward := listAll(t, client, anthropic.MessageBatchListParams{Limit: anthropic.Int(7)})
	backward := listAll(t, client, anthropic.MessageBatchListParams{
		Limit: anthropic.Int(7), BeforeID: anthropic.String("msgbatch_0"),
	})
	close(stop)
	creators.Wait()

	checkListed(t, "forward", forward, before, others)
	checkListed(t, "backward", backward, before, others)

	for i := 1; i < len(forward); i++ {
		if forward[i] >= forward[i-1] {
			t.Fatalf("forward: %s listed after %s, not newest first", forward[i], forward[i-1])
		}
	}
}

// listAll pages through a workspace's batches with the SDK's auto-pager.
func listAll(t *testing.T, client anthropic.Client, params anthropic.MessageBatchListParams) []string {
	t.Helper()
	pager := client.Messages.Batches.ListAutoPaging(context.Background(), params)
	var ids []string
	for pager.Next() {
		ids = append(ids, pager.Current().ID)
		if len(ids) > 10_000 {
			t.Fatal("listing does not stop")
		}
	}
	if err := pager.Err(); err != nil {
		t.Fatalf("list: %v", err)
	}
	return ids
}

// checkListed asserts that listed holds every id of want exactly once and no
// id of the other workspace.
func checkListed(t *testing.T, name string, listed []string, want, others map[string]bool) {
	t.Helper()
	seen := map[string]int{}
	for _, id := range listed {
		seen[id]++
		if others[id] {
			t.Fatalf("%s: listed %s of the other workspace", name, id)
		}
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("%s: %s listed %d times", name, id, n)
		}
	}
	missing := 0
	for id := range want {
		if seen[id] == 0 {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%s: %d of %d batches missing", name, missing, len(want))
	}
	if testing.Verbose() {
		fmt.Printf("%s: listed %d batches, %d created before\n", name, len(listed), len(want))
	}
}
