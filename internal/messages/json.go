package messages

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/batchd/batchd/internal/backend"
)

// kind is the JSON type of a value, read from its first byte.
type kind int

const (
	kindInvalid kind = iota
	kindNull
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

func (k kind) String() string {
	switch k {
	case kindNull:
		return "null"
	case kindBool:
		return "boolean"
	case kindNumber:
		return "number"
	case kindString:
		return "string"
	case kindArray:
		return "array"
	case kindObject:
		return "object"
	}
	return "invalid JSON"
}

// kindOf returns the JSON type of raw. It trusts raw to be valid JSON and
// looks only at the first byte that is not white space.
func kindOf(raw json.RawMessage) kind {
	for _, c := range raw {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case 'n':
			return kindNull
		case 't', 'f':
			return kindBool
		case '"':
			return kindString
		case '[':
			return kindArray
		case '{':
			return kindObject
		case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			return kindNumber
		}
		return kindInvalid
	}
	return kindInvalid
}

// present reports whether an optional field was sent with a value. A field
// sent as JSON null counts as absent, like a field that was left out.
func present(raw json.RawMessage, ok bool) bool {
	return ok && kindOf(raw) != kindNull
}

// invalid returns the invalid_request_error for the field at path.
func invalid(path, format string, args ...any) *backend.Error {
	return &backend.Error{
		Type:       backend.TypeInvalidRequest,
		Message:    path + ": " + fmt.Sprintf(format, args...),
		StatusCode: http.StatusBadRequest,
	}
}

// wrongType returns the error for a field whose JSON type is not the one
// expected, such as "must be a string, got number".
func wrongType(path, want string, raw json.RawMessage) *backend.Error {
	return invalid(path, "must be %s, got %s", want, kindOf(raw))
}

// member is one name and value of a JSON object. The name is kept as bytes
// so that splitting an object allocates no strings.
type member struct {
	name  []byte
	value json.RawMessage
}

// object are the members of a JSON object in the order sent.
type object []member

// get returns the value of the member name. Names match exactly: unlike
// decoding into a struct, "Model" is not read as "model". When a name
// repeats, the last member wins, as with encoding/json.
func (o object) get(name string) (json.RawMessage, bool) {
	for i := len(o) - 1; i >= 0; i-- {
		if string(o[i].name) == name {
			return o[i].value, true
		}
	}
	return nil, false
}

// decodeObject splits the JSON object raw into its members. raw must be
// part of a document that json.Valid accepted; the scan relies on that and
// does not check the syntax again.
func decodeObject(raw json.RawMessage, path string) (object, error) {
	if kindOf(raw) != kindObject {
		return nil, wrongType(path, "an object", raw)
	}

	members := make(object, 0, 8)
	i := skipSpace(raw, bytes.IndexByte(raw, '{')+1)
	for i < len(raw) && raw[i] != '}' {
		keyEnd := skipValue(raw, i)
		name := raw[i+1 : max(i+1, keyEnd-1)]
		if bytes.IndexByte(name, '\\') >= 0 {
			decoded, err := decodeString(raw[i:keyEnd], path)
			if err != nil {
				return nil, err
			}
			name = []byte(decoded)
		}

		// Skip the colon between the name and the value.
		start := skipSpace(raw, skipSpace(raw, keyEnd)+1)
		end := skipValue(raw, start)
		members = append(members, member{name: name, value: raw[start:end]})

		i = skipSpace(raw, end)
		if i < len(raw) && raw[i] == ',' {
			i = skipSpace(raw, i+1)
		}
	}
	return members, nil
}

// decodeArray splits the JSON array raw into its elements. Like
// [decodeObject], it relies on raw being valid JSON.
func decodeArray(raw json.RawMessage, path string) ([]json.RawMessage, error) {
	if kindOf(raw) != kindArray {
		return nil, wrongType(path, "an array", raw)
	}

	var items []json.RawMessage
	i := skipSpace(raw, bytes.IndexByte(raw, '[')+1)
	for i < len(raw) && raw[i] != ']' {
		end := skipValue(raw, i)
		items = append(items, raw[i:end])

		i = skipSpace(raw, end)
		if i < len(raw) && raw[i] == ',' {
			i = skipSpace(raw, i+1)
		}
	}
	return items, nil
}

