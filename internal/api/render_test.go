package api

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/batchd/batchd/internal/batch"
)

// The types below render a MessageBatch through encoding/json, the way the
// contract spells it field by field. They are the reference that the
// hand-written appenders must match byte for byte.

type refBatch struct {
	ID                string    `json:"id"`
	Type              string    `json:"type"`
	ProcessingStatus  string    `json:"processing_status"`
	RequestCounts     refCounts `json:"request_counts"`
	EndedAt           *string   `json:"ended_at"`
	CreatedAt         string    `json:"created_at"`
	ExpiresAt         string    `json:"expires_at"`
	ArchivedAt        *string   `json:"archived_at"`
	CancelInitiatedAt *string   `json:"cancel_initiated_at"`
	ResultsURL        *string   `json:"results_url"`
}

type refCounts struct {
	Processing int64 `json:"processing"`
	Succeeded  int64 `json:"succeeded"`
	Errored    int64 `json:"errored"`
	Canceled   int64 `json:"canceled"`
	Expired    int64 `json:"expired"`
}

type refPage struct {
	Data    []refBatch `json:"data"`
	HasMore bool       `json:"has_more"`
	FirstID *string    `json:"first_id"`
	LastID  *string    `json:"last_id"`
}

func refTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(timeLayout)
	return &s
}

func refRender(b batch.Batch, baseURL string) refBatch {
	c := b.RequestCounts()
	out := refBatch{
		ID: b.ID, Type: "message_batch", ProcessingStatus: string(b.Status),
		RequestCounts: refCounts{c.Processing, c.Succeeded, c.Errored, c.Canceled, c.Expired},
		EndedAt:       refTime(b.EndedAt), CreatedAt: *refTime(b.CreatedAt),
		ExpiresAt: *refTime(b.ExpiresAt), ArchivedAt: refTime(b.ArchivedAt),
		CancelInitiatedAt: refTime(b.CancelInitiatedAt),
	}
	if b.Status == batch.StatusEnded && b.ArchivedAt.IsZero() {
		url := baseURL + "/v1/messages/batches/" + b.ID + "/results"
		out.ResultsURL = &url
	}
	return out
}

// randomBatch returns a batch in a random state, with times in a random
// zone and random fractional seconds.
func randomBatch(rng *rand.Rand) batch.Batch {
	zone := time.FixedZone("z", (rng.IntN(48)-24)*1800)
	at := func() time.Time {
		if rng.IntN(50) == 0 {
			// Far from today, up to years that need more than four digits.
			return time.Unix(rng.Int64N(1<<40)-1<<39, rng.Int64N(1e9)).In(zone)
		}
		return time.Unix(rng.Int64N(4_000_000_000), rng.Int64N(1e9)).In(zone)
	}
	maybe := func() time.Time {
		if rng.IntN(2) == 0 {
			return time.Time{}
		}
		return at()
	}

	statuses := []batch.Status{batch.StatusInProgress, batch.StatusCanceling, batch.StatusEnded}
	created := at()
	return batch.Batch{
		ID:           batch.NewBatchID(time.Unix(1_700_000_000, 0)),
		Status:       statuses[rng.IntN(len(statuses))],
		RequestCount: rng.Int64N(100_001),
		Final: batch.Counts{Succeeded: rng.Int64N(1000), Errored: rng.Int64N(1000),
			Canceled: rng.Int64N(1000), Expired: rng.Int64N(1000)},
		CreatedAt:         created,
		ExpiresAt:         at(),
		EndedAt:           maybe(),
		ArchivedAt:        maybe(),
		CancelInitiatedAt: maybe(),
	}
}

var renderBaseURLs = []string{
	"http://127.0.0.1:8080",
	"https://batchd.example",
	`http://host"with\quotes`,
	"http://a<b>&c",
	"http://tab\there",
	"http://\xff\xfeinvalid-utf8",
	"http://ünïcode.example",
}

func TestAppendBatchMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		b := randomBatch(rng)
		base := renderBaseURLs[i%len(renderBaseURLs)]

		want, err := json.Marshal(refRender(b, base))
		if err != nil {
			t.Fatal(err)
		}
		if got := appendBatch(nil, b, base); string(got) != string(want) {
			t.Fatalf("batch %d (%+v):\n got %s\nwant %s", i, b, got, want)
		}
	}
}

func TestAppendPageMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for n := range 25 {
		batches := make([]batch.Batch, n)
		ref := refPage{Data: make([]refBatch, n), HasMore: n%2 == 1}
		for i := range batches {
			batches[i] = randomBatch(rng)
			ref.Data[i] = refRender(batches[i], renderBaseURLs[0])
		}
		if n > 0 {
			ref.FirstID, ref.LastID = &ref.Data[0].ID, &ref.Data[n-1].ID
		}
		if n == 0 {
			ref.Data = []refBatch{}
		}

		want, err := json.Marshal(ref)
		if err != nil {
			t.Fatal(err)
		}
		got := appendPage(nil, batches, ref.HasMore, renderBaseURLs[0])
		if string(got) != string(want) {
			t.Fatalf("page of %d:\n got %s\nwant %s", n, got, want)
		}
	}
}

// TestWriteRenderedReusesNoBytes checks that a pooled buffer handed to a
// second response does not change the body of the first.
func TestWriteRenderedReusesNoBytes(t *testing.T) {
	first := httptest.NewRecorder()
	writeRendered(first, func(dst []byte) []byte { return append(dst, `{"n":1}`...) })
	second := httptest.NewRecorder()
	writeRendered(second, func(dst []byte) []byte { return append(dst, `{"n":2}`...) })

	for i, rec := range []*httptest.ResponseRecorder{first, second} {
		want := fmt.Sprintf(`{"n":%d}`, i+1)
		if got := rec.Body.String(); got != want {
			t.Errorf("response %d body = %s, want %s", i+1, got, want)
		}
		if got := rec.Header().Get("content-length"); got != "7" {
			t.Errorf("response %d content-length = %s, want 7", i+1, got)
		}
	}
}

func BenchmarkAppendPage(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	batches := make([]batch.Batch, 20)
	for i := range batches {
		batches[i] = randomBatch(rng)
	}

	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = appendPage(buf[:0], batches, true, renderBaseURLs[0])
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ref := refPage{Data: make([]refBatch, len(batches)), HasMore: true}
			for i, bt := range batches {
				ref.Data[i] = refRender(bt, renderBaseURLs[0])
			}
			ref.FirstID, ref.LastID = &ref.Data[0].ID, &ref.Data[19].ID
			if _, err := json.Marshal(ref); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestValidHost(t *testing.T) {
	for _, good := range []string{"127.0.0.1:8080", "localhost", "batchd.example",
		"batchd.example:443", "[::1]:9000", "[::1]", "a_b.example", "x:0"} {
		if !validHost(good) {
			t.Errorf("validHost(%q) = false, want true", good)
		}
	}
	for _, bad := range []string{"", "a.example,b.example", "[::1]:18471]", "h:abc", "h:",
		":80", "h:99999", "h:+80", "ex\"ample", "ünï.example", "a b", "[127.0.0.1]",
		"[::1", strings.Repeat("a", 300)} {
		if validHost(bad) {
			t.Errorf("validHost(%q) = true, want false", bad)
		}
	}
}
