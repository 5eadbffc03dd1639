package cli

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/batchd/batchd/internal/backend/router"
)

// backendCollector exports each backend's scheduling state, read from the
// router at every scrape.
type backendCollector struct {
	router *router.Router

	limit, inFlight, waiting            *prometheus.Desc
	attempts, retries, overloads, paced *prometheus.Desc
	exhausted                           *prometheus.Desc
}

func newBackendCollector(r *router.Router) *backendCollector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("batchd_backend_"+name, help, []string{"backend", "type"}, nil)
	}
	return &backendCollector{
		router:    r,
		limit:     desc("concurrency_limit", "Calls the backend may have in flight now (adaptive)."),
		inFlight:  desc("in_flight", "Calls in flight to the backend."),
		waiting:   desc("waiting", "Requests waiting for a free call slot or a pacing hold."),
		attempts:  desc("attempts_total", "Calls sent to the backend, retries included."),
		retries:   desc("retries_total", "Calls that were retries of a failed call."),
		overloads: desc("overloads_total", "Calls answered with 429 or 529."),
		paced:     desc("paced_waits_total", "Sends held back by rate-limit headers."),
		exhausted: desc("exhausted_total", "Requests that failed after their last allowed attempt."),
	}
}

// Describe implements prometheus.Collector.
func (c *backendCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.limit, c.inFlight, c.waiting, c.attempts,
		c.retries, c.overloads, c.paced, c.exhausted} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *backendCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.router.Stats() {
		gauge := func(d *prometheus.Desc, v int) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), s.Name, s.Type)
		}
		counter := func(d *prometheus.Desc, v uint64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), s.Name, s.Type)
		}
		gauge(c.limit, s.Limit)
		gauge(c.inFlight, s.InFlight)
		gauge(c.waiting, s.Waiting)
		counter(c.attempts, s.Attempts)
		counter(c.retries, s.Retries)
		counter(c.overloads, s.Overloads)
		counter(c.paced, s.PacedWaits)
		counter(c.exhausted, s.Exhausted)
	}
}
