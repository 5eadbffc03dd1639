package openapi

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/cache"
	"github.com/pb33f/libopenapi-validator/config"
	liberrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	"github.com/pb33f/libopenapi/datamodel"
	"github.com/pb33f/libopenapi/datamodel/high/base"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
	"github.com/pb33f/libopenapi/orderedmap"
)

// SpecEnv names an environment variable that, when set, gives the path of the
// OpenAPI document to load (gzip-compressed or plain JSON). Without it, Load
// runs "go list -m" to find the folder of [SDKModule] and reads [SpecFile]
// there, so the go command must be on PATH, as it is under go test.
const SpecEnv = "BATCHD_OPENAPI_SPEC"

// SDKModule is the Go module that ships the OpenAPI document. Its version is
// the one go.mod requires.
const SDKModule = "github.com/anthropics/anthropic-sdk-go/v2"

// SpecFile is the path of the OpenAPI document inside [SDKModule].
const SpecFile = "scripts/mock-spec.json.gz"

var (
	loadOnce   sync.Once
	loadedSpec *spec
	loadErr    error
)

// Load returns the validator for the OpenAPI document, parsing the document
// on the first call in the process and sharing the result afterwards. It
// fails tb if the document cannot be found or parsed, and every later call
// fails its test the same way.
func Load(tb testing.TB) *Validator {
	tb.Helper()

	loadOnce.Do(func() {
		loadedSpec, loadErr = loadSpec()
	})
	if loadErr != nil {
		tb.Fatalf("load OpenAPI document: %v", loadErr)
	}
	return &Validator{spec: loadedSpec}
}

// Validator checks JSON bodies against the schemas of the OpenAPI document.
// It is safe for concurrent use. The zero value is not usable, so call
// [Load] to get one.
type Validator struct {
	spec *spec

	// beta selects the Beta* schema of each helper method.
	beta bool
}

// spec is the parsed document, shared by every Validator of the process.
type spec struct {
	// source names the file the document was read from, for messages.
	source string

	document libopenapi.Document
	model    *v3.Document

	// mu serializes every call into libopenapi and its validator. Both build
	// and cache models lazily, and neither documents its types as safe for
	// concurrent use.
	mu         sync.Mutex
	schemas    schema_validation.SchemaValidator
	components map[string]*base.Schema

	// http checks requests and responses against a path item that the
	// caller finds. It is built over a copy of the model without paths,
	// because a validator built over paths compiles the schemas of all
	// their operations up front. For the 443 operations of this document
	// that took about 50 s in one run, against under 1 s for parsing. Built
	// this way, it compiles each schema when first used.
	http validator.Validator
}

// Source returns the path of the OpenAPI document the validator uses.
func (v *Validator) Source() string {
	return v.spec.source
}

// Beta returns a validator whose helper methods use the Beta* schemas, which
// describe the responses of the ?beta=true operations. [Validator.Validate],
// [Validator.Request] and [Validator.Response] behave the same on both.
func (v *Validator) Beta() *Validator {
	return &Validator{spec: v.spec, beta: true}
}

// Validate checks body against the component schema called schemaName, for
// example "MessageBatch" or "BetaMessageBatchIndividualResponse". It returns
// a [*SchemaError] listing every violation, or another error if body is not
// JSON or the schema does not exist.
func (v *Validator) Validate(schemaName string, body []byte) error {
	schema, err := v.spec.component(schemaName)
	if err != nil {
		return err
	}
	return v.spec.check(schema, schemaName, body)
}

// Batch checks a MessageBatch object, the response of create, retrieve and
// cancel.
func (v *Validator) Batch(body []byte) error {
	return v.Validate(v.name("MessageBatch"), body)
}

// Page checks a page of the list operation (ListResponse_MessageBatch_).
func (v *Validator) Page(body []byte) error {
	return v.Validate(v.name("ListResponse_MessageBatch_"), body)
}

// Error checks an error envelope (ErrorResponse).
func (v *Validator) Error(body []byte) error {
	return v.Validate(v.name("ErrorResponse"), body)
}

// ResultLine checks one line of a results file
// (MessageBatchIndividualResponse).
func (v *Validator) ResultLine(line []byte) error {
	return v.Validate(v.name("MessageBatchIndividualResponse"), line)
}

// Deleted checks the response of delete (DeleteMessageBatchResponse).
func (v *Validator) Deleted(body []byte) error {
	return v.Validate(v.name("DeleteMessageBatchResponse"), body)
}

// Message checks a Message object, as embedded in a succeeded result line.
func (v *Validator) Message(body []byte) error {
	return v.Validate(v.name("Message"), body)
}

// Results checks a whole results file: every line against the schema of
// [Validator.ResultLine]. It also rejects an empty file, a blank line and a
// line ending in "\r", because the official TypeScript and Python SDKs fail
// on blank lines and the Python SDK fails on a "\r\n" split across reads.
// The errors name their 1-based line numbers.
func (v *Validator) Results(body []byte) error {
	return checkLines(body, v.ResultLine)
}

