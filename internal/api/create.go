package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/batchd/batchd/internal/batch"
	"github.com/batchd/batchd/internal/store"
)

func (s *Server) create(w http.ResponseWriter, r *http.Request, c caller) error {
	if r.ContentLength > s.cfg.MaxBodyBytes {
		return s.tooLarge()
	}
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	betas := betasOf(r)

	key := r.Header.Get("idempotency-key")
	if len(key) > maxIdempotencyKeyLength {
		return invalidf("Idempotency-Key: must be at most %d characters, got %d.",
			maxIdempotencyKeyLength, len(key))
	}

	b, err := s.store.BatchCreate(r.Context(), store.BatchCreateParams{
		WorkspaceID:    c.workspaceID,
		IdempotencyKey: key,
		Requests:       s.decodeRequests(body),
		NewBatch: func(count int64) batch.Batch {
			now := s.clock.Now()
			return batch.Batch{
				ID:           batch.NewBatchID(now),
				WorkspaceID:  c.workspaceID,
				Status:       batch.StatusInProgress,
				RequestCount: count,
				CreatedAt:    now,
				ExpiresAt:    now.Add(s.cfg.Expiry),
				Betas:        betas,
			}
		},
	})
	if err != nil {
		return s.createError(err)
	}

	s.logger.InfoContext(r.Context(), "batch created", "batch_id", b.ID,
		"workspace_id", c.workspaceID, "requests", b.RequestCount)
	if s.notifier != nil {
		s.notifier.Notify()
	}
	writeBatch(w, b, s.baseURL(r))
	return nil
}

// maxIdempotencyKeyLength bounds the Idempotency-Key header, which is stored
// with the batch.
const maxIdempotencyKeyLength = 255

func (s *Server) tooLarge() error {
	return newError(batch.ErrTooLarge,
		"Request body exceeds the maximum size of %d bytes.", s.cfg.MaxBodyBytes)
}

// createError maps errors that arise while reading the body: an oversized
// body, and JSON that is malformed in a way the decoder reports.
func (s *Server) createError(err error) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return s.tooLarge()
	}

	var ce *clientError
	if errors.As(err, &ce) {
		return err
	}

	var syntax *json.SyntaxError
	if errors.As(err, &syntax) {
		return invalidf("The request body is not valid JSON: %v", err)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return invalidf("The request body is not valid JSON: it ends before the JSON " +
			"value is complete.")
	}
	return err
}

// betasOf merges every anthropic-beta header value: repeated headers and
// comma-separated lists, trimmed, without duplicates, in first-seen order.
func betasOf(r *http.Request) []string {
	var betas []string
	for _, value := range r.Header.Values("anthropic-beta") {
		for _, name := range strings.Split(value, ",") {
			name = strings.TrimSpace(name)
			if name != "" && !slices.Contains(betas, name) {
				betas = append(betas, name)
			}
		}
	}
	return betas
}

// requestItem is one element of the create body's requests array.
type requestItem struct {
	CustomID *string         `json:"custom_id"`
	Params   json.RawMessage `json:"params"`
}

// decodeRequests returns the requests of a create body, decoded one at a
// time as the store pulls them, so the body is never held in memory whole.
// The sequence ends with an error at the first invalid request, at
// malformed JSON, or at anything after the requests array that does not
// belong there.
func (s *Server) decodeRequests(body io.Reader) iter.Seq2[batch.NewRequest, error] {
	return func(yield func(batch.NewRequest, error) bool) {
		dec := json.NewDecoder(body)
		dec.UseNumber()

		if err := openRequests(dec); err != nil {
			yield(batch.NewRequest{}, err)
			return
		}

		seen := make(map[string]int)
		for index := 0; dec.More(); index++ {
			req, err := decodeItem(dec, index, seen)
			if err != nil {
				yield(batch.NewRequest{}, err)
				return
			}
			if !yield(req, nil) {
				return
			}
		}

		if err := closeRequests(dec, len(seen)); err != nil {
			yield(batch.NewRequest{}, err)
		}
	}
}

// openRequests reads up to the first element of {"requests": [.
func openRequests(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err == io.EOF {
		return invalidf("The request body is empty; it must be a JSON object.")
	}
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return invalidf("The request body must be a JSON object.")
	}

	key, err := dec.Token()
	if err != nil {
		return err
	}
	if key == json.Delim('}') {
		return invalidf("requests: field required")
	}
	if key != "requests" {
		return invalidf("%v: unknown field; the body may only contain requests", key)
	}
	return expectDelim(dec, '[', "requests: must be an array")
}

