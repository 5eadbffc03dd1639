package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"

	"github.com/batchd/batchd/internal/batch"
)

// job is one claimed request waiting for a worker.
type job struct {
	req   batch.Request
	model string

	// group is set on the first request of a prompt-prefix group: when it
	// finishes, the group's other requests are released.
	group string
}

// queue is the work queue of one engine run. Sends never block, because the
// engine claims no more requests than the channel has room for, and a send
// after close is dropped instead of panicking.
type queue struct {
	mu     sync.Mutex
	ch     chan job
	closed bool
}

func newQueue(size int) *queue {
	return &queue{ch: make(chan job, size)}
}

// push adds j and reports whether the queue was still open.
func (q *queue) push(j job) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.ch <- j
	return true
}

func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	close(q.ch)
}

// prefixGroups holds back requests that share a prompt prefix (the same
// model, system prompt and tools) until the first of them has been answered,
// so that the model server's prompt cache holds the prefix when the rest
// arrive. Requests without a system prompt or tools are not grouped.
type prefixGroups struct {
	mu sync.Mutex
	// warm holds, per batch, the prefix keys whose first request has finished.
	warm map[string]map[string]bool
	// parked holds the requests that wait for their group's first request.
	parked map[string][]job
}

func newPrefixGroups() *prefixGroups {
	return &prefixGroups{warm: map[string]map[string]bool{}, parked: map[string][]job{}}
}

// prefixHead is the part of a Messages request that decides its prompt
// prefix.
type prefixHead struct {
	Model  string          `json:"model"`
	System json.RawMessage `json:"system"`
	Tools  json.RawMessage `json:"tools"`
}

// readHead returns the model of params and its prefix key, which is empty
// when the request has neither a system prompt nor tools.
func readHead(params json.RawMessage) (string, string) {
	var head prefixHead
	if json.Unmarshal(params, &head) != nil {
		return "", ""
	}
	if len(head.System) == 0 && len(head.Tools) == 0 {
		return head.Model, ""
	}

	h := sha256.New()
	h.Write([]byte(head.Model))
	h.Write([]byte{0})
	h.Write(head.System)
	h.Write([]byte{0})
	h.Write(head.Tools)
	return head.Model, hex.EncodeToString(h.Sum(nil))
}

// admit decides what to do with a newly claimed request: it returns the jobs
// to queue now, which is the request itself unless its group's first request
// is still running, in which case the request is parked.
func (p *prefixGroups) admit(req batch.Request) (job, bool) {
	model, key := readHead(req.Params)
	j := job{req: req, model: model}
	if key == "" {
		return j, true
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if p.warm[req.BatchID][key] {
		return j, true
	}

	group := req.BatchID + "/" + key
	if _, running := p.parked[group]; running {
		p.parked[group] = append(p.parked[group], j)
		return job{}, false
	}
	p.parked[group] = nil
	j.group = group
	return j, true
}

// release marks the group of a finished first request warm and returns the
// requests that waited for it.
func (p *prefixGroups) release(batchID, group string) []job {
	p.mu.Lock()
	defer p.mu.Unlock()

	key := group[len(batchID)+1:]
	if p.warm[batchID] == nil {
		p.warm[batchID] = map[string]bool{}
	}
	p.warm[batchID][key] = true

	waiting := p.parked[group]
	delete(p.parked, group)
	return waiting
}

// forget drops what is known about a batch once it has ended.
func (p *prefixGroups) forget(batchID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.warm, batchID)
}
