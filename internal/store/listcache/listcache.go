// Package listcache keeps the newest batches of each workspace in memory, so
// that a store which is the only writer of its database can serve list and
// get calls without a query.
//
// For each workspace the cache contains every batch, or, once it has dropped
// some, every batch whose id is above the workspace's gap, an id at and below
// which it contains nothing. A call whose
// result lies entirely above the gap is served from memory. Any other call
// reports that it is not covered, and the store queries its database. The cache is only
// correct if the store applies every change of a batch row to it (Put after
// create, cancel, end and archive, Delete after delete) in commit order.
//
// The cache has room for at most its size in batches. Past that, it drops the
// oldest batches of the workspace that takes the most room and raises that
// workspace's gap, so memory stays bounded and the newest batches, which
// lists read most, stay in memory.
package listcache

import (
	"container/heap"
	"strings"
	"sync"
	"time"

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/store"
)

// DefaultSize is the number of batches a cache has room for when its size is
// not set. At about 160 bytes of heap per batch (BenchmarkMemory), a full
// cache takes 38 MB.
const DefaultSize = 250_000

// maxIDLen is the maximum length of a batch id the cache can contain. batchd's
// ids are 35 bytes long. A longer id cannot be stored, so the cache drops the
// batches at and below it instead (see Cache.Put).
const maxIDLen = 48

// maxChunkLen is the maximum number of entries in one chunk of a workspace's
// run. An insert or a compaction copies at most one chunk, 38 kB.
const maxChunkLen = 256

// entry is one cached batch. It contains no pointer except betas, which is
// almost always empty, so the garbage collector has almost nothing to follow
// in hundreds of thousands of entries.
type entry struct {
	betas string // comma-separated, as the stores keep them

	// Times in microseconds since the Unix epoch. The last three count only
	// if their bit is in set.
	created, expires, ended, cancelInitiated, archived int64

	requests, succeeded, errored, canceled, expired int64

	id     [maxIDLen]byte
	idLen  uint8
	status uint8 // index in statuses, or statusDeleted
	set    uint8 // which optional times are set: endedSet and the others
}

// The bits of entry.set.
const (
	endedSet uint8 = 1 << iota
	cancelInitiatedSet
	archivedSet
)

var statuses = [...]batch.Status{
	batch.StatusInProgress, batch.StatusCanceling, batch.StatusEnded,
}

// statusDeleted marks an entry whose batch was deleted but which still takes
// its place in its chunk.
const statusDeleted = 0xff

func (e *entry) idBytes() []byte {
	return e.id[:e.idLen]
}

func (e *entry) deleted() bool {
	return e.status == statusDeleted
}

func (e *entry) markDeleted() {
	e.status = statusDeleted
	e.betas = ""
}

// encode packs b into an entry, or returns false if b has an id too long to
// fit or a status the cache does not know.
func encode(b batch.Batch) (entry, bool) {
	if len(b.ID) > maxIDLen {
		return entry{}, false
	}
	status := -1
	for i, s := range statuses {
		if s == b.Status {
			status = i
		}
	}
	if status < 0 {
		return entry{}, false
	}

	var e entry
	e.idLen = uint8(copy(e.id[:], b.ID))
	e.status = uint8(status)
	e.betas = strings.Join(b.Betas, ",")
	e.created = b.CreatedAt.UnixMicro()
	e.expires = b.ExpiresAt.UnixMicro()
	e.ended = e.optional(b.EndedAt, endedSet)
	e.cancelInitiated = e.optional(b.CancelInitiatedAt, cancelInitiatedSet)
	e.archived = e.optional(b.ArchivedAt, archivedSet)
	e.requests = b.RequestCount
	e.succeeded = b.Final.Succeeded
	e.errored = b.Final.Errored
	e.canceled = b.Final.Canceled
	e.expired = b.Final.Expired
	return e, true
}

// decode unpacks e into a batch of the given workspace.
func (e *entry) decode(workspaceID string) batch.Batch {
	b := batch.Batch{
		ID:           string(e.idBytes()),
		WorkspaceID:  workspaceID,
		Status:       statuses[e.status],
		RequestCount: e.requests,
		Final: batch.Counts{
			Succeeded: e.succeeded,
			Errored:   e.errored,
			Canceled:  e.canceled,
			Expired:   e.expired,
		},
		CreatedAt:         fromMicros(e.created),
		ExpiresAt:         fromMicros(e.expires),
		EndedAt:           e.optionalTime(e.ended, endedSet),
		CancelInitiatedAt: e.optionalTime(e.cancelInitiated, cancelInitiatedSet),
		ArchivedAt:        e.optionalTime(e.archived, archivedSet),
	}
	if e.betas != "" {
		b.Betas = strings.Split(e.betas, ",")
	}
	return b
}

