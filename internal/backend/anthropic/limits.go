package anthropic

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/batchd/batchd/internal/backend"
)

// limitHeaders is one family of anthropic-ratelimit-* headers, read as one
// limit: its size, what remains of it and when it is replenished.
type limitHeaders struct {
	limit     int64
	remaining int64
	reset     time.Time
}

// readLimitHeaders reads the -limit, -remaining and -reset headers of one
// anthropic-ratelimit-{kind} family. Missing or unreadable counts are -1
// and a missing or unreadable reset is the zero time. The reset is an RFC
// 3339 time.
func readLimitHeaders(h http.Header, names limitNames) limitHeaders {
	return limitHeaders{
		limit:     parseCount(h.Get(names.limit)),
		remaining: parseCount(h.Get(names.remaining)),
		reset:     parseReset(h.Get(names.reset)),
	}
}

// limitNames contains the canonical header names of one family, built once
// because every reply is read for them.
type limitNames struct {
	limit, remaining, reset string
}

func namesOf(kind string) limitNames {
	prefix := "Anthropic-Ratelimit-" + kind + "-"
	return limitNames{prefix + "Limit", prefix + "Remaining", prefix + "Reset"}
}

var (
	requestsNames     = namesOf("Requests")
	tokensNames       = namesOf("Tokens")
	inputTokensNames  = namesOf("Input-Tokens")
	outputTokensNames = namesOf("Output-Tokens")
)

func (l limitHeaders) known() bool {
	return l.limit >= 0 || l.remaining >= 0 || !l.reset.IsZero()
}

// parseLimits reads the anthropic-ratelimit-* headers of a reply.
//
// The tokens-* headers describe the most restrictive token limit in effect,
// so they are used when present. Without them, the input-tokens-* and
// output-tokens-* families are compared and the one with the smaller share
// remaining is reported.
func parseLimits(h http.Header) backend.Limits {
	limits := backend.NoLimits

	requests := readLimitHeaders(h, requestsNames)
	limits.RequestsLimit = requests.limit
	limits.RequestsRemaining = requests.remaining
	limits.RequestsReset = requests.reset

	tokens := readLimitHeaders(h, tokensNames)
	if !tokens.known() {
		tokens = tighterLimit(readLimitHeaders(h, inputTokensNames),
			readLimitHeaders(h, outputTokensNames))
	}
	limits.TokensLimit = tokens.limit
	limits.TokensRemaining = tokens.remaining
	limits.TokensReset = tokens.reset
	return limits
}

// tighterLimit returns whichever of a and b has the smaller share of its
// limit remaining. When only one has a remaining count, that one is
// returned. When a limit is unknown, remaining counts are compared directly.
func tighterLimit(a, b limitHeaders) limitHeaders {
	switch {
	case a.remaining < 0 && b.remaining < 0:
		if a.known() {
			return a
		}
		return b
	case a.remaining < 0:
		return b
	case b.remaining < 0:
		return a
	}

	if a.limit > 0 && b.limit > 0 {
		// Compare a.remaining/a.limit with b.remaining/b.limit without
		// dividing, in floating point to avoid overflow.
		if float64(a.remaining)*float64(b.limit) <= float64(b.remaining)*float64(a.limit) {
			return a
		}
		return b
	}
	if a.remaining <= b.remaining {
		return a
	}
	return b
}

// parseCount parses a non-negative integer header value, returning -1 when
// the value is missing or invalid.
func parseCount(v string) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// parseReset parses an RFC 3339 header value, returning the zero time when the
// value is missing or invalid.
func parseReset(v string) time.Time {
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(v))
	if err != nil {
		return time.Time{}
	}
	return t
}
