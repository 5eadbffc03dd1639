// Package messagestest checks JSON documents against the schemas of the
// Claude API's OpenAPI document, for tests of code that builds API responses.
//
// The OpenAPI document is the one that github.com/anthropics/anthropic-sdk-go
// v2.17.0 ships as scripts/mock-spec.json.gz; the SDK generates its types and
// mock server from it. The module is a requirement of this repository, so
// "go mod download" fetches it. Tests skip when it is not in the module cache.
package messagestest

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pb33f/jsonschema/v6"
)

// SDKModule is the module whose OpenAPI document the checks use.
const SDKModule = "github.com/anthropics/anthropic-sdk-go/v2@v2.17.0"

// specURL is the name the OpenAPI document is registered under in the schema
// compiler. Schemas are addressed as specURL + "#/components/schemas/Name".
const specURL = "file:///anthropic-openapi.json"

var spec struct {
	once     sync.Once
	compiler *jsonschema.Compiler
	err      error

	mu      sync.Mutex
	schemas map[string]*jsonschema.Schema
}

// ValidateJSON checks doc against the component schema name of the OpenAPI
// document, such as "Message" or "ErrorResponse", and returns a description
// of every violation, or nil. It skips tb when the SDK module is not in the
// module cache.
func ValidateJSON(tb testing.TB, name string, doc []byte) error {
	tb.Helper()

	schema := loadSchema(tb, name)
	value, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return fmt.Errorf("decode document: %w", err)
	}
	return schema.Validate(value)
}

func loadSchema(tb testing.TB, name string) *jsonschema.Schema {
	tb.Helper()

	spec.once.Do(func() {
		spec.compiler, spec.err = newCompiler()
		spec.schemas = make(map[string]*jsonschema.Schema)
	})
	if spec.err != nil {
		tb.Skipf("OpenAPI document not available: %v", spec.err)
	}

	spec.mu.Lock()
	defer spec.mu.Unlock()

	if schema, ok := spec.schemas[name]; ok {
		return schema
	}
	schema, err := spec.compiler.Compile(specURL + "#/components/schemas/" + name)
	if err != nil {
		tb.Fatalf("compile schema %q: %v", name, err)
	}
	spec.schemas[name] = schema
	return schema
}

func newCompiler() (*jsonschema.Compiler, error) {
	path, err := specPath()
	if err != nil {
		return nil, err
	}

	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open OpenAPI document: %w", err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	doc, err := jsonschema.UnmarshalJSON(gz)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}

	// OpenAPI 3.1 schemas are JSON Schema 2020-12. Keywords that only
	// OpenAPI defines, such as discriminator, are ignored by the compiler.
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(specURL, doc); err != nil {
		return nil, fmt.Errorf("add OpenAPI document: %w", err)
	}
	return c, nil
}

// specPath returns the path of the gzipped OpenAPI document in the module
// cache.
func specPath() (string, error) {
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMODCACHE: %w", err)
	}
	cache := strings.TrimSpace(string(out))

	path := filepath.Join(cache, filepath.FromSlash(SDKModule), "scripts", "mock-spec.json.gz")
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("%w; run: go mod download %s", err, SDKModule)
	}
	return path, nil
}