// optional returns t in microseconds since the Unix epoch and records in
// e.set that it is set, unless t is the zero time, which stands for unset.
func (e *entry) optional(t time.Time, bit uint8) int64 {
	if t.IsZero() {
		return 0
	}
	e.set |= bit
	return t.UnixMicro()
}

func (e *entry) optionalTime(v int64, bit uint8) time.Time {
	if e.set&bit == 0 {
		return time.Time{}
	}
	return fromMicros(v)
}

func fromMicros(v int64) time.Time {
	return time.UnixMicro(v).UTC()
}

// space is the cached part of one workspace: every batch of it, or, when
// partial is set, every batch with an id above gap.
type space struct {
	run     run
	gap     string
	partial bool
	index   int // in Cache.bySlots, or -1 for a space that is not stored
}

// covers reports whether the space would contain a batch with the given id.
func (sp *space) covers(id string) bool {
	return !sp.partial || id > sp.gap
}

// coversAbove reports whether the space contains every batch with an id above
// the cursor.
func (sp *space) coversAbove(cursor string) bool {
	return !sp.partial || cursor >= sp.gap
}

// raiseGap makes the space contain nothing at or below id.
func (sp *space) raiseGap(id string) {
	if !sp.partial || id > sp.gap {
		sp.gap = id
	}
	sp.partial = true
}

// Cache is an in-memory copy of the newest batches of each workspace. It is
// safe for concurrent use. The zero value is not usable: call New.
type Cache struct {
	mu       sync.RWMutex
	size     int // maximum slots
	chunkLen int
	count    int // live batches
	slots    int // room taken, in batches: deleted ones and spare capacity too
	spaces   map[string]*space
	bySlots  spaceHeap // the same spaces, the one taking the most room first

	// The gap of a workspace not seen yet, when partial is set.
	gap     string
	partial bool
}

// New returns an empty cache with room for at most size batches, or
// DefaultSize if size is not positive. An empty cache covers every
// workspace, which is right for an empty database. To fill it from a
// database that has more batches than fit, call Cut with the id of the
// newest batch left out, then Put the newer ones, oldest first: that order
// fills every chunk.
func New(size int) *Cache {
	if size <= 0 {
		size = DefaultSize
	}
	// Chunks of a 64th of the size let a small cache drop its oldest batches
	// a few at a time.
	chunkLen := min(maxChunkLen, max(firstChunkCap, size/64))
	return &Cache{size: size, chunkLen: chunkLen, spaces: map[string]*space{}}
}

// Size returns the maximum number of batches the cache has room for.
func (c *Cache) Size() int {
	return c.size
}

// Len returns the number of batches the cache contains.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.count
}

// spaceLocked returns the space of a workspace. For a workspace not seen yet,
// it returns a new space if create is set, and otherwise a read-only empty
// one that is not stored.
func (c *Cache) spaceLocked(workspaceID string, create bool) *space {
	if sp, ok := c.spaces[workspaceID]; ok {
		return sp
	}
	sp := &space{run: run{chunkLen: c.chunkLen}, gap: c.gap, partial: c.partial, index: -1}
	if !create {
		return sp
	}
	heap.Push(&c.bySlots, sp)
	c.spaces[workspaceID] = sp
	return sp
}

// Put stores b, replacing the cached batch with the same id. A batch at or
// below its workspace's gap is ignored, because the cache keeps no batches
// there. A batch that cannot be stored (an id over 48 bytes or an unknown
// status) raises the gap to its id, so calls about it go to the database.
func (c *Cache) Put(b batch.Batch) {
	c.mu.Lock()
	defer c.mu.Unlock()

	sp := c.spaceLocked(b.WorkspaceID, true)
	if !sp.covers(b.ID) {
		return
	}

	e, ok := encode(b)
	if !ok {
		c.forgetThroughLocked(sp, b.ID)
		return
	}
	slots := sp.run.slots
	if sp.run.put(e) {
		c.count++
	}
	c.resizedLocked(sp, slots)
	c.trimLocked()
}

// Delete removes a batch from the cache.
func (c *Cache) Delete(workspaceID, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()

	if len(id) > maxIDLen {
		return
	}
	sp := c.spaceLocked(workspaceID, false)
	slots := sp.run.slots
	if sp.run.remove(id) {
		c.count--
	}
	c.resizedLocked(sp, slots)
}

// resizedLocked accounts for a change in the room a space takes, which took
// the given number of slots before.
func (c *Cache) resizedLocked(sp *space, before int) {
	if sp.run.slots == before {
		return
	}
	c.slots += sp.run.slots - before
	if sp.index >= 0 {
		heap.Fix(&c.bySlots, sp.index)
	}
}

// Cut drops every batch with an id at or below id and makes id the gap of
// every workspace whose gap is lower. A store calls it after filling the
// cache with its newest batches, giving the id of the newest batch left out.
func (c *Cache) Cut(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()

	if !c.partial || id > c.gap {
		c.gap = id
	}
	c.partial = true
	for _, sp := range c.spaces {
		c.forgetThroughLocked(sp, id)
	}
}

