package listcache

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/store"
)

// database is the reference the cache is checked against: every batch of
// every workspace, as a store's database would contain them.
type database struct {
	batches map[string]batch.Batch
}

func (db *database) ids(workspaceID string) []string {
	var ids []string
	for id, b := range db.batches {
		if b.WorkspaceID == workspaceID {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// list is the store contract's list, written as plainly as possible.
func (db *database) list(params store.BatchListParams) store.BatchPage {
	var picked []string
	for _, id := range db.ids(params.WorkspaceID) {
		if params.AfterID != "" && id >= params.AfterID {
			continue
		}
		if params.BeforeID != "" && id <= params.BeforeID {
			continue
		}
		picked = append(picked, id)
	}

	page := store.BatchPage{Batches: []batch.Batch{}}
	if len(picked) > params.Limit {
		page.HasMore = true
		if params.BeforeID != "" {
			picked = picked[:params.Limit]
		} else {
			picked = picked[len(picked)-params.Limit:]
		}
	}
	for _, id := range slices.Backward(picked) {
		page.Batches = append(page.Batches, db.batches[id])
	}
	return page
}

var testTime = time.Date(2026, 12, 4, 10, 0, 0, 123456000, time.UTC)

func newBatch(workspaceID string, n int) batch.Batch {
	created := testTime.Add(time.Duration(n) * time.Second)
	return batch.Batch{
		ID:           fmt.Sprintf("msgbatch_%06d", n),
		WorkspaceID:  workspaceID,
		Status:       batch.StatusInProgress,
		RequestCount: int64(n%7 + 1),
		CreatedAt:    created,
		ExpiresAt:    created.Add(24 * time.Hour),
	}
}

// changeBatch moves b one step along its lifecycle, as cancel, end and
// archive do.
func changeBatch(b batch.Batch, now time.Time) batch.Batch {
	switch {
	case b.Status == batch.StatusInProgress:
		b.Status = batch.StatusCanceling
		b.CancelInitiatedAt = now
	case b.Status == batch.StatusCanceling:
		b.Status = batch.StatusEnded
		b.EndedAt = now
		b.Final = batch.Counts{Succeeded: 1, Canceled: b.RequestCount - 1}
	case b.ArchivedAt.IsZero():
		b.ArchivedAt = now
	}
	return b
}

func TestEntryRoundTrip(t *testing.T) {
	b := batch.Batch{
		ID:           "msgbatch_01JEXAMPLE0000000000000000",
		WorkspaceID:  "wrkspc_a",
		Status:       batch.StatusEnded,
		RequestCount: 100_000,
		Final: batch.Counts{
			Succeeded: 99_000, Errored: 500, Canceled: 400, Expired: 100,
		},
		CreatedAt:         testTime,
		ExpiresAt:         testTime.Add(24 * time.Hour),
		EndedAt:           testTime.Add(time.Hour),
		CancelInitiatedAt: testTime.Add(time.Minute),
		ArchivedAt:        testTime.Add(29 * 24 * time.Hour),
		Betas:             []string{"beta-one", "beta-two"},
	}
	e, ok := encode(b)
	if !ok {
		t.Fatal("encode rejected a valid batch")
	}
	if got := e.decode("wrkspc_a"); !reflect.DeepEqual(got, b) {
		t.Errorf("decode(encode(b)) = %+v, want %+v", got, b)
	}

	b.Status, b.EndedAt, b.ArchivedAt, b.CancelInitiatedAt = batch.StatusInProgress,
		time.Time{}, time.Time{}, time.Time{}
	b.Final, b.Betas = batch.Counts{}, nil
	e, _ = encode(b)
	if got := e.decode("wrkspc_a"); !reflect.DeepEqual(got, b) {
		t.Errorf("decode(encode(b)) with unset times = %+v, want %+v", got, b)
	}

	epoch := time.Unix(0, 0).UTC()
	b.CreatedAt, b.ExpiresAt, b.CancelInitiatedAt = epoch, epoch, epoch
	e, _ = encode(b)
	if got := e.decode("wrkspc_a"); !reflect.DeepEqual(got, b) {
		t.Errorf("decode(encode(b)) with times at the epoch = %+v, want %+v", got, b)
	}
}

// TestCacheMatchesDatabase runs random creates, changes, deletes, lists and
// gets over three workspaces with caches too small for them, and checks that
// every result the cache returns is the database's result. Some creates come
// with ids below newer ones, as ids from a clock that stepped back would.
func TestCacheMatchesDatabase(t *testing.T) {
	for _, size := range []int{25, 300, 600} {
		for seed := range uint64(10) {
			t.Run(fmt.Sprintf("size%d/seed%d", size, seed), func(t *testing.T) {
				checkAgainstDatabase(t, size, seed)
			})
		}
	}
}

func checkAgainstDatabase(t *testing.T, size int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	db := &database{batches: map[string]batch.Batch{}}
	cache := New(size)
	workspaces := []string{"wrkspc_a", "wrkspc_b", "wrkspc_c"}
	var allIDs []string
	next := 0
	var covered, uncovered int

	for step := range 6000 {
		now := testTime.Add(time.Duration(step) * time.Minute)
		switch op := rng.IntN(20); {
		case op < 6 || len(db.batches) == 0:
			n := next + 1 + rng.IntN(3)
			if op == 0 && next > 0 {
				n = rng.IntN(next) // an id below the newest, unless it exists
			} else {
				next = n
			}
			b := newBatch(workspaces[rng.IntN(len(workspaces))], n)
			if _, exists := db.batches[b.ID]; exists || slices.Contains(allIDs, b.ID) {
				continue
			}
			db.batches[b.ID] = b
			allIDs = append(allIDs, b.ID)
			cache.Put(b)
		case op < 10:
			id := allIDs[rng.IntN(len(allIDs))]
			if b, ok := db.batches[id]; ok {
				b = changeBatch(b, now)
				db.batches[id] = b
				cache.Put(b)
			}
		case op < 13:
			id := allIDs[rng.IntN(len(allIDs))]
			if b, ok := db.batches[id]; ok {
				delete(db.batches, id)
				cache.Delete(b.WorkspaceID, id)
			}
		case op < 18:
			params := randomListParams(rng, workspaces, allIDs, next)
			page, ok := cache.List(params)
			if !ok {
				uncovered++
				continue
			}
			covered++
			if want := db.list(params); !reflect.DeepEqual(page, want) {
				t.Fatalf("step %d: List(%+v) =\n%s\nwant\n%s", step, params,
					describe(page), describe(want))
			}
		default:
			checkGet(t, cache, db, workspaces[rng.IntN(len(workspaces))],
				allIDs[rng.IntN(len(allIDs))])
		}
		if n := cache.Len(); n > size {
			t.Fatalf("step %d: cache contains %d batches, more than its size %d", step, n, size)
		}
	}
	if covered == 0 || uncovered == 0 {
		t.Errorf("lists: %d covered, %d not covered; the test needs both", covered, uncovered)
	}
}

// randomListParams returns a list call with cursors that are stored ids,
// deleted ids or ids between them, and limits from 1 to 6.
func randomListParams(rng *rand.Rand, workspaces, ids []string, next int) store.BatchListParams {
	cursor := func() string {
		switch rng.IntN(3) {
		case 0:
			return ""
		case 1:
			return ids[rng.IntN(len(ids))]
		}
		return fmt.Sprintf("msgbatch_%06d", rng.IntN(next+2))
	}
	params := store.BatchListParams{
		WorkspaceID: workspaces[rng.IntN(len(workspaces))],
		AfterID:     cursor(),
		BeforeID:    cursor(),
		Limit:       1 + rng.IntN(6),
	}
	return params
}

func checkGet(t *testing.T, cache *Cache, db *database, workspaceID, id string) {
	t.Helper()
	got, found, covered := cache.Get(workspaceID, id)
	if !covered {
		return
	}
	want, ok := db.batches[id]
	ok = ok && want.WorkspaceID == workspaceID
	if found != ok {
		t.Fatalf("Get(%s, %s): found %v, database has it: %v", workspaceID, id, found, ok)
	}
	if found && !reflect.DeepEqual(got, want) {
		t.Fatalf("Get(%s, %s) = %+v, want %+v", workspaceID, id, got, want)
	}
}

func describe(page store.BatchPage) string {
	var lines []string
	for _, b := range page.Batches {
		lines = append(lines, fmt.Sprintf("  %s %s archived=%v", b.ID, b.Status, b.Archived()))
	}
	return fmt.Sprintf("has_more=%v\n%s", page.HasMore, strings.Join(lines, "\n"))
}

func TestTrimKeepsNewest(t *testing.T) {
	cache := New(10)
	for n := 1; n <= 30; n++ {
		cache.Put(newBatch("wrkspc_a", n))
	}
	if n := cache.Len(); n > 10 {
		t.Fatalf("Len() = %d, want at most 10", n)
	}

	page, ok := cache.List(store.BatchListParams{WorkspaceID: "wrkspc_a", Limit: 5})
	if !ok {
		t.Fatal("first page of 5 is not covered")
	}
	if got := page.Batches[0].ID; got != "msgbatch_000030" {
		t.Errorf("first batch = %s, want msgbatch_000030", got)
	}

	_, ok = cache.List(store.BatchListParams{WorkspaceID: "wrkspc_a",
		AfterID: "msgbatch_000015", Limit: 5})
	if ok {
		t.Error("a page below the newest 10 batches is covered")
	}
	if _, _, covered := cache.Get("wrkspc_a", "msgbatch_000001"); covered {
		t.Error("Get of a dropped batch is covered")
	}
	if _, found, covered := cache.Get("wrkspc_a", "msgbatch_000030"); !found || !covered {
		t.Errorf("Get of the newest batch: found %v, covered %v; want both", found, covered)
	}
}

func TestTrimTakesLargestWorkspace(t *testing.T) {
	cache := New(20)
	for n := 1; n <= 4; n++ {
		cache.Put(newBatch("wrkspc_small", n))
	}
	for n := 5; n <= 40; n++ {
		cache.Put(newBatch("wrkspc_large", n))
	}

	page, ok := cache.List(store.BatchListParams{WorkspaceID: "wrkspc_small", Limit: 10})
	if !ok {
		t.Fatal("the small workspace's list is not covered")
	}
	if len(page.Batches) != 4 || page.HasMore {
		t.Errorf("small workspace: %d batches, has_more %v; want 4 and false",
			len(page.Batches), page.HasMore)
	}
}

func TestCutAfterPartialLoad(t *testing.T) {
	cache := New(100)
	for n := 50; n > 40; n-- {
		cache.Put(newBatch("wrkspc_a", n))
	}
	cache.Cut("msgbatch_000040")

	if _, ok := cache.List(store.BatchListParams{WorkspaceID: "wrkspc_a", Limit: 20}); ok {
		t.Error("a page that reaches below the cut is covered")
	}
	if _, ok := cache.List(store.BatchListParams{WorkspaceID: "wrkspc_a", Limit: 5}); !ok {
		t.Error("a page above the cut is not covered")
	}
	if _, ok := cache.List(store.BatchListParams{WorkspaceID: "wrkspc_new", Limit: 5}); ok {
		t.Error("a workspace not loaded is covered below the cut")
	}
	page, ok := cache.List(store.BatchListParams{WorkspaceID: "wrkspc_new",
		BeforeID: "msgbatch_000045", Limit: 5})
	if !ok || len(page.Batches) != 0 {
		t.Errorf("a workspace not loaded, above the cut: covered %v, %d batches; "+
			"want covered and empty", ok, len(page.Batches))
	}

	cache.Put(newBatch("wrkspc_a", 30))
	if _, _, covered := cache.Get("wrkspc_a", "msgbatch_000030"); covered {
		t.Error("a batch below the cut was stored")
	}
}

func TestLongIDRaisesGap(t *testing.T) {
	cache := New(100)
	for n := 1; n <= 5; n++ {
		cache.Put(newBatch("wrkspc_a", n))
	}
	long := newBatch("wrkspc_a", 6)
	long.ID += strings.Repeat("x", maxIDLen)
	cache.Put(long)
	cache.Put(newBatch("wrkspc_a", 7))

	if _, _, covered := cache.Get("wrkspc_a", long.ID); covered {
		t.Error("Get of the batch with the long id is covered")
	}
	if _, _, covered := cache.Get("wrkspc_a", "msgbatch_000003"); covered {
		t.Error("Get of a batch below the long id is covered")
	}
	if _, found, covered := cache.Get("wrkspc_a", "msgbatch_000007"); !found || !covered {
		t.Errorf("Get of a batch above the long id: found %v, covered %v; want both",
			found, covered)
	}
}

func TestGetAllWorkspacesIsNotCovered(t *testing.T) {
	cache := New(10)
	cache.Put(newBatch("wrkspc_a", 1))
	if _, _, covered := cache.Get("", "msgbatch_000001"); covered {
		t.Error("Get with an empty workspace id is covered")
	}
}

// TestFillKeepsSize fills caches with batches in id order, oldest first as a
// store loads them and newest first, and checks that both keep nearly their
// size: every chunk but the last is full.
func TestFillKeepsSize(t *testing.T) {
	const size = 10_000
	ascending := New(size)
	for n := 1; n <= 2*size; n++ {
		ascending.Put(newBatch("wrkspc_a", n))
	}
	descending := New(size)
	for n := 2 * size; n >= 1; n-- {
		descending.Put(newBatch("wrkspc_a", n))
	}

	for name, c := range map[string]*Cache{"oldest first": ascending, "newest first": descending} {
		if got, want := c.Len(), size-2*c.chunkLen; got < want {
			t.Errorf("filled %s, the cache keeps %d batches, want at least %d", name, got, want)
		}
	}
}
