package testmodel

import (
	"encoding/json"
	"testing"
)

// FuzzGenerateInput feeds arbitrary schemas to the tool input generator. It
// must not panic or loop, and whatever it returns must be a JSON object.
//
// Run it with: go test -run '^$' -fuzz FuzzGenerateInput -fuzztime 30s ./internal/backend/testmodel
func FuzzGenerateInput(f *testing.F) {
	seeds := []string{
		`{"type":"object"}`,
		`{"type":"object","properties":{"a":{"type":"string","minLength":3}},"required":["a"]}`,
		`{"anyOf":[{"$ref":"#"}]}`,
		`{"allOf":[{"$ref":"#"}],"required":["x"]}`,
		`{"type":"object","properties":{"n":{"$ref":"#"}},"required":["n"]}`,
		`{"type":"object","properties":{"a":{"type":"array","minItems":1000000,` +
			`"items":{"$ref":"#/properties/a"}}},"required":["a"]}`,
		`{"type":"object","properties":{"x":{"type":"number","multipleOf":1e-300,` +
			`"minimum":-1e308,"maximum":1e308}},"required":["x"]}`,
		`{"type":"object","properties":{"x":{"type":"integer","minimum":1e30,"maximum":-1e30}},` +
			`"required":["x"]}`,
		`{"type":"object","properties":{"e":{"enum":[]},"c":{"const":null},` +
			`"t":{"type":["null"]},"u":{"type":"array","uniqueItems":true,"minItems":5,` +
			`"items":{"type":"boolean"}}},"required":["e","c","t","u"]}`,
		`{"$ref":"#/$defs/a~1b/0","$defs":{"a/b":[{"type":"object"}]}}`,
		`true`,
		`[1,2]`,
	}
	for _, seed := range seeds {
		f.Add([]byte(seed))
	}

	f.Fuzz(func(t *testing.T, schema []byte) {
		if !json.Valid(schema) {
			return
		}
		input, err := generateInput(schema, newRNG(uint64(len(schema))))
		if err != nil {
			t.Fatalf("generateInput(%q): %v", schema, err)
		}

		var object map[string]any
		if err := json.Unmarshal(input, &object); err != nil {
			t.Fatalf("generateInput(%q) = %q, not a JSON object: %v", schema, input, err)
		}
	})
}