// skipSpace returns the index of the first byte at or after i in data that
// is not JSON white space.
func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipValue returns the index just past the JSON value that starts at i in
// data, which must be valid JSON. It never reads past the end of data, even
// when data is not valid, so a wrong input cannot make it panic.
func skipValue(data []byte, i int) int {
	if i >= len(data) {
		return len(data)
	}

	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for i < len(data) {
			switch data[i] {
			case '"':
				i = skipString(data, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(data)
	}

	// A number, true, false or null ends at the next delimiter.
	for i < len(data) {
		switch data[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
		i++
	}
	return i
}

// skipString returns the index just past the JSON string that starts at i.
func skipString(data []byte, i int) int {
	for i++; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(data)
}

// decodeString decodes the JSON string raw.
func decodeString(raw json.RawMessage, path string) (string, error) {
	if kindOf(raw) != kindString {
		return "", wrongType(path, "a string", raw)
	}

	// Most strings are plain ASCII without escapes, and those can be sliced
	// out directly. Anything else goes through encoding/json, which also
	// replaces invalid UTF-8 with U+FFFD.
	if s, ok := plainString(raw); ok {
		return s, nil
	}

	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", invalid(path, "invalid JSON: %v", err)
	}
	return s, nil
}

// plainString returns the contents of the JSON string raw when it holds only
// printable ASCII and no escape sequences.
func plainString(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}

	body := raw[1 : len(raw)-1]
	for _, c := range body {
		if c < 0x20 || c >= utf8.RuneSelf || c == '\\' || c == '"' {
			return "", false
		}
	}
	return string(body), true
}

// decodeBool decodes the JSON boolean raw.
func decodeBool(raw json.RawMessage, path string) (bool, error) {
	if kindOf(raw) != kindBool {
		return false, wrongType(path, "a boolean", raw)
	}
	return raw[0] == 't', nil
}

// decodeNumber decodes the JSON number raw.
func decodeNumber(raw json.RawMessage, path string) (float64, error) {
	if kindOf(raw) != kindNumber {
		return 0, wrongType(path, "a number", raw)
	}

	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		// For a valid JSON number, ParseFloat fails only on a value
		// beyond the float64 range.
		return 0, invalid(path, "number %s is out of range", abbreviate(raw))
	}
	return f, nil
}

// decodeInt decodes the JSON number raw, which must have an integral value
// between minimum and maximum inclusive. Values such as 1024.0 or 1e3 count as
// integers.
func decodeInt(raw json.RawMessage, path string, minimum, maximum int64) (int64, error) {
	if kindOf(raw) != kindNumber {
		return 0, wrongType(path, "an integer", raw)
	}

	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		// ParseFloat returns ±Inf for values beyond float64, and those
		// count as integral here, so the clamping below handles them.
		f, _ := strconv.ParseFloat(string(raw), 64)
		if f != math.Trunc(f) {
			return 0, invalid(path, "must be an integer, got %s", abbreviate(raw))
		}

		// An integral value that ParseInt rejected has a fraction or an
		// exponent, or it is beyond int64. Clamping keeps the range checks
		// below meaningful for every case.
		switch {
		case f >= math.MaxInt64:
			n = math.MaxInt64
		case f <= math.MinInt64:
			n = math.MinInt64
		default:
			n = int64(f)
		}
	}

	if n < minimum {
		return 0, invalid(path, "must be at least %d, got %s", minimum, abbreviate(raw))
	}
	if n > maximum {
		return 0, invalid(path, "must be at most %d, got %s", maximum, abbreviate(raw))
	}
	return n, nil
}

// abbreviate returns raw as text for an error message, cut to a length that
// keeps the message readable.
func abbreviate(raw json.RawMessage) string {
	const maxLen = 40
	if len(raw) <= maxLen {
		return string(raw)
	}
	return string(raw[:maxLen]) + "…"
}

// quote returns s as a Go-quoted string for an error message, cut like
// [abbreviate].
func quote(s string) string {
	const maxLen = 40
	if len(s) > maxLen {
		cut := maxLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "…"
	}
	return strconv.Quote(s)
}

// index returns path extended by an array index, as in "messages.2".
func index(path string, i int) string {
	return path + "." + strconv.Itoa(i)
}
