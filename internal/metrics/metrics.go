// Package metrics defines batchd's Prometheus metrics. Each batchd process has
// one Metrics, served at GET /metrics.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is the set of batchd's metrics and the registry that serves them.
// A nil *Metrics records nothing, so tests may pass nil.
type Metrics struct {
	registry *prometheus.Registry

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	results      *prometheus.CounterVec
}

// New returns metrics registered in a new registry, with the Go runtime and
// process collectors.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "batchd_http_requests_total",
			Help: "API calls answered, by route pattern and status code.",
		}, []string{"route", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "batchd_http_request_duration_seconds",
			Help:    "Time to answer an API call, by route pattern.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"route"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "batchd_request_results_total",
			Help: "Results this node's engine wrote to the store, by outcome. Results the " +
				"store dropped because another node had taken the request over count too.",
		}, []string{"outcome"}),
	}
	m.registry.MustRegister(m.httpRequests, m.httpDuration, m.results,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Register adds a collector, such as a gauge that reads a backend's state.
func (m *Metrics) Register(c prometheus.Collector) error {
	if m == nil {
		return nil
	}
	return m.registry.Register(c)
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// ObserveHTTP records one API call and the time its response took.
func (m *Metrics) ObserveHTTP(route string, code int, elapsed time.Duration) {
	if m == nil {
		return
	}
	m.httpRequests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.httpDuration.WithLabelValues(route).Observe(elapsed.Seconds())
}

// AddResults records n results with the given outcome.
func (m *Metrics) AddResults(outcome string, n int) {
	if m == nil {
		return
	}
	m.results.WithLabelValues(outcome).Add(float64(n))
}
