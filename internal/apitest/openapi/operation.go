package openapi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	liberrors "github.com/pb33f/libopenapi-validator/errors"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
)

// betaQuery is the query string that the document appends to the path keys
// of its beta operations, for example "/v1/messages/batches?beta=true".
const betaQuery = "beta=true"

// jsonlMediaType is the media type of the results file.
const jsonlMediaType = "application/x-jsonl"

// operation is the path item of the document that one request addresses.
type operation struct {
	// key is the path key in the document, with "?beta=true" if any.
	key string

	// template is key without its query string, for example
	// "/v1/messages/batches/{message_batch_id}".
	template string

	item *v3.PathItem
}

// Request checks req against the operation of the document that its method
// and path address: path, query and header parameters and the request body.
// A request with the query parameter beta=true is checked against the
// ?beta=true operation. The body of req is read and replaced, so the caller
// can still send or read it.
func (v *Validator) Request(req *http.Request) error {
	op, err := v.spec.findOperation(req)
	if err != nil {
		return err
	}

	_, restore, err := bufferBody(&req.Body)
	if err != nil {
		return fmt.Errorf("read request body: %w", err)
	}
	defer restore()

	v.spec.mu.Lock()
	valid, results := v.spec.http.ValidateHttpRequestSyncWithPathItem(req, op.item, op.template)
	v.spec.mu.Unlock()

	if valid {
		return nil
	}
	label := fmt.Sprintf("request %s %s", req.Method, op.key)
	return operationError(label, requestSchemaName(op, req.Method), results)
}

// Response checks resp, the response to req, against the operation that req
// addresses (see [Validator.Request]): the status code must be declared, the
// Content-Type must match a declared media type and the body must match its
// schema. A results file (application/x-jsonl) is checked line by line as in
// [Validator.Results]. The body of resp is read and replaced, so the caller
// can still read it.
func (v *Validator) Response(req *http.Request, resp *http.Response) error {
	op, err := v.spec.findOperation(req)
	if err != nil {
		return err
	}

	body, restore, err := bufferBody(&resp.Body)
	if err != nil {
		return fmt.Errorf("read response body: %w", err)
	}
	defer restore()

	label := fmt.Sprintf("response %d to %s %s", resp.StatusCode, req.Method, op.key)
	declared := declaredResponse(op, req.Method, resp)
	if declared != nil && declared.mediaType == jsonlMediaType {
		return v.checkJSONL(label, declared, body)
	}

	// The validator skips an empty body and a JSON null and reports success.
	if declared != nil && len(bytes.TrimSpace(body)) == 0 {
		return fmt.Errorf("%s does not match the document: body is empty, want %s",
			label, declared.schemaName)
	}
	if declared != nil && string(bytes.TrimSpace(body)) == "null" {
		return fmt.Errorf("%s does not match the document: body is JSON null, want %s",
			label, declared.schemaName)
	}

	v.spec.mu.Lock()
	valid, results := v.spec.http.GetResponseBodyValidator().
		ValidateResponseBodyWithPathItem(req, resp, op.item, op.template)
	v.spec.mu.Unlock()

	if valid {
		return nil
	}
	schemaName := "response body"
	if declared != nil {
		schemaName = declared.schemaName
	}
	return operationError(label, schemaName, results)
}

// findOperation picks the path item whose template matches the path of req,
// preferring the ?beta=true variant when req has beta=true in its query and
// the most literal segments when several templates match.
func (s *spec) findOperation(req *http.Request) (*operation, error) {
	wantBeta := req.URL.Query().Get("beta") == "true"
	segments := strings.Split(req.URL.Path, "/")

	var best *operation
	bestScore := -1
	for pair := s.model.Paths.PathItems.First(); pair != nil; pair = pair.Next() {
		template, query, _ := strings.Cut(pair.Key(), "?")
		if query != "" && query != betaQuery {
			continue
		}

		literals, ok := matchTemplate(strings.Split(template, "/"), segments)
		if !ok {
			continue
		}

		// The beta variant outranks any difference in literal segments.
		score := literals
		if (query == betaQuery) == wantBeta {
			score += 1000
		}
		if score > bestScore {
			best = &operation{key: pair.Key(), template: template, item: pair.Value()}
			bestScore = score
		}
	}

	if best == nil {
		return nil, fmt.Errorf("no path of %s matches %s %s", s.source, req.Method, req.URL.Path)
	}
	if best.item.GetOperations().GetOrZero(strings.ToLower(req.Method)) == nil {
		return nil, fmt.Errorf("path %s of %s has no %s operation", best.key, s.source, req.Method)
	}
	return best, nil
}

