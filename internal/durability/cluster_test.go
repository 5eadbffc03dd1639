package durability

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"
)

// recoveryMargin is how long after the lease the survivors may take to claim
// a dead node's requests before the test fails. It is generous, so that a
// loaded machine does not fail the test, and the measured figure is logged.
const recoveryMargin = 5 * time.Second

func TestThreeNodesSurviveSIGKILL(t *testing.T) {
	skipShort(t)
	const (
		requests = 20_000
		lease    = 2 * time.Second
		latency  = 10 * time.Millisecond
	)
	schema := newSchema(t)
	db := openRequestsDB(t, schema)

	nodes := make([]*node, 3)
	for i := range nodes {
		nodes[i] = startNode(t, nodeConfig{
			name:        fmt.Sprintf("node-%d", i+1),
			databaseURL: schema.url,
			lease:       lease,
			latency:     latency,
		})
	}
	victim, survivors := nodes[0], nodes[1:]

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	created, err := createBatch(ctx, victim.baseURL, bytes.NewReader(createBody("r", requests)))
	if err != nil {
		t.Fatalf("create on %s: %v", victim.name, err)
	}
	if got := created.RequestCounts.total(); got != requests {
		t.Errorf("created batch: request_counts add up to %d, want %d", got, requests)
	}

	// Read-your-writes: the batch is visible on every node as soon as the
	// create has returned.
	for _, n := range survivors {
		b, err := getBatch(ctx, n.baseURL, created.ID)
		if err != nil {
			t.Errorf("GET %s on %s right after create: %v, want 200", created.ID, n.name, err)
			continue
		}
		if b.ID != created.ID {
			t.Errorf("GET %s on %s: got id %s", created.ID, n.name, b.ID)
		}
	}

	// Kill the node that accepted the create once a third of the work is
	// done and it holds claims.
	if err := db.waitProgress(ctx, victim.name, requests/3); err != nil {
		t.Fatal(err)
	}
	rec, err := db.killAndMeasure(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s held %d claims at SIGKILL (%d finished by its last statements); its last "+
		"lease ended %v after the kill; the survivors claimed the first of them after %v "+
		"and all of them after %v (lease %v)", victim.name, rec.claimed, rec.late,
		rec.leaseEnd.Round(time.Millisecond), rec.first.Round(time.Millisecond),
		rec.all.Round(time.Millisecond), lease)
	if rec.all > lease+recoveryMargin {
		t.Errorf("survivors took %v to claim the dead node's requests, want at most the "+
			"lease (%v) plus %v", rec.all, lease, recoveryMargin)
	}

	ended, err := waitEnded(ctx, survivors[0].baseURL, created.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkCounts(t, ended, requests)

	results, err := downloadResults(ctx, survivors[1].baseURL, created.ID)
	if err != nil {
		t.Fatalf("download results from %s: %v", survivors[1].name, err)
	}
	checkResults(t, results, "r", requests)
}