// checkLines splits a JSONL body into lines and checks each with checkLine.
func checkLines(body []byte, checkLine func(line []byte) error) error {
	if len(body) == 0 {
		return errors.New("results file is empty, want one line per request")
	}

	lines := bytes.Split(bytes.TrimSuffix(body, []byte("\n")), []byte("\n"))
	var errs []error
	for i, line := range lines {
		switch {
		case len(line) == 0:
			errs = append(errs, fmt.Errorf("line %d: blank line", i+1))
		case bytes.HasSuffix(line, []byte("\r")):
			errs = append(errs, fmt.Errorf("line %d: ends in \\r\\n, want \\n", i+1))
		default:
			if err := checkLine(line); err != nil {
				errs = append(errs, fmt.Errorf("line %d: %w", i+1, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (v *Validator) name(schemaName string) string {
	if v.beta {
		return "Beta" + schemaName
	}
	return schemaName
}

func loadSpec() (*spec, error) {
	path, err := specPath()
	if err != nil {
		return nil, err
	}

	data, err := readSpec(path)
	if err != nil {
		return nil, err
	}

	discard := slog.New(slog.DiscardHandler)
	documentConfig := datamodel.NewDocumentConfiguration()
	documentConfig.Logger = discard
	document, err := libopenapi.NewDocumentWithConfiguration(data, documentConfig)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}

	model, err := document.BuildV3Model()
	if err != nil {
		return nil, fmt.Errorf("build model of %s: %w", path, err)
	}

	// The two validators below share these caches, so that each schema is
	// rendered and compiled once per process.
	options := []config.Option{
		config.WithFormatAssertions(),
		config.WithRegexEngine(compileECMARegexp),
		config.WithLogger(discard),
		config.WithSchemaCache(cache.NewDefaultCache()),
		config.WithSchemaResourceCache(cache.NewDefaultSchemaResourceCache()),
	}
	withoutPaths := model.Model
	withoutPaths.Paths = &v3.Paths{PathItems: orderedmap.New[string, *v3.PathItem]()}

	return &spec{
		source:     path,
		document:   document,
		model:      &model.Model,
		schemas:    schema_validation.NewSchemaValidatorWithLogger(discard, options...),
		components: make(map[string]*base.Schema),
		http:       validator.NewValidatorFromV3Model(&withoutPaths, options...),
	}, nil
}

func specPath() (string, error) {
	if path := os.Getenv(SpecEnv); path != "" {
		return path, nil
	}

	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", SDKModule)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("find module %s with go list (set %s to skip it): %w: %s",
			SDKModule, SpecEnv, err, strings.TrimSpace(stderr.String()))
	}

	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", fmt.Errorf("module %s is not downloaded: run go mod download %s",
			SDKModule, SDKModule)
	}
	return filepath.Join(dir, SpecFile), nil
}

// readSpec reads the document at path, decompressing it if it starts with
// the gzip magic bytes.
func readSpec(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read OpenAPI document: %w", err)
	}
	if !bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		return data, nil
	}

	reader, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("decompress %s: %w", path, err)
	}
	defer reader.Close()

	plain, err := io.ReadAll(reader)
	if err != nil {
		return nil, fmt.Errorf("decompress %s: %w", path, err)
	}
	return plain, nil
}

// component returns the built component schema called name.
func (s *spec) component(name string) (*base.Schema, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	if schema, ok := s.components[name]; ok {
		return schema, nil
	}

	proxy, ok := s.model.Components.Schemas.Get(name)
	if !ok {
		return nil, fmt.Errorf("schema %q not found in components.schemas of %s", name, s.source)
	}
	schema, err := proxy.BuildSchema()
	if err != nil {
		return nil, fmt.Errorf("build schema %q: %w", name, err)
	}

	s.components[name] = schema
	return schema, nil
}

// check validates body against schema, called label in messages.
func (s *spec) check(schema *base.Schema, label string, body []byte) error {
	var document any
	if err := json.Unmarshal(body, &document); err != nil {
		return fmt.Errorf("decode JSON for schema %s: %w", label, err)
	}

	// The validator skips a nil document and reports success, so a JSON
	// null would pass every schema.
	if document == nil {
		return fmt.Errorf("document is JSON null, want a value of schema %s", label)
	}

	s.mu.Lock()
	valid, results := s.schemas.ValidateSchemaObject(schema, document)
	s.mu.Unlock()

	if valid {
		return nil
	}
	return schemaError(label, results)
}

// schemaError turns the validator's results into a *SchemaError, or into a
// plain error when the schema itself could not be compiled.
func schemaError(label string, results []*liberrors.ValidationError) error {
	var errs []error
	for _, result := range results {
		if violations, ok := resultViolations(result); ok {
			return &SchemaError{Schema: label, Violations: violations}
		}
		errs = append(errs, fmt.Errorf("schema %s: %s: %s", label, result.Message, result.Reason))
	}

	if len(errs) == 0 {
		return fmt.Errorf("schema %s: validation failed without a reason", label)
	}
	return errors.Join(errs...)
}

// resultViolations returns the violations of a failed schema validation, or
// false if result does not come from one.
func resultViolations(result *liberrors.ValidationError) ([]Violation, bool) {
	for _, failure := range result.SchemaValidationErrors {
		// Every failure points at the same root of the error tree.
		if failure.OriginalJsonSchemaError != nil {
			return collectViolations(failure.OriginalJsonSchemaError), true
		}
	}
	return nil, false
}
