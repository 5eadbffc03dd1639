package testmodel

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Limits on generated tool input. They keep the output small and stop
// recursive schemas. A schema that demands more, such as minItems over
// maxGeneratedItems, minLength over maxGeneratedString or required
// properties nested deeper than maxSchemaDepth, gets an input that does not
// fit it.
const (
	maxSchemaDepth      = 12
	maxGeneratedItems   = 64
	maxGeneratedString  = 1024
	maxRefHops          = 32
	maxGeneratedPadding = 256 << 10

	// softNodeLimit is the number of generated values after which optional
	// properties and extra array items are left out.
	softNodeLimit = 2000

	// hardNodeLimit is the number of generated values after which every
	// further value is null, so that schemas with many nested required
	// properties cannot make the input grow without bound.
	hardNodeLimit = 20000
)

// inputGenerator builds a JSON value that fits a JSON Schema. It supports the
// keywords that tool schemas use in practice. These are type (a name or a
// list), properties, required, items, prefixItems, minItems, maxItems,
// uniqueItems, enum, const, anyOf, oneOf, allOf, $ref within the document,
// minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf,
// minLength, maxLength and a few formats.
//
// NOTE: pattern, not, if/then/else, dependentRequired and
// patternProperties are ignored, so a schema that relies on them can get an
// input that does not fit it.
type inputGenerator struct {
	r     *rng
	root  any
	nodes int
	// padding is the number of bytes added so far to reach minLength.
	padding int
}

// generateInput returns a JSON object that fits schema, drawn with r.
func generateInput(schema json.RawMessage, r *rng) (json.RawMessage, error) {
	var root any
	dec := json.NewDecoder(bytes.NewReader(schema))
	dec.UseNumber()
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}

	g := &inputGenerator{r: r, root: root}
	value := g.value(root, 0)
	if _, ok := value.(map[string]any); !ok {
		value = map[string]any{}
	}

	out, err := json.Marshal(value)
	if err != nil {
		return nil, fmt.Errorf("encode input: %w", err)
	}
	return out, nil
}

// value returns a value fitting schema at the given nesting depth.
func (g *inputGenerator) value(schema any, depth int) any {
	g.nodes++
	if depth > maxSchemaDepth || g.nodes > hardNodeLimit {
		return nil
	}
	s, ok := g.resolve(schema)
	if !ok {
		// true, {} or an unresolvable $ref: anything fits.
		return g.word()
	}

	if c, ok := s["const"]; ok {
		return c
	}
	if enum, ok := s["enum"].([]any); ok && len(enum) > 0 {
		return enum[g.r.intn(len(enum))]
	}
	if all, ok := s["allOf"].([]any); ok && len(all) > 0 {
		return g.value(g.mergeAll(s, all), depth+1)
	}
	for _, key := range []string{"anyOf", "oneOf"} {
		if branches, ok := s[key].([]any); ok && len(branches) > 0 {
			return g.value(g.pickBranch(branches), depth+1)
		}
	}

	switch schemaType(s) {
	case "object":
		return g.object(s, depth)
	case "array":
		return g.array(s, depth)
	case "integer":
		return g.integer(s)
	case "number":
		return g.number(s)
	case "boolean":
		return g.r.next()&1 == 1
	case "null":
		return nil
	}
	return g.str(s)
}

// resolve follows $ref chains within the document and returns the schema
// object. It reports false for boolean schemas and unresolvable references.
func (g *inputGenerator) resolve(schema any) (map[string]any, bool) {
	for range maxRefHops {
		s, ok := schema.(map[string]any)
		if !ok {
			return nil, false
		}
		ref, ok := s["$ref"].(string)
		if !ok {
			return s, true
		}
		target, ok := g.lookup(ref)
		if !ok {
			return nil, false
		}
		schema = target
	}
	return nil, false
}

// lookup resolves a reference within the document, such as
// "#/$defs/address".
func (g *inputGenerator) lookup(ref string) (any, bool) {
	pointer, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return nil, false
	}

	node := g.root
	if pointer == "" {
		return node, true
	}
	for _, token := range strings.Split(strings.TrimPrefix(pointer, "/"), "/") {
		token = strings.ReplaceAll(strings.ReplaceAll(token, "~1", "/"), "~0", "~")
		switch n := node.(type) {
		case map[string]any:
			if node, ok = n[token]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(token)
			if err != nil || i < 0 || i >= len(n) {
				return nil, false
			}
			node = n[i]
		default:
			return nil, false
		}
	}
	return node, true
}

