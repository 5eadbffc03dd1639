package bench_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/cputime"
	"github.com/batchd/batchd/internal/store"
	"github.com/batchd/batchd/internal/store/sqlite"
)

const (
	// listBatches is how many batches the listed workspace contains.
	listBatches = 100_000

	// listInserters is how many goroutines create the stored batches.
	listInserters = 8

	// listClients is how many HTTP clients call the server at once.
	listClients = 32

	// listCallsPerClient is how many calls each client makes per phase.
	listCallsPerClient = 300

	// listLimit is the page size each list call requests.
	listLimit = 20
)

// listFixture is a store containing listBatches batches in benchWorkspace,
// shared by every run of one backend in this process.
type listFixture struct {
	store store.Store
	path  string  // the database file, for SQLite
	ids   idTable // ascending
	err   error
}

// idTable holds batch ids of one length in a single string. A slice of
// 100,000 strings would add 100,000 objects for the garbage collector to
// mark in every cycle, a cost that a server's own heap does not have and that
// would slow every call the benchmark measures.
type idTable struct {
	all   string
	width int
}

// newIDTable packs ids, which must all have the same length.
func newIDTable(ids []string) (idTable, error) {
	if len(ids) == 0 {
		return idTable{}, nil
	}
	width := len(ids[0])
	for _, id := range ids {
		if len(id) != width {
			return idTable{}, fmt.Errorf("batch ids of lengths %d and %d", width, len(id))
		}
	}
	return idTable{all: strings.Join(ids, ""), width: width}, nil
}

func (t idTable) len() int { return len(t.all) / t.width }

func (t idTable) at(i int) string { return t.all[i*t.width : (i+1)*t.width] }

var (
	listFixturesMu sync.Mutex
	listFixtures   = map[string]*listFixture{}
)

// BenchmarkListLatency measures the latency of GET /v1/messages/batches with
// limit 20 over listBatches stored batches in one workspace. The
// sqlite-uncached case reads the sqlite case's file through a second store
// without the list cache, so every list is an SQLite query. listClients
// goroutines each make listCallsPerClient calls: a third without a cursor,
// a third with after_id and a third with before_id, each cursor the id of a
// random stored batch. As the baseline, the same clients first make as many
// GET /healthz calls, which measure the HTTP path alone. The server runs in
// this process on loopback, without the engine, so the clients and the
// server share the same CPUs. The stored batches are created once per
// process and reused by every run.
func BenchmarkListLatency(b *testing.B) {
	for _, bc := range backends {
		b.Run(bc.name, func(b *testing.B) {
			fixture := loadListFixture(b, bc)
			benchListLatency(b, fixture.store, fixture.ids)
		})
		if bc.name != "sqlite" {
			continue
		}
		b.Run("sqlite-uncached", func(b *testing.B) {
			fixture := loadListFixture(b, bc)
			st, err := sqlite.Open(context.Background(), fixture.path,
				sqlite.Options{ListCacheSize: -1})
			if err != nil {
				b.Fatalf("open SQLite store without a list cache: %v", err)
			}
			defer st.Close()
			benchListLatency(b, st, fixture.ids)
		})
	}
}

func benchListLatency(b *testing.B, st store.Store, ids idTable) {
	srv := startServer(st, nil)
	defer srv.close()
	checkListPage(b, srv, ids)

	var health, list []time.Duration
	var healthTime, listTime, healthCPU, listCPU time.Duration
	b.ResetTimer()
	for range b.N {
		if *baselineFlag {
			cpu := cputime.Process()
			latencies, elapsed := runClients(b, srv, func(*rand.Rand) string {
				return srv.url + "/healthz"
			})
			healthCPU += cputime.Process() - cpu
			health = append(health, latencies...)
			healthTime += elapsed
		}
		cpu := cputime.Process()
		latencies, elapsed := runClients(b, srv, func(rng *rand.Rand) string {
			return listURL(srv.url, ids, rng)
		})
		listCPU += cputime.Process() - cpu
		list = append(list, latencies...)
		listTime += elapsed
	}
	b.StopTimer()

	slices.Sort(list)
	b.ReportMetric(millis(percentile(list, 50)), "p50_ms")
	b.ReportMetric(millis(percentile(list, 95)), "p95_ms")
	b.ReportMetric(millis(percentile(list, 99)), "p99_ms")
	b.ReportMetric(float64(len(list))/listTime.Seconds(), "calls/s")
	b.ReportMetric(micros(listCPU)/float64(len(list)), "cpu_us/call")
	if *baselineFlag {
		b.ReportMetric(micros(healthCPU)/float64(len(health)), "healthz_cpu_us/call")
		slices.Sort(health)
		b.ReportMetric(millis(percentile(health, 50)), "healthz_p50_ms")
		b.ReportMetric(millis(percentile(health, 99)), "healthz_p99_ms")
		b.ReportMetric(float64(len(health))/healthTime.Seconds(), "healthz_calls/s")
		b.ReportMetric(float64(percentile(list, 50))/float64(percentile(health, 50)),
			"p50/healthz")
		b.ReportMetric(float64(percentile(list, 99))/float64(percentile(health, 99)),
			"p99/healthz")
	}
}

