package api

import (
	"net/http"
	"strings"
	"time"

	"github.com/batchd/batchd/internal/batch"
)

// timeLayout is the API's timestamp form: UTC with six fractional digits.
const timeLayout = "2006-01-02T15:04:05.000000Z"

type batchJSON struct {
	ID                string     `json:"id"`
	Type              string     `json:"type"`
	ProcessingStatus  string     `json:"processing_status"`
	RequestCounts     countsJSON `json:"request_counts"`
	EndedAt           *string    `json:"ended_at"`
	CreatedAt         string     `json:"created_at"`
	ExpiresAt         string     `json:"expires_at"`
	ArchivedAt        *string    `json:"archived_at"`
	CancelInitiatedAt *string    `json:"cancel_initiated_at"`
	ResultsURL        *string    `json:"results_url"`
}

type countsJSON struct {
	Processing int64 `json:"processing"`
	Succeeded  int64 `json:"succeeded"`
	Errored    int64 `json:"errored"`
	Canceled   int64 `json:"canceled"`
	Expired    int64 `json:"expired"`
}

type pageJSON struct {
	Data    []batchJSON `json:"data"`
	HasMore bool        `json:"has_more"`
	FirstID *string     `json:"first_id"`
	LastID  *string     `json:"last_id"`
}

type deletedJSON struct {
	ID   string `json:"id"`
	Type string `json:"type"`
}

func formatTime(t time.Time) string {
	return t.UTC().Format(timeLayout)
}

func optionalTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := formatTime(t)
	return &s
}

// renderBatch returns the MessageBatch object for b. baseURL is the server's
// public base URL, without a trailing slash.
func renderBatch(b batch.Batch, baseURL string) batchJSON {
	counts := b.RequestCounts()
	out := batchJSON{
		ID:               b.ID,
		Type:             "message_batch",
		ProcessingStatus: string(b.Status),
		RequestCounts: countsJSON{
			Processing: counts.Processing,
			Succeeded:  counts.Succeeded,
			Errored:    counts.Errored,
			Canceled:   counts.Canceled,
			Expired:    counts.Expired,
		},
		EndedAt:           optionalTime(b.EndedAt),
		CreatedAt:         formatTime(b.CreatedAt),
		ExpiresAt:         formatTime(b.ExpiresAt),
		ArchivedAt:        optionalTime(b.ArchivedAt),
		CancelInitiatedAt: optionalTime(b.CancelInitiatedAt),
	}

	// Results can be fetched from the moment the batch ends until they are
	// archived.
	if b.Status == batch.StatusEnded && !b.Archived() {
		url := baseURL + "/v1/messages/batches/" + b.ID + "/results"
		out.ResultsURL = &url
	}
	return out
}

// baseURL returns the public base URL for links in responses to r.
func (s *Server) baseURL(r *http.Request) string {
	if s.cfg.PublicURL != "" {
		return strings.TrimSuffix(s.cfg.PublicURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}
