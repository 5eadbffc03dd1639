package bench_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/messages"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	sorted := make([]time.Duration, 100)
	for i := range sorted {
		sorted[i] = time.Duration(i+1) * time.Millisecond
	}

	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{
		{p: 50, want: 50 * time.Millisecond},
		{p: 95, want: 95 * time.Millisecond},
		{p: 99, want: 99 * time.Millisecond},
		{p: 99.5, want: 100 * time.Millisecond},
		{p: 100, want: 100 * time.Millisecond},
		{p: 0.1, want: time.Millisecond},
	} {
		if got := percentile(sorted, tc.p); got != tc.want {
			t.Errorf("percentile(1..100 ms, %v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("percentile of one value = %v, want 7", got)
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile of none = %v, want 0", got)
	}
}

func TestStatusKB(t *testing.T) {
	t.Parallel()
	status := []byte("Name:\tbatchd\nVmPeak:\t  812345 kB\nVmHWM:\t   45678 kB\n" +
		"VmRSS:\t   40000 kB\nThreads:\t9\n")

	got, err := statusKB(status, "VmHWM")
	if err != nil {
		t.Fatalf("statusKB VmHWM: %v", err)
	}
	if got != 45678 {
		t.Errorf("VmHWM = %d kB, want 45678", got)
	}

	if _, err := statusKB(status, "VmSwap"); err == nil {
		t.Error("statusKB of a missing field returned no error")
	}
	if _, err := statusKB(status, "Threads"); err == nil {
		t.Error("statusKB of a field without kB returned no error")
	}
}

func TestCreateBodyIsValidJSON(t *testing.T) {
	t.Parallel()
	var body struct {
		Requests []struct {
			CustomID string          `json:"custom_id"`
			Params   json.RawMessage `json:"params"`
		} `json:"requests"`
	}
	if err := json.Unmarshal(createBody(3), &body); err != nil {
		t.Fatalf("decode createBody(3): %v", err)
	}
	if len(body.Requests) != 3 {
		t.Fatalf("requests = %d, want 3", len(body.Requests))
	}
	if got := body.Requests[2].CustomID; got != "r-2" {
		t.Errorf("custom_id = %q, want r-2", got)
	}
	if err := messages.Validate(body.Requests[2].Params); err != nil {
		t.Errorf("params of request 2 are invalid: %v", err)
	}
}