// forgetThroughLocked drops a space's batches with ids at or below id and
// raises its gap to id.
func (c *Cache) forgetThroughLocked(sp *space, id string) {
	slots := sp.run.slots
	c.count -= sp.run.dropThrough(id)
	c.resizedLocked(sp, slots)
	sp.raiseGap(id)
}

// trimLocked drops the oldest chunk of the workspace that takes the most room
// until the cache is within its size.
func (c *Cache) trimLocked() {
	for c.slots > c.size && len(c.bySlots) > 0 {
		largest := c.bySlots[0]
		if len(largest.run.chunks) == 0 {
			return
		}

		slots := largest.run.slots
		lastID, live := largest.run.dropOldestChunk()
		c.count -= live
		c.resizedLocked(largest, slots)
		largest.raiseGap(lastID)
	}
}

// Get looks up a batch of a workspace. covered is false when the cache cannot
// tell, and the caller must query the database. When covered, found reports
// whether the workspace has the batch. An empty workspace id, which stands
// for every workspace, is never covered.
func (c *Cache) Get(workspaceID, id string) (b batch.Batch, found, covered bool) {
	if workspaceID == "" || len(id) > maxIDLen {
		return batch.Batch{}, false, false
	}

	c.mu.RLock()
	defer c.mu.RUnlock()

	sp := c.spaceLocked(workspaceID, false)
	if e, ok := sp.run.get(id); ok {
		return e.decode(workspaceID), true, true
	}
	return batch.Batch{}, false, sp.covers(id)
}

// List returns one page of a workspace's batches with the meaning of
// [store.Store.BatchList], or false when the page reaches below the
// workspace's gap and the caller must query the database.
func (c *Cache) List(params store.BatchListParams) (store.BatchPage, bool) {
	if params.Limit < 1 || len(params.AfterID) > maxIDLen ||
		len(params.BeforeID) > maxIDLen {
		return store.BatchPage{}, false
	}

	c.mu.RLock()
	defer c.mu.RUnlock()

	sp := c.spaceLocked(params.WorkspaceID, false)
	if params.BeforeID != "" {
		return listUpward(sp, params)
	}
	return listDownward(sp, params)
}

// listDownward reads the page below AfterID, or from the newest batch, down
// toward the gap.
func listDownward(sp *space, params store.BatchListParams) (store.BatchPage, bool) {
	from := sp.run.end()
	if params.AfterID != "" {
		from, _ = sp.run.search(params.AfterID)
	}
	found := make([]*entry, 0, params.Limit+1)
	sp.run.descend(from, func(e *entry) bool {
		found = append(found, e)
		return len(found) <= params.Limit
	})

	// A short page is the whole result only if nothing lies below the gap.
	if len(found) <= params.Limit && sp.partial {
		return store.BatchPage{}, false
	}
	return makePage(found, params, false), true
}

// listUpward reads the page above BeforeID, closest to it first, up to
// AfterID if set.
func listUpward(sp *space, params store.BatchListParams) (store.BatchPage, bool) {
	if !sp.coversAbove(params.BeforeID) {
		return store.BatchPage{}, false
	}

	from, exact := sp.run.search(params.BeforeID)
	found := make([]*entry, 0, params.Limit+1)
	sp.run.ascend(from, func(e *entry) bool {
		if exact && string(e.idBytes()) == params.BeforeID {
			return true
		}
		if params.AfterID != "" && string(e.idBytes()) >= params.AfterID {
			return false
		}
		found = append(found, e)
		return len(found) <= params.Limit
	})
	return makePage(found, params, true), true
}

// makePage turns up to Limit+1 entries, read in paging order, into a page
// that runs newest first.
func makePage(found []*entry, params store.BatchListParams, ascending bool) store.BatchPage {
	page := store.BatchPage{HasMore: len(found) > params.Limit}
	found = found[:min(len(found), params.Limit)]

	page.Batches = make([]batch.Batch, len(found))
	for i := range found {
		j := i
		if ascending {
			j = len(found) - 1 - i
		}
		page.Batches[j] = found[i].decode(params.WorkspaceID)
	}
	return page
}

// spaceHeap orders spaces by the room they take, largest first, for
// container/heap. It keeps each space's index up to date.
type spaceHeap []*space

func (h spaceHeap) Len() int { return len(h) }

func (h spaceHeap) Less(i, j int) bool { return h[i].run.slots > h[j].run.slots }

func (h spaceHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *spaceHeap) Push(x any) {
	sp := x.(*space)
	sp.index = len(*h)
	*h = append(*h, sp)
}

func (h *spaceHeap) Pop() any {
	old := *h
	sp := old[len(old)-1]
	*h = old[:len(old)-1]
	sp.index = -1
	return sp
}
