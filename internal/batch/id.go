package batch

import (
	"crypto/rand"
	"encoding/base64"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// BatchIDPrefix starts every batch id.
const BatchIDPrefix = "msgbatch_"

var (
	idMu      sync.Mutex
	idEntropy = ulid.Monotonic(rand.Reader, 0)
)

// NewBatchID returns a new batch id for a batch created at t.
//
// The suffix is a ULID: 48 bits of milliseconds followed by 80 random bits,
// written in Crockford base32, whose alphabet is in ASCII order. Ids made
// later therefore sort after earlier ones as plain strings, which is what lets
// listing be a range scan on the id. Ids made within the same millisecond in
// one process still increase, because the random part is incremented.
func NewBatchID(t time.Time) string {
	idMu.Lock()
	defer idMu.Unlock()

	id := ulid.MustNew(ulid.Timestamp(t), idEntropy)
	return BatchIDPrefix + id.String()
}

// BatchIDTime returns the creation time encoded in a batch id made by
// [NewBatchID], or false if id is not of that form.
func BatchIDTime(id string) (time.Time, bool) {
	suffix, ok := strings.CutPrefix(id, BatchIDPrefix)
	if !ok {
		return time.Time{}, false
	}

	parsed, err := ulid.ParseStrict(suffix)
	if err != nil {
		return time.Time{}, false
	}
	return ulid.Time(parsed.Time()).UTC(), true
}

// NewRequestID returns an id for one API call, such as
// req_Hn3kU0y1u2GcQfK9pXo2Tq1b, sent back in the request-id header and in
// error bodies.
func NewRequestID() string {
	var b [18]byte
	_, _ = rand.Read(b[:])
	return "req_" + base64.RawURLEncoding.EncodeToString(b[:])
}

// NewMessageID returns an id for a generated Message, in the msg_ form the
// Messages API uses.
func NewMessageID() string {
	var b [18]byte
	_, _ = rand.Read(b[:])
	return "msg_" + base64.RawURLEncoding.EncodeToString(b[:])
}