// matchTemplate reports whether path segments match template segments, in
// which "{name}" matches any one non-empty segment, and counts the literal
// segments that matched.
func matchTemplate(template, path []string) (int, bool) {
	if len(template) != len(path) {
		return 0, false
	}

	literals := 0
	for i, want := range template {
		if strings.HasPrefix(want, "{") && strings.HasSuffix(want, "}") {
			if path[i] == "" {
				return 0, false
			}
			continue
		}
		if want != path[i] {
			return 0, false
		}
		literals++
	}
	return literals, true
}

// responseDeclaration is the media type that an operation declares for one
// status code and the Content-Type of one response.
type responseDeclaration struct {
	mediaType  string
	schemaName string
	content    *v3.MediaType
}

// declaredResponse returns the declaration matching the status code and
// Content-Type of resp, or nil if the operation declares none.
func declaredResponse(op *operation, method string, resp *http.Response) *responseDeclaration {
	operation := op.item.GetOperations().GetOrZero(strings.ToLower(method))
	if operation == nil || operation.Responses == nil {
		return nil
	}
	response := operation.Responses.Codes.GetOrZero(strconv.Itoa(resp.StatusCode))
	if response == nil || response.Content == nil {
		return nil
	}

	mediaType, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil {
		return nil
	}
	content := response.Content.GetOrZero(mediaType)
	if content == nil || content.Schema == nil {
		return nil
	}
	return &responseDeclaration{
		mediaType:  mediaType,
		schemaName: schemaName(content, fmt.Sprintf("inline %d response schema", resp.StatusCode)),
		content:    content,
	}
}

// requestSchemaName names the request body schema of an operation.
func requestSchemaName(op *operation, method string) string {
	operation := op.item.GetOperations().GetOrZero(strings.ToLower(method))
	if operation == nil || operation.RequestBody == nil || operation.RequestBody.Content == nil {
		return "request body"
	}
	content := operation.RequestBody.Content.GetOrZero("application/json")
	if content == nil {
		return "request body"
	}
	return schemaName(content, "inline request body schema")
}

// schemaName returns the component name that content's schema refers to, or
// fallback for an inline schema.
func schemaName(content *v3.MediaType, fallback string) string {
	reference := content.Schema.GetReference()
	if reference == "" {
		return fallback
	}
	return reference[strings.LastIndex(reference, "/")+1:]
}

// checkJSONL checks a results file line by line against the schema declared
// for it.
func (v *Validator) checkJSONL(label string, declared *responseDeclaration, body []byte) error {
	v.spec.mu.Lock()
	schema, err := declared.content.Schema.BuildSchema()
	v.spec.mu.Unlock()
	if err != nil {
		return fmt.Errorf("build schema %s: %w", declared.schemaName, err)
	}

	checkLine := func(line []byte) error {
		return v.spec.check(schema, declared.schemaName, line)
	}
	if err := checkLines(body, checkLine); err != nil {
		return fmt.Errorf("%s does not match the document:\n%w", label, err)
	}
	return nil
}

// operationError turns the validator's results into one error per problem,
// with schema violations listed by JSONPath. bodySchema names the schema
// that a body violation refers to.
func operationError(label, bodySchema string, results []*liberrors.ValidationError) error {
	errs := make([]error, 0, len(results))
	for _, result := range results {
		violations, ok := resultViolations(result)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: %s", result.Message, result.Reason))
			continue
		}

		schema := bodySchema
		if result.ParameterName != "" {
			schema = "parameter " + result.ParameterName
		}
		schemaErr := &SchemaError{Schema: schema, Violations: violations}
		errs = append(errs, fmt.Errorf("%s: %w", result.Message, schemaErr))
	}
	return fmt.Errorf("%s does not match the document:\n%w", label, errors.Join(errs...))
}

// bufferBody reads *body to the end and puts a reader over the same bytes in
// its place. The returned restore func does that again, for after a
// validator has read the body. A nil body and http.NoBody are left alone.
func bufferBody(body *io.ReadCloser) ([]byte, func(), error) {
	if *body == nil || *body == http.NoBody {
		return nil, func() {}, nil
	}

	data, err := io.ReadAll(*body)
	closeErr := (*body).Close()
	restore := func() { *body = io.NopCloser(bytes.NewReader(data)) }
	restore()
	if err != nil {
		return nil, restore, err
	}
	return data, restore, closeErr
}
