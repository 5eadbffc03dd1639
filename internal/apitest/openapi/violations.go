package openapi

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pb33f/jsonschema/v6"
	"github.com/pb33f/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Violation is one schema rule that one value of a JSON document breaks.
type Violation struct {
	// Path is the JSONPath of the offending value, "$" for the document
	// itself, for example "$.result.error.type".
	Path string

	// Keyword is the location of the failed keyword inside the compiled
	// schema, for example "/properties/processing_status/enum".
	Keyword string

	// Message describes the problem, for example "missing property 'id'".
	Message string
}

// String formats v as "path: message".
func (v Violation) String() string {
	return v.Path + ": " + v.Message
}

// SchemaError lists every violation of one JSON document against one schema.
type SchemaError struct {
	// Schema names the schema, usually a component name such as
	// "MessageBatch".
	Schema string

	// Violations are sorted by path, then by message.
	Violations []Violation
}

// Error lists the violations one per line.
func (e *SchemaError) Error() string {
	var b strings.Builder
	noun := "violations"
	if len(e.Violations) == 1 {
		noun = "violation"
	}
	fmt.Fprintf(&b, "document does not match schema %s (%d %s):",
		e.Schema, len(e.Violations), noun)
	for _, v := range e.Violations {
		b.WriteString("\n  ")
		b.WriteString(v.String())
	}
	return b.String()
}

var printer = message.NewPrinter(language.English)

// collectViolations flattens the error tree of one failed validation into a
// sorted list of leaf violations, without the branches of a oneOf or anyOf
// that the document clearly did not choose (see chosenBranches).
func collectViolations(root *jsonschema.ValidationError) []Violation {
	var out []Violation
	walkViolations(root, &out)

	slices.SortFunc(out, func(a, b Violation) int {
		return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.Message, b.Message))
	})
	return slices.Compact(out)
}

func walkViolations(e *jsonschema.ValidationError, out *[]Violation) {
	switch e.ErrorKind.(type) {
	case *kind.OneOf, *kind.AnyOf:
		if len(e.Causes) == 0 {
			// oneOf matched two branches: the node itself is the violation.
			*out = append(*out, leafViolation(e))
			return
		}
		branches, chosen := chosenBranches(e)
		if !chosen {
			*out = append(*out, mergeMismatches(e)...)
			return
		}
		for _, branch := range branches {
			walkViolations(branch, out)
		}
		return
	}

	if len(e.Causes) == 0 {
		*out = append(*out, leafViolation(e))
		return
	}
	for _, cause := range e.Causes {
		walkViolations(cause, out)
	}
}

// chosenBranches returns the failed branches of a oneOf or anyOf that the
// document could have meant, and whether there is any.
//
// JSON Schema validators ignore the OpenAPI discriminator and report why
// every branch failed, which for a result line or a content block buries the
// one relevant problem under a dozen "value must be 'thinking'" lines. A
// branch is dropped when it rejects the union's own value by type, const or
// enum (a string where the branch wants null), or rejects a direct property
// by const or enum (the "type" tag of a tagged union). Every discriminator
// of this document names such a direct property.
func chosenBranches(union *jsonschema.ValidationError) ([]*jsonschema.ValidationError, bool) {
	var plausible []*jsonschema.ValidationError
	for _, branch := range union.Causes {
		if len(mismatchLeaves(branch, union.InstanceLocation)) == 0 {
			plausible = append(plausible, branch)
		}
	}
	return plausible, len(plausible) > 0
}