// mergeAll folds the allOf subschemas into one schema: their properties are
// merged, their required lists joined, and other keywords of later
// subschemas override earlier ones.
func (g *inputGenerator) mergeAll(base map[string]any, all []any) map[string]any {
	merged := make(map[string]any, len(base))
	props := map[string]any{}
	var required []any

	add := func(s map[string]any) {
		for k, v := range s {
			switch k {
			case "allOf":
			case "properties":
				if p, ok := v.(map[string]any); ok {
					for name, sub := range p {
						props[name] = sub
					}
				}
			case "required":
				if list, ok := v.([]any); ok {
					required = append(required, list...)
				}
			default:
				merged[k] = v
			}
		}
	}
	add(base)
	for _, sub := range all {
		if s, ok := g.resolve(sub); ok {
			add(s)
		}
	}

	if len(props) > 0 {
		merged["properties"] = props
	}
	if len(required) > 0 {
		merged["required"] = required
	}
	return merged
}

// pickBranch draws one branch of anyOf or oneOf, preferring branches that
// are not just {"type":"null"}.
func (g *inputGenerator) pickBranch(branches []any) any {
	var useful []any
	for _, b := range branches {
		if s, ok := g.resolve(b); ok && schemaType(s) == "null" && len(s) == 1 {
			continue
		}
		useful = append(useful, b)
	}
	if len(useful) == 0 {
		return branches[0]
	}
	return useful[g.r.intn(len(useful))]
}

// schemaType returns the type a value for s should have: the schema's type,
// the first non-null entry of a type list, or a type implied by other
// keywords.
func schemaType(s map[string]any) string {
	switch t := s["type"].(type) {
	case string:
		return t
	case []any:
		first := ""
		for _, v := range t {
			name, _ := v.(string)
			if name != "" && name != "null" {
				return name
			}
			if first == "" {
				first = name
			}
		}
		return first
	}

	switch {
	case s["properties"] != nil || s["required"] != nil:
		return "object"
	case s["items"] != nil || s["prefixItems"] != nil:
		return "array"
	case s["minimum"] != nil || s["maximum"] != nil:
		return "number"
	}
	return "string"
}

// object returns an object with every required property and, unless the
// schema is deep or large, a random half of the optional ones.
func (g *inputGenerator) object(s map[string]any, depth int) map[string]any {
	out := map[string]any{}
	props, _ := s["properties"].(map[string]any)

	required := map[string]bool{}
	if list, ok := s["required"].([]any); ok {
		for _, v := range list {
			if name, ok := v.(string); ok {
				required[name] = true
			}
		}
	}

	// Map order is random in Go, so the names are sorted to keep the
	// draws deterministic.
	names := make([]string, 0, len(props)+len(required))
	for name := range props {
		names = append(names, name)
	}
	for name := range required {
		if _, ok := props[name]; !ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)

	for _, name := range names {
		if !required[name] && (g.tooBig(depth) || g.r.next()&1 == 0) {
			continue
		}
		if depth >= maxSchemaDepth {
			out[name] = nil
			continue
		}
		var sub any = true
		if p, ok := props[name]; ok {
			sub = p
		}
		out[name] = g.value(sub, depth+1)
	}
	return out
}

func (g *inputGenerator) tooBig(depth int) bool {
	return depth >= maxSchemaDepth || g.nodes >= softNodeLimit
}

func (g *inputGenerator) array(s map[string]any, depth int) []any {
	minItems := intKeyword(s, "minItems", 0)
	maxItems := intKeyword(s, "maxItems", minItems+3)
	n := minItems
	if !g.tooBig(depth) && maxItems > minItems {
		n += g.r.intn(min(maxItems, minItems+3) - minItems + 1)
	}
	n = min(n, maxGeneratedItems)

	prefix, _ := s["prefixItems"].([]any)
	var items any = true
	if it, ok := s["items"]; ok {
		items = it
	}
	unique, _ := s["uniqueItems"].(bool)

	out := make([]any, 0, n)
	seen := map[string]bool{}
	// Unique items may need more draws than n; a few extra tries are enough
	// for practical schemas, and a too-small enum ends the loop early.
	for tries := 0; len(out) < n && tries < 4*n+4; tries++ {
		sub := items
		if len(out) < len(prefix) {
			sub = prefix[len(out)]
		}
		v := g.value(sub, depth+1)
		if unique {
			key, _ := json.Marshal(v)
			if seen[string(key)] {
				continue
			}
			seen[string(key)] = true
		}
		out = append(out, v)
	}
	return out
}

// bounds returns the inclusive range a number for s must lie in, with the
// given defaults for missing bounds. Exclusive bounds are moved inward by
// step, which is 1 for integers.
func bounds(s map[string]any, lo, hi, step float64) (float64, float64) {
	if v, ok := number(s["minimum"]); ok {
		lo = v
		if s["exclusiveMinimum"] == true {
			lo += step
		}
		if hi < lo {
			hi = lo + 100
		}
	}
	if v, ok := number(s["maximum"]); ok {
		hi = v
		if s["exclusiveMaximum"] == true {
			hi -= step
		}
		if lo > hi {
			lo = hi - 100
		}
	}
	if v, ok := number(s["exclusiveMinimum"]); ok {
		lo = math.Max(lo, v+step)
		hi = math.Max(hi, lo)
	}
	if v, ok := number(s["exclusiveMaximum"]); ok {
		hi = math.Min(hi, v-step)
		lo = math.Min(lo, hi)
	}
	return lo, hi
}

