package durability

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// seedEnv names the variable that fixes the crash loop's random choices.
const seedEnv = "BATCHD_DURABILITY_SEED"

// createMode is how a crash loop round sends its create.
type createMode int

const (
	// modeWhole sends the whole body at once.
	modeWhole createMode = iota
	// modeCut sends half the body, then stops until the kill, so the create
	// can never complete.
	modeCut
	// modeSent streams the whole body and kills the server 0 to 10 ms after
	// the last byte was written, often while it still stores the requests.
	modeSent
)

// submission is the create sent in one round of the crash loop.
type submission struct {
	round  int
	prefix string
	n      int
	mode   createMode
	// delay is the time from the start of the create, or for modeCut and
	// modeSent from the moment their body was written, until the kill.
	delay time.Duration

	// id is set when the create returned 200, and err when it did not.
	id  string
	err error
}

func testSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if value := os.Getenv(seedEnv); value != "" {
		parsed, err := strconv.ParseUint(value, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: want an unsigned integer", seedEnv, value)
		}
		seed = parsed
	}
	t.Logf("seed %d (set %s to repeat the random choices)", seed, seedEnv)
	return seed
}

func TestSQLiteCrashLoop(t *testing.T) {
	skipShort(t)
	const (
		rounds      = 20
		minRequests = 300
		maxRequests = 3000
		// 8 calls of 5 ms in flight run about 1,600 requests a second, so
		// most kills land while batches still have work.
		latency     = 5 * time.Millisecond
		concurrency = 8
	)
	rng := rand.New(rand.NewPCG(testSeed(t), 0))
	dataDir := t.TempDir()
	config := func(name string) nodeConfig {
		return nodeConfig{name: name, dataDir: dataDir, latency: latency, concurrency: concurrency}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var (
		subs   []*submission
		listed = map[string]bool{} // every batch id that a list returned
		// busyRestarts counts restarts that found batches in progress.
		busyRestarts int
	)
	for round := range rounds {
		if ctx.Err() != nil {
			t.Fatalf("the crash loop ran out of time after %d of %d rounds", round, rounds)
		}
		n := startNode(t, config(fmt.Sprintf("round-%02d", round)))

		batches, err := listBatches(ctx, n.baseURL)
		if err != nil {
			t.Fatalf("round %d: list batches after restart: %v", round, err)
		}
		busy := false
		for _, b := range batches {
			listed[b.ID] = true
			busy = busy || b.ProcessingStatus != "ended"
		}
		if busy {
			busyRestarts++
		}

		sub := &submission{
			round:  round,
			prefix: fmt.Sprintf("round%02d", round),
			n:      minRequests + rng.IntN(maxRequests-minRequests+1),
			mode:   []createMode{modeWhole, modeWhole, modeCut, modeSent}[rng.IntN(4)],
			delay:  time.Duration(rng.Int64N(int64(300 * time.Millisecond))),
		}
		if sub.mode == modeSent {
			sub.delay /= 30
		}
		subs = append(subs, sub)
		crashRound(ctx, t, n, sub)
	}

	t.Logf("%d of %d restarts found batches in progress", busyRestarts, rounds)
	final := startNode(t, config("final"))
	verifyAfterCrashes(ctx, t, final, subs, listed)
}

// crashRound sends sub's create to n and kills n at the moment that
// sub.mode and sub.delay set.
func crashRound(ctx context.Context, t *testing.T, n *node, sub *submission) {
	t.Helper()
	var (
		body    io.Reader = bytes.NewReader(createBody(sub.prefix, sub.n))
		written           = make(chan struct{}) // closed when the kill may be timed
		killed            = make(chan struct{})
	)
	switch sub.mode {
	case modeWhole:
		close(written)
	case modeCut, modeSent:
		pr, pw := io.Pipe()
		body = pr
		go func() {
			end := sub.n
			if sub.mode == modeCut {
				end = sub.n / 2
			}
			_, err := io.WriteString(pw, `{"requests":[`)
			if err == nil {
				err = writeRequests(pw, sub.prefix, 0, end)
			}
			if err == nil && sub.mode == modeSent {
				_, err = io.WriteString(pw, `]}`)
			}
			close(written)
			if err != nil {
				return // the create failed early; its error is reported below
			}
			if sub.mode == modeSent {
				pw.Close()
				return
			}
			<-killed
			pw.CloseWithError(errors.New("server killed"))
		}()
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		b, err := createBatch(ctx, n.baseURL, body)
		sub.id, sub.err = b.ID, err
	}()

	select {
	case <-written:
	case <-done:
	}
	time.Sleep(sub.delay)
	n.kill()
	close(killed)
	<-done // the client's timeout bounds this

	var statusErr *statusError
	switch {
	case sub.mode == modeCut && sub.err == nil:
		t.Errorf("round %d: a create whose body was cut off half-way returned 200 (%s)",
			sub.round, sub.id)
	case errors.As(sub.err, &statusErr):
		t.Errorf("round %d: create of %d requests: %v", sub.round, sub.n, sub.err)
	}
}

// verifyAfterCrashes waits for every batch to end on the final node and
// checks each against the create that made it.
func verifyAfterCrashes(ctx context.Context, t *testing.T, final *node, subs []*submission,
	listed map[string]bool) {
	t.Helper()
	batches, err := listBatches(ctx, final.baseURL)
	if err != nil {
		t.Fatalf("list batches after the last restart: %v", err)
	}
	present := map[string]bool{}
	unfinished := 0
	for _, b := range batches {
		present[b.ID] = true
		if b.ProcessingStatus != "ended" {
			unfinished++
		}
	}
	for id := range listed {
		if !present[id] {
			t.Errorf("batch %s was listed during the crash loop but is gone", id)
		}
	}

	byPrefix := map[string]*submission{}
	acknowledged := 0
	for _, sub := range subs {
		byPrefix[sub.prefix] = sub
		if sub.id == "" {
			continue
		}
		acknowledged++
		if !present[sub.id] {
			t.Errorf("round %d: batch %s was created with 200 but is not listed", sub.round, sub.id)
		}
	}

	owner := map[string]string{} // prefix to the batch that holds its requests
	for _, b := range batches {
		ended, err := waitEnded(ctx, final.baseURL, b.ID)
		if err != nil {
			t.Fatal(err)
		}
		sub, ok := checkRecoveredBatch(ctx, t, final, ended, byPrefix)
		if !ok {
			continue
		}
		if other, dup := owner[sub.prefix]; dup {
			t.Errorf("round %d: its requests are in two batches, %s and %s", sub.round, other,
				b.ID)
		}
		owner[sub.prefix] = b.ID
	}

	cut, failed, committed := 0, 0, 0
	for _, sub := range subs {
		switch {
		case sub.mode == modeCut:
			cut++
		case sub.id == "":
			failed++
			if owner[sub.prefix] != "" {
				committed++
			}
		}
	}
	t.Logf("%d rounds: %d creates returned 200, %d were cut off mid-body, %d others failed "+
		"with the kill (%d of those committed anyway); %d of %d batches had not ended at "+
		"the last restart", len(subs), acknowledged, cut, failed, committed, unfinished,
		len(batches))
}

// checkRecoveredBatch checks one ended batch: its requests must come from
// one create whose body was complete, and its results must be complete.
func checkRecoveredBatch(ctx context.Context, t *testing.T, final *node, b batchJSON,
	byPrefix map[string]*submission) (*submission, bool) {
	t.Helper()
	results, err := downloadResults(ctx, final.baseURL, b.ID)
	if err != nil {
		t.Errorf("download results of %s: %v", b.ID, err)
		return nil, false
	}

	first, _, _ := bytes.Cut(results, []byte("\n"))
	prefix := ""
	if _, rest, ok := bytes.Cut(first, []byte(`"custom_id":"`)); ok {
		prefix, _, _ = strings.Cut(string(rest), "-")
	}
	sub := byPrefix[prefix]
	switch {
	case sub == nil:
		t.Errorf("batch %s: its first result line belongs to no create: %.200s", b.ID, first)
		return nil, false
	case sub.mode == modeCut:
		t.Errorf("batch %s holds the requests of round %d, whose create was cut off mid-body",
			b.ID, sub.round)
		return nil, false
	case sub.id != "" && sub.id != b.ID:
		t.Errorf("batch %s holds the requests of round %d, which created %s", b.ID, sub.round,
			sub.id)
	}

	checkCounts(t, b, int64(sub.n))
	checkResults(t, results, sub.prefix, sub.n)
	return sub, true
}
