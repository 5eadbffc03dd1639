package upstream

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestHTTPClientReusesConnections sends two rounds of 300 calls at once
// through one client, more than any small idle cap would keep, and checks
// that the second round reuses the connections of the first.
func TestHTTPClientReusesConnections(t *testing.T) {
	t.Parallel()
	const inFlight = 300

	var opened atomic.Int64
	server := httptest.NewUnstartedServer(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(20 * time.Millisecond) // keeps the calls of a round overlapping
			_, _ = w.Write([]byte(`{}`))
		}))
	server.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			opened.Add(1)
		}
	}
	server.Start()
	defer server.Close()

	client := NewHTTPClient()
	defer client.CloseIdleConnections()
	for round := range 2 {
		var wg sync.WaitGroup
		for range inFlight {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				reply, err := PostJSON(ctx, client, server.URL, nil, []byte(`{}`))
				if err != nil || !reply.OK() {
					t.Errorf("round %d: status %d, error %v", round, reply.StatusCode, err)
				}
			})
		}
		wg.Wait()
	}

	if n := opened.Load(); n > inFlight+inFlight/10 {
		t.Errorf("%d connections opened for two rounds of %d calls, want about %d",
			n, inFlight, inFlight)
	}
}
