package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// inputBufferSize is the read buffer for create input files. Lines may be
// longer; bufio.Reader.ReadBytes grows past it as needed.
const inputBufferSize = 1 << 20

// input describes a create input file after scanInput has checked it.
type input struct {
	name  string
	jsonl bool
	count int
	// lineOf maps the index of each request of a JSONL input to its line
	// number, counted from 1. Blank lines are skipped, so the two can differ.
	lineOf []int
}

// scanInput detects the form of the input in f and checks what can be
// checked locally: JSON syntax, that each request has a string custom_id and
// an object params, and that no custom_id repeats. Everything else is left
// to the server. f is read to its end.
func scanInput(f *os.File, name string) (*input, error) {
	jsonl, err := detectForm(f, name)
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rewind %s: %w", name, err)
	}

	in := &input{name: name, jsonl: jsonl}
	if jsonl {
		err = in.scanJSONL(f)
	} else {
		err = in.scanBody(f)
	}
	if err != nil {
		return nil, err
	}
	if in.count == 0 {
		return nil, fmt.Errorf("%s contains no requests", name)
	}
	return in, nil
}

// detectForm reports whether f is JSONL (true) or a JSON body (false). Both
// start with "{", so it reads the keys of the first object until it finds
// "requests", which means a body, or "custom_id" or "params", which mean a
// JSONL line.
func detectForm(f *os.File, name string) (bool, error) {
	br := bufio.NewReaderSize(f, inputBufferSize)
	first, err := firstNonSpace(br)
	if err == io.EOF {
		return false, fmt.Errorf("%s is empty", name)
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", name, err)
	}
	if first == 0xEF {
		return false, fmt.Errorf("%s starts with a UTF-8 byte order mark, which JSON does not "+
			"allow; save the file without one", name)
	}
	if first != '{' {
		return false, fmt.Errorf("%s starts with %q, but the input must be JSONL of "+
			"{\"custom_id\", \"params\"} objects or a JSON object {\"requests\": [...]}",
			name, first)
	}

	// A new decoder from the start of f, so that its offsets are offsets in f.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return false, fmt.Errorf("rewind %s: %w", name, err)
	}
	dec := json.NewDecoder(bufio.NewReaderSize(f, inputBufferSize))
	if _, err := dec.Token(); err != nil { // '{'
		return false, syntaxError(f, name, dec, err)
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return false, syntaxError(f, name, dec, err)
		}
		switch key {
		case "requests":
			return false, nil
		case "custom_id", "params":
			return true, nil
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return false, syntaxError(f, name, dec, err)
		}
	}
	return false, fmt.Errorf("the first object in %s has neither \"requests\" (a JSON body) "+
		"nor \"custom_id\" and \"params\" (a JSONL line)", name)
}

// firstNonSpace returns the first byte of br that is not JSON white space,
// leaving it unread.
func firstNonSpace(br *bufio.Reader) (byte, error) {
	for {
		c, err := br.ReadByte()
		if err != nil {
			return 0, err
		}
		if !isSpace(c) {
			return c, br.UnreadByte()
		}
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

// scanJSONL checks each non-blank line of a JSONL input.
func (in *input) scanJSONL(r io.Reader) error {
	br := bufio.NewReaderSize(r, inputBufferSize)
	seen := make(map[string]int)
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadBytes('\n')
		if err != nil && err != io.EOF {
			return fmt.Errorf("read %s: %w", in.name, err)
		}

		if trimmed := bytes.TrimSpace(line); len(trimmed) > 0 {
			if err := checkRequest(trimmed, in.name, lineNo, seen, lineLabel); err != nil {
				return err
			}
			in.lineOf = append(in.lineOf, lineNo)
			in.count++
		}
		if err == io.EOF {
			return nil
		}
	}
}

// scanBody checks a JSON body {"requests": [...]}, one request at a time so
// that the whole body is never in memory.
func (in *input) scanBody(f *os.File) error {
	dec := json.NewDecoder(bufio.NewReaderSize(f, inputBufferSize))
	if _, err := dec.Token(); err != nil { // '{', as detectForm saw
		return syntaxError(f, in.name, dec, err)
	}

	found := false
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return syntaxError(f, in.name, dec, err)
		}
		if key != "requests" || found {
			// Unknown and repeated fields are the server's to reject.
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return syntaxError(f, in.name, dec, err)
			}
			continue
		}
		found = true
		if err := in.scanRequests(f, dec); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return syntaxError(f, in.name, dec, err)
	}

	if _, err := dec.Token(); err != io.EOF {
		if err != nil {
			return syntaxError(f, in.name, dec, err)
		}
		return fmt.Errorf("%s: unexpected data after the JSON object", in.name)
	}
	if !found {
		return fmt.Errorf("%s: the JSON object has no \"requests\" field", in.name)
	}
	return nil
}

// scanRequests checks the elements of the requests array.
func (in *input) scanRequests(f *os.File, dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return syntaxError(f, in.name, dec, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return fmt.Errorf("%s: \"requests\" must be an array", in.name)
	}

	seen := make(map[string]int)
	for index := 0; dec.More(); index++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return syntaxError(f, in.name, dec, err)
		}
		if err := checkRequest(raw, in.name, index, seen, indexLabel); err != nil {
			return err
		}
		in.count++
	}
	if _, err := dec.Token(); err != nil { // ']'
		return syntaxError(f, in.name, dec, err)
	}
	return nil
}