// closeRequests reads the end of the array and of the body.
func closeRequests(dec *json.Decoder, count int) error {
	if _, err := dec.Token(); err != nil { // ']'
		return err
	}
	if count == 0 {
		return invalidf("requests: must contain at least 1 request")
	}

	if dec.More() {
		key, err := dec.Token()
		if err != nil {
			return err
		}
		if key == "requests" {
			return invalidf("requests: the field appears twice")
		}
		return invalidf("%v: unknown field; the body may only contain requests", key)
	}
	if _, err := dec.Token(); err != nil { // '}'
		return err
	}
	_, err := dec.Token()
	switch {
	case err == io.EOF:
		return nil
	case err != nil:
		return err
	}
	return invalidf("The request body must contain one JSON object and nothing after it.")
}

func expectDelim(dec *json.Decoder, want json.Delim, message string) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return invalidf("%s", message)
	}
	return nil
}

// decodeItem reads and checks requests[index]. seen maps the custom_ids read
// so far to their index.
func decodeItem(dec *json.Decoder, index int, seen map[string]int) (batch.NewRequest, error) {
	if index >= batch.MaxRequests {
		return batch.NewRequest{}, invalidf(
			"requests: a batch may contain at most %d requests.", batch.MaxRequests)
	}

	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return batch.NewRequest{}, err
	}
	item, err := parseItem(raw, index)
	if err != nil {
		return batch.NewRequest{}, err
	}

	if first, dup := seen[*item.CustomID]; dup {
		return batch.NewRequest{}, invalidf(
			"requests.%d.custom_id: %q is already used by requests.%d; custom_id values "+
				"must be unique within a batch.", index, *item.CustomID, first)
	}
	seen[*item.CustomID] = index
	return batch.NewRequest{CustomID: *item.CustomID, Params: item.Params}, nil
}

func parseItem(raw json.RawMessage, index int) (requestItem, error) {
	if !utf8.Valid(raw) {
		return requestItem{}, invalidf("requests.%d: the text is not valid UTF-8.", index)
	}
	if err := checkSurrogates(raw); err != nil {
		return requestItem{}, invalidf("requests.%d: %v", index, err)
	}

	var item requestItem
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&item); err != nil {
		return requestItem{}, itemError(err, index)
	}

	switch {
	case item.CustomID == nil:
		return requestItem{}, invalidf("requests.%d.custom_id: field required", index)
	case item.Params == nil || bytes.Equal(item.Params, []byte("null")):
		return requestItem{}, invalidf("requests.%d.params: field required", index)
	case item.Params[0] != '{':
		return requestItem{}, invalidf("requests.%d.params: must be an object", index)
	}
	if err := batch.ValidateCustomID(*item.CustomID); err != nil {
		return requestItem{}, invalidf("requests.%d.custom_id: %v", index, err)
	}
	return item, nil
}

func itemError(err error, index int) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		if typeErr.Field == "" {
			return invalidf("requests.%d: must be an object", index)
		}
		return invalidf("requests.%d.%s: must be %s, got %s",
			index, typeErr.Field, jsonTypeName(typeErr.Field), typeErr.Value)
	}
	if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return invalidf("requests.%d.%s: unknown field; a request has custom_id and params",
			index, strings.Trim(field, `"`))
	}
	return invalidf("requests.%d: %v", index, err)
}

func jsonTypeName(field string) string {
	if field == "params" {
		return "an object"
	}
	return "a string"
}

// checkSurrogates rejects \u escapes that encode half of a UTF-16 surrogate
// pair on their own. encoding/json would silently turn them into U+FFFD, so
// the text a model received would differ from what the client sent.
func checkSurrogates(raw []byte) error {
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		i++
		if i >= len(raw) || raw[i] != 'u' {
			continue // a two-character escape such as \" or \\
		}

		code, ok := hex4(raw, i+1)
		if !ok {
			return fmt.Errorf("invalid \\u escape")
		}
		i += 4

		switch {
		case code >= 0xDC00 && code <= 0xDFFF:
			return fmt.Errorf("a \\u%04X escape is a lone low surrogate", code)
		case code >= 0xD800 && code <= 0xDBFF:
			low, ok := hex4(raw, i+3)
			if i+2 >= len(raw) || raw[i+1] != '\\' || raw[i+2] != 'u' || !ok ||
				low < 0xDC00 || low > 0xDFFF {
				return fmt.Errorf("a \\u%04X escape is a high surrogate without its low half",
					code)
			}
			i += 6
		}
	}
	return nil
}

// hex4 parses the four hex digits at raw[at:at+4].
func hex4(raw []byte, at int) (rune, bool) {
	if at+4 > len(raw) {
		return 0, false
	}
	var code rune
	for _, c := range raw[at : at+4] {
		code <<= 4
		switch {
		case c >= '0' && c <= '9':
			code |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			code |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			code |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return code, true
}