// maxExactInt bounds generated numbers to the range where float64 holds
// every integer exactly.
const maxExactInt = 1 << 53

func (g *inputGenerator) integer(s map[string]any) int64 {
	lo, hi := bounds(s, 0, 100, 1)
	lo = math.Max(math.Ceil(lo), -maxExactInt)
	hi = math.Min(math.Floor(hi), maxExactInt)

	if m, ok := number(s["multipleOf"]); ok && m >= 1 && m == math.Trunc(m) {
		first, last := math.Ceil(lo/m), math.Floor(hi/m)
		if first <= last {
			k := first + float64(g.r.intn(int(math.Min(last-first, 1000))+1))
			return int64(k * m)
		}
	}
	if hi < lo {
		return int64(lo)
	}
	span := math.Min(hi-lo, 1<<30)
	return int64(lo) + int64(g.r.intn(int(span)+1))
}

func (g *inputGenerator) number(s map[string]any) float64 {
	lo, hi := bounds(s, 0, 100, 0.01)
	lo = math.Max(lo, -maxExactInt)
	hi = math.Min(hi, maxExactInt)

	if m, ok := number(s["multipleOf"]); ok && m > 0 {
		// A tiny multipleOf can push the quotients beyond float64; such a
		// schema falls through to a plain number in range.
		first, last := math.Ceil(lo/m), math.Floor(hi/m)
		if first <= last && !math.IsInf(first, 0) && !math.IsInf(last, 0) {
			k := first + float64(g.r.intn(int(math.Min(last-first, 1000))+1))
			// Rounding to the decimals of multipleOf removes float noise
			// such as 0.30000000000000004 for 3 × 0.1.
			scale := math.Pow(10, float64(decimals(s["multipleOf"])))
			if v := math.Round(k*m*scale) / scale; !math.IsInf(v, 0) && !math.IsNaN(v) {
				return v
			}
		}
	}
	if hi <= lo {
		return lo
	}
	// Two decimals keep the value readable. Rounding is skipped when it
	// would leave the range, which only bounds with more decimals can cause.
	v := lo + g.r.float()*(hi-lo)
	if rounded := math.Round(v*100) / 100; rounded >= lo && rounded <= hi {
		return rounded
	}
	return v
}

func (g *inputGenerator) str(s map[string]any) string {
	var v string
	switch format, _ := s["format"].(string); format {
	case "date-time":
		v = fmt.Sprintf("2025-%02d-%02dT%02d:%02d:00Z", 1+g.r.intn(12), 1+g.r.intn(28),
			g.r.intn(24), g.r.intn(60))
	case "date":
		v = fmt.Sprintf("2025-%02d-%02d", 1+g.r.intn(12), 1+g.r.intn(28))
	case "time":
		v = fmt.Sprintf("%02d:%02d:00Z", g.r.intn(24), g.r.intn(60))
	case "email":
		v = g.word() + "@example.com"
	case "uri", "url", "iri":
		v = "https://example.com/" + g.word()
	case "hostname":
		v = g.word() + ".example.com"
	case "ipv4":
		v = fmt.Sprintf("192.0.2.%d", 1+g.r.intn(254))
	case "uuid":
		a, b := g.r.next(), g.r.next()
		v = fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", a>>32, a>>16&0xffff, a&0xfff,
			b>>48&0xfff, b&0xffffffffffff)
	default:
		v = g.word()
	}

	// Lengths count characters, and every character generated here is ASCII.
	minLen := min(intKeyword(s, "minLength", 0), maxGeneratedString)
	if len(v) < minLen && g.padding < maxGeneratedPadding {
		g.padding += minLen - len(v)
		v += strings.Repeat("x", minLen-len(v))
	}
	if maxLen := intKeyword(s, "maxLength", -1); maxLen >= 0 && len(v) > maxLen {
		v = v[:maxLen]
	}
	return v
}

func (g *inputGenerator) word() string {
	return words[g.r.intn(len(words))]
}

// number converts a decoded JSON number to float64.
func number(v any) (float64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := n.Float64()
	return f, err == nil
}

// decimals returns the number of digits after the decimal point of a decoded
// JSON number, such as 2 for 0.25.
func decimals(v any) int {
	n, _ := v.(json.Number)
	text := strings.ToLower(string(n))
	if strings.Contains(text, "e") {
		return 15
	}
	_, frac, _ := strings.Cut(text, ".")
	return min(len(frac), 15)
}

// intKeyword returns the non-negative integer keyword key of s, or def.
func intKeyword(s map[string]any, key string, def int) int {
	f, ok := number(s[key])
	if !ok || f < 0 {
		return def
	}
	return int(math.Min(f, math.MaxInt32))
}