// checkRequest checks one request object of the input called name. pos is
// its line number or index, which label turns into words for messages. seen
// maps each custom_id so far to its pos.
func checkRequest(raw []byte, name string, pos int, seen map[string]int,
	label func(int) string) error {
	where := name + ": " + label(pos)
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return fmt.Errorf("%s: want a JSON object, got %s", where, typeErr.Value)
		}
		return fmt.Errorf("%s: invalid JSON: %w", where, err)
	}

	rawID, ok := fields["custom_id"]
	if !ok {
		return fmt.Errorf("%s: missing custom_id", where)
	}
	var id string
	if err := json.Unmarshal(rawID, &id); err != nil || rawID[0] != '"' {
		return fmt.Errorf("%s: custom_id must be a string, got %s", where, abbreviate(rawID))
	}
	if first, dup := seen[id]; dup {
		return fmt.Errorf("%s: custom_id %q is already used by %s; each custom_id must be "+
			"unique within a batch", where, id, label(first))
	}
	seen[id] = pos

	params, ok := fields["params"]
	switch {
	case !ok || string(params) == "null":
		return fmt.Errorf("%s: missing params", where)
	case params[0] != '{':
		return fmt.Errorf("%s: params must be a JSON object, got %s", where, abbreviate(params))
	}
	return nil
}

func lineLabel(line int) string   { return fmt.Sprintf("line %d", line) }
func indexLabel(index int) string { return fmt.Sprintf("requests.%d", index) }

// abbreviate shortens a JSON value for an error message.
func abbreviate(raw []byte) string {
	if len(raw) > 40 {
		return string(raw[:40]) + "…"
	}
	return string(raw)
}

// syntaxError adds a line number to an error from dec, a decoder that read
// f from its start. json.SyntaxError.Offset is not a position in the stream
// for a Decoder, so the line is that of dec.InputOffset: the start of the
// value or token that failed.
func syntaxError(f *os.File, name string, dec *json.Decoder, err error) error {
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s: invalid JSON: the input ends too early", name)
	}
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		return fmt.Errorf("%s: invalid JSON: %w", name, err)
	}

	offset := dec.InputOffset()
	line, lineErr := lineAt(f, offset)
	if lineErr != nil {
		return fmt.Errorf("%s: invalid JSON in the value at byte %d: %w", name, offset, err)
	}
	return fmt.Errorf("%s: invalid JSON in the value that starts on line %d: %w", name, line, err)
}

// lineAt returns the line number, counted from 1, of the first byte at or
// after offset in f that is not white space.
func lineAt(f *os.File, offset int64) (int, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	br := bufio.NewReaderSize(f, inputBufferSize)
	line := 1
	for pos := int64(0); ; pos++ {
		c, err := br.ReadByte()
		if err == io.EOF {
			return line, nil
		}
		if err != nil {
			return 0, err
		}
		if pos >= offset && !isSpace(c) {
			return line, nil
		}
		if c == '\n' {
			line++
		}
	}
}

// body returns the create body for the input in r, which must be at its
// start. A JSON body is sent as it is. JSONL lines are joined into
// {"requests":[line,line,...]}, each line byte for byte without its
// surrounding white space.
func (in *input) body(r io.Reader) io.Reader {
	if !in.jsonl {
		return readerOnly{r}
	}
	return &jsonlBody{src: bufio.NewReaderSize(r, inputBufferSize), want: in.count}
}

// readerOnly hides the Close method of a file, so that the HTTP client does
// not close a file that the caller owns.
type readerOnly struct {
	r io.Reader
}

func (r readerOnly) Read(p []byte) (int, error) { return r.r.Read(p) }

// jsonlBody turns a JSONL input into a create body while it is read, holding
// one line at a time.
type jsonlBody struct {
	src     *bufio.Reader
	want    int    // the number of requests scanInput counted
	pending []byte // output not yet returned by Read
	started bool
	ended   bool
	count   int
}

func (b *jsonlBody) Read(p []byte) (int, error) {
	for len(b.pending) == 0 {
		if b.ended {
			return 0, io.EOF
		}
		if err := b.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, b.pending)
	b.pending = b.pending[n:]
	return n, nil
}

// fill puts the next piece of the body into b.pending: the opening, one
// request, or the closing. A pass may add nothing, at a blank line.
func (b *jsonlBody) fill() error {
	if !b.started {
		b.started = true
		b.pending = []byte(`{"requests":[`)
		return nil
	}

	line, err := b.src.ReadBytes('\n')
	if err != nil && err != io.EOF {
		return err
	}
	if trimmed := bytes.TrimSpace(line); len(trimmed) > 0 {
		if b.count > 0 {
			b.pending = append(b.pending, ',')
		}
		b.pending = append(b.pending, trimmed...)
		b.count++
	}

	if err == io.EOF {
		if b.count != b.want {
			return fmt.Errorf("the input changed while it was sent: %d requests, "+
				"%d when it was checked", b.count, b.want)
		}
		b.pending = append(b.pending, "]}"...)
		b.ended = true
	}
	return nil
}