// mergeMismatches describes a oneOf or anyOf that no branch accepts: one
// violation per offending value, listing what the branches want there, for
// example `got "done", want one of "succeeded", "errored"`.
func mergeMismatches(union *jsonschema.ValidationError) []Violation {
	keyword := leafViolation(union).Keyword

	type mismatch struct {
		path  []string
		got   string
		wants []string
	}
	var merged []*mismatch
	for _, branch := range union.Causes {
		for _, leaf := range mismatchLeaves(branch, union.InstanceLocation) {
			got, wants := describeMismatch(leaf)
			i := slices.IndexFunc(merged, func(m *mismatch) bool {
				return slices.Equal(m.path, leaf.InstanceLocation)
			})
			if i < 0 {
				merged = append(merged, &mismatch{path: leaf.InstanceLocation})
				i = len(merged) - 1
			}

			// A const or enum names the value itself, a type only its kind.
			if _, isType := leaf.ErrorKind.(*kind.Type); !isType || merged[i].got == "" {
				merged[i].got = got
			}
			for _, want := range wants {
				if !slices.Contains(merged[i].wants, want) {
					merged[i].wants = append(merged[i].wants, want)
				}
			}
		}
	}

	out := make([]Violation, 0, len(merged))
	for _, m := range merged {
		out = append(out, Violation{
			Path:    jsonPath(m.path),
			Keyword: keyword,
			Message: fmt.Sprintf("got %s, want one of %s", m.got, strings.Join(m.wants, ", ")),
		})
	}
	return out
}

// describeMismatch returns the value a type, const or enum error got and the
// values or types it wanted, values as JSON and types by name.
func describeMismatch(e *jsonschema.ValidationError) (string, []string) {
	switch k := e.ErrorKind.(type) {
	case *kind.Type:
		return k.Got, k.Want
	case *kind.Const:
		return jsonText(k.Got), []string{jsonText(k.Want)}
	case *kind.Enum:
		wants := make([]string, 0, len(k.Want))
		for _, want := range k.Want {
			wants = append(wants, jsonText(want))
		}
		return jsonText(k.Got), wants
	}
	return "", []string{e.ErrorKind.LocalizedString(printer)}
}

func jsonText(value any) string {
	data, err := json.Marshal(value)
	if err != nil {
		return fmt.Sprint(value)
	}
	return string(data)
}

// mismatchLeaves returns the leaf errors of branch that reject the union
// value at location outright: a type, const or enum error at location, or a
// const or enum error on one of its direct properties.
func mismatchLeaves(branch *jsonschema.ValidationError, location []string) []*jsonschema.ValidationError {
	var out []*jsonschema.ValidationError
	var visit func(e *jsonschema.ValidationError)
	visit = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, cause := range e.Causes {
				visit(cause)
			}
			return
		}

		if len(e.InstanceLocation) < len(location) ||
			!slices.Equal(e.InstanceLocation[:len(location)], location) {
			return
		}
		depth := len(e.InstanceLocation) - len(location)
		switch e.ErrorKind.(type) {
		case *kind.Type:
			if depth == 0 {
				out = append(out, e)
			}
		case *kind.Const, *kind.Enum:
			if depth <= 1 {
				out = append(out, e)
			}
		}
	}
	visit(branch)
	return out
}

func leafViolation(e *jsonschema.ValidationError) Violation {
	keyword := e.SchemaURL
	if _, fragment, ok := strings.Cut(keyword, "#"); ok {
		keyword = fragment
	}
	if path := e.ErrorKind.KeywordPath(); len(path) > 0 {
		keyword += "/" + strings.Join(path, "/")
	}

	return Violation{
		Path:    jsonPath(e.InstanceLocation),
		Keyword: keyword,
		Message: e.ErrorKind.LocalizedString(printer),
	}
}

// jsonPath renders instance location tokens as a JSONPath such as
// "$.content[0].type". A token made of digits is written as an array index,
// because the validator does not say whether its parent is an array.
func jsonPath(tokens []string) string {
	var b strings.Builder
	b.WriteString("$")
	for _, token := range tokens {
		if _, err := strconv.Atoi(token); err == nil {
			b.WriteString("[" + token + "]")
			continue
		}
		if isIdentifier(token) {
			b.WriteString("." + token)
			continue
		}
		b.WriteString("[" + strconv.Quote(token) + "]")
	}
	return b.String()
}

func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		isLetter := c == '_' || (c|0x20) >= 'a' && (c|0x20) <= 'z'
		isDigit := c >= '0' && c <= '9'
		if !isLetter && !(isDigit && i > 0) {
			return false
		}
	}
	return true
}