// listURL returns a list call with a random cursor, or none.
func listURL(base string, ids idTable, rng *rand.Rand) string {
	query := url.Values{"limit": {fmt.Sprint(listLimit)}}
	switch rng.IntN(3) {
	case 1:
		query.Set("after_id", ids.at(rng.IntN(ids.len())))
	case 2:
		query.Set("before_id", ids.at(rng.IntN(ids.len())))
	}
	return base + "/v1/messages/batches?" + query.Encode()
}

// runClients runs listClients goroutines that each GET listCallsPerClient
// URLs made by next. It returns the latency of every call and the time until
// the last client finished.
func runClients(b *testing.B, srv *server,
	next func(*rand.Rand) string) ([]time.Duration, time.Duration) {
	latencies := make([][]time.Duration, listClients)
	errs := make([]error, listClients)

	start := time.Now()
	var wg sync.WaitGroup
	for client := range listClients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(client), uint64(time.Now().UnixNano())))
			own := make([]time.Duration, 0, listCallsPerClient)
			for range listCallsPerClient {
				d, err := timedGet(srv, next(rng))
				if err != nil {
					errs[client] = err
					return
				}
				own = append(own, d)
			}
			latencies[client] = own
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	for _, err := range errs {
		if err != nil {
			b.Fatalf("client: %v", err)
		}
	}
	return slices.Concat(latencies...), elapsed
}

// timedGet sends one GET and reads the whole response. Its latency runs from
// before the request is sent to after the last byte of the body is read.
func timedGet(srv *server, u string) (time.Duration, error) {
	req, err := newAPIRequest(http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}

	start := time.Now()
	resp, err := srv.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	elapsed := time.Since(start)

	if err != nil {
		return 0, fmt.Errorf("read %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	return elapsed, nil
}

// checkListPage checks, before timing, that a list call from the middle of
// the stored batches returns a full page.
func checkListPage(b *testing.B, srv *server, ids idTable) {
	u := srv.url + "/v1/messages/batches?limit=20&after_id=" + ids.at(ids.len()/2)
	req, err := newAPIRequest(http.MethodGet, u, nil)
	if err != nil {
		b.Fatalf("new request: %v", err)
	}
	resp, err := srv.client.Do(req)
	if err != nil {
		b.Fatalf("list: %v", err)
	}
	defer resp.Body.Close()

	var page struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		b.Fatalf("decode list page: %v", err)
	}
	if len(page.Data) != listLimit {
		b.Fatalf("list page has %d batches, want %d", len(page.Data), listLimit)
	}
}

// loadListFixture returns the backend's list fixture, creating it on first
// use in this process.
func loadListFixture(b *testing.B, bc backendCase) *listFixture {
	listFixturesMu.Lock()
	defer listFixturesMu.Unlock()
	if f, ok := listFixtures[bc.name]; ok {
		if f.err != nil {
			b.Fatalf("list fixture: %v", f.err)
		}
		return f
	}

	var (
		st         store.Store
		path       string
		closeStore func()
	)
	if bc.name == "sqlite" {
		st, path, closeStore = openSQLiteFile(b)
	} else {
		st, closeStore = bc.open(b)
	}
	putBenchKey(b, st)
	start := time.Now()
	ids, err := createListBatches(st)
	f := &listFixture{store: st, path: path, ids: ids, err: err}
	listFixtures[bc.name] = f
	atProcessEnd(closeStore)
	if err != nil {
		b.Fatalf("list fixture: %v", err)
	}
	b.Logf("created %d batches on %s in %s", ids.len(), bc.name,
		time.Since(start).Round(time.Millisecond))
	return f
}

// createListBatches creates listBatches batches of one request each in
// benchWorkspace with listInserters goroutines, and returns their ids in
// ascending order.
func createListBatches(st store.Store) (idTable, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ids := make([]string, listBatches)
	errs := make([]error, listInserters)

	var wg sync.WaitGroup
	for worker := range listInserters {
		wg.Go(func() {
			for i := worker; i < listBatches; i += listInserters {
				created, err := st.BatchCreate(ctx, store.BatchCreateParams{
					Requests:    smallRequests(1),
					WorkspaceID: benchWorkspace,
					NewBatch:    newBatchFunc(benchWorkspace),
				})
				if err != nil {
					errs[worker] = fmt.Errorf("create batch %d: %w", i, err)
					cancel()
					return
				}
				ids[i] = created.ID
			}
		})
	}
	wg.Wait()

	for _, err := range errs {
		if err != nil {
			return idTable{}, err
		}
	}
	slices.Sort(ids)
	return newIDTable(ids)
}
