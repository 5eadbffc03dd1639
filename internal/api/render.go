package api

import (
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/batchd/batchd/internal/batch"
)

// timeLayout is the API's timestamp form: UTC with six fractional digits.
const timeLayout = "2006-01-02T15:04:05.000000Z"

// MessageBatch objects are written by hand into pooled buffers rather than
// through encoding/json: listing is the API's busiest call, and reflection
// with a fresh buffer per page made up most of its allocations. The shape is
// fixed, so the code stays short, and render_test.go checks it byte for
// byte against encoding/json.

// bufferPool contains response buffers. Buffers that grew past maxPooledBuffer
// are dropped, so one large page does not stay in memory.
var bufferPool = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledBuffer = 64 << 10

// writeBody sends body as a JSON response with status.
func writeBody(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("content-type", "application/json")
	w.Header().Set("content-length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeRendered renders with render into a pooled buffer and sends the
// result as a JSON response with status 200.
func writeRendered(w http.ResponseWriter, render func([]byte) []byte) {
	buf := bufferPool.Get().(*[]byte)
	*buf = render((*buf)[:0])
	writeBody(w, http.StatusOK, *buf)
	if cap(*buf) <= maxPooledBuffer {
		bufferPool.Put(buf)
	}
}

// writeBatch sends b as a MessageBatch object.
func writeBatch(w http.ResponseWriter, b batch.Batch, baseURL string) {
	writeRendered(w, func(dst []byte) []byte { return appendBatch(dst, b, baseURL) })
}

// appendBatch appends the MessageBatch object for b. baseURL is the
// server's public base URL, without a trailing slash.
func appendBatch(dst []byte, b batch.Batch, baseURL string) []byte {
	counts := b.RequestCounts()

	dst = append(dst, `{"id":`...)
	dst = appendString(dst, b.ID)
	dst = append(dst, `,"type":"message_batch","processing_status":`...)
	dst = appendString(dst, string(b.Status))
	dst = append(dst, `,"request_counts":{"processing":`...)
	dst = strconv.AppendInt(dst, counts.Processing, 10)
	dst = append(dst, `,"succeeded":`...)
	dst = strconv.AppendInt(dst, counts.Succeeded, 10)
	dst = append(dst, `,"errored":`...)
	dst = strconv.AppendInt(dst, counts.Errored, 10)
	dst = append(dst, `,"canceled":`...)
	dst = strconv.AppendInt(dst, counts.Canceled, 10)
	dst = append(dst, `,"expired":`...)
	dst = strconv.AppendInt(dst, counts.Expired, 10)

	dst = append(dst, `},"ended_at":`...)
	dst = appendOptionalTime(dst, b.EndedAt)
	dst = append(dst, `,"created_at":`...)
	dst = appendTime(dst, b.CreatedAt)
	dst = append(dst, `,"expires_at":`...)
	dst = appendTime(dst, b.ExpiresAt)
	dst = append(dst, `,"archived_at":`...)
	dst = appendOptionalTime(dst, b.ArchivedAt)
	dst = append(dst, `,"cancel_initiated_at":`...)
	dst = appendOptionalTime(dst, b.CancelInitiatedAt)

	// Results can be fetched from the moment the batch ends until they are
	// archived.
	dst = append(dst, `,"results_url":`...)
	switch {
	case b.Status != batch.StatusEnded || b.Archived():
		dst = append(dst, "null"...)
	case plainJSON(baseURL) && plainJSON(b.ID):
		dst = append(dst, '"')
		dst = append(dst, baseURL...)
		dst = append(dst, "/v1/messages/batches/"...)
		dst = append(dst, b.ID...)
		dst = append(dst, `/results"`...)
	default:
		dst = appendString(dst, baseURL+"/v1/messages/batches/"+b.ID+"/results")
	}
	return append(dst, '}')
}

// appendPage appends the list page of batches.
func appendPage(dst []byte, batches []batch.Batch, hasMore bool, baseURL string) []byte {
	dst = append(dst, `{"data":[`...)
	for i, b := range batches {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendBatch(dst, b, baseURL)
	}

	dst = append(dst, `],"has_more":`...)
	dst = strconv.AppendBool(dst, hasMore)
	if len(batches) == 0 {
		return append(dst, `,"first_id":null,"last_id":null}`...)
	}
	dst = append(dst, `,"first_id":`...)
	dst = appendString(dst, batches[0].ID)
	dst = append(dst, `,"last_id":`...)
	dst = appendString(dst, batches[len(batches)-1].ID)
	return append(dst, '}')
}

// appendTime appends t as a JSON string in timeLayout. It writes the digits
// itself, because time.AppendFormat parses the layout on every call and was
// the largest cost of rendering a page.
func appendTime(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	if year < 0 || year > 9999 {
		dst = append(dst, '"')
		dst = t.AppendFormat(dst, timeLayout)
		return append(dst, '"')
	}

	dst = append(dst, '"')
	dst = appendDigits(dst, year, 4)
	dst = append(dst, '-')
	dst = appendDigits(dst, int(month), 2)
	dst = append(dst, '-')
	dst = appendDigits(dst, day, 2)
	dst = append(dst, 'T')
	dst = appendDigits(dst, hour, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, minute, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, sec, 2)
	dst = append(dst, '.')
	dst = appendDigits(dst, t.Nanosecond()/1000, 6)
	return append(dst, `Z"`...)
}

// appendDigits appends n, which is not negative, as exactly width decimal
// digits, with leading zeros.
func appendDigits(dst []byte, n, width int) []byte {
	dst = append(dst, make([]byte, width)...)
	for i := len(dst) - 1; i >= len(dst)-width; i-- {
		dst[i] = byte('0' + n%10)
		n /= 10
	}
	return dst
}

func appendOptionalTime(dst []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(dst, "null"...)
	}
	return appendTime(dst, t)
}

// appendString appends s as a JSON string. Ids, statuses and ordinary URLs
// need no escaping and are copied. Anything else goes through encoding/json,
// which escapes exactly as the other responses do.
func appendString(dst []byte, s string) []byte {
	if plainJSON(s) {
		dst = append(dst, '"')
		dst = append(dst, s...)
		return append(dst, '"')
	}
	quoted, _ := json.Marshal(s) // a string always marshals
	return append(dst, quoted...)
}

// plainJSON reports whether s is printable ASCII that encoding/json writes
// unchanged between quotes.
func plainJSON(s string) bool {
	for i := range len(s) {
		switch c := s[i]; {
		case c < 0x20, c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// checkHost rejects a request whose Host header cannot be the host of a URL,
// unless a public URL is configured: results_url is built from it, and a
// long or malformed value would be copied into every batch of a response.
func (s *Server) checkHost(r *http.Request) error {
	if s.cfg.PublicURL != "" || validHost(r.Host) {
		return nil
	}
	return invalidf("Host: %q is not a host name or address with an optional port; "+
		"start batchd with --public-url to use a fixed base URL.", truncate(r.Host, 64))
}

// validHost reports whether h is a DNS name, an IPv4 address or a bracketed
// IPv6 address, followed by an optional port.
func validHost(h string) bool {
	const maxHost = 253 + len(":65535")
	if h == "" || len(h) > maxHost {
		return false
	}

	host, port := h, ""
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		host, port = h[:i], h[i+1:]
		n, err := strconv.Atoi(port)
		if err != nil || n < 0 || n > 65535 || strings.TrimLeft(port, "0123456789") != "" {
			return false
		}
	}
	if inner, ok := strings.CutPrefix(host, "["); ok {
		inner, ok = strings.CutSuffix(inner, "]")
		return ok && net.ParseIP(inner) != nil && strings.Contains(inner, ":")
	}
	if host == "" {
		return false
	}
	for i := range len(host) {
		switch c := host[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// truncate returns s cut to at most n bytes, marked with "..." when cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
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
