package api_test

import (
	"strings"
	"testing"

	"github.com/batchd/batchd/internal/api"
	"github.com/batchd/batchd/internal/metrics"
)

func TestMetricsCountByRoute(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{noEngine: true, api: api.Config{Metrics: metrics.New()}})

	h.decodeBatch(h.do("POST", "/v1/messages/batches", createBody(1), nil))
	h.do("GET", "/v1/messages/batches/msgbatch_missing", nil, nil)
	h.do("GET", "/nowhere", nil, nil)

	page := h.do("GET", "/metrics", nil, nil)
	text := string(page.body)
	for _, want := range []string{
		`batchd_http_requests_total{code="200",route="POST /v1/messages/batches"} 1`,
		`batchd_http_requests_total{code="404",route="GET /v1/messages/batches/{id}"} 1`,
		`batchd_http_requests_total{code="404",route="/"} 1`,
		`batchd_http_request_duration_seconds_count{route="POST /v1/messages/batches"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
