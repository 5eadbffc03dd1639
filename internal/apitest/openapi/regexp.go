package openapi

import (
	"regexp"
	"strings"

	"github.com/pb33f/jsonschema/v6"
)

// compileECMARegexp compiles a JSON Schema "pattern" with Go's regexp
// package after rewriting the ECMA-262 escape \uXXXX, which RE2 lacks, to the
// equivalent \x{XXXX}. The Claude API document uses \u2028 and \u2029 in
// several patterns, and without the rewrite every schema that reaches them
// (the create request body among them) fails to compile.
func compileECMARegexp(pattern string) (jsonschema.Regexp, error) {
	return regexp.Compile(rewriteUnicodeEscapes(pattern))
}

// rewriteUnicodeEscapes replaces each \uXXXX escape in pattern with \x{XXXX}.
// An escaped backslash followed by "u" is left alone.
func rewriteUnicodeEscapes(pattern string) string {
	if !strings.Contains(pattern, `\u`) {
		return pattern
	}

	var out strings.Builder
	for i := 0; i < len(pattern); i++ {
		if pattern[i] != '\\' || i+1 == len(pattern) {
			out.WriteByte(pattern[i])
			continue
		}

		if pattern[i+1] == 'u' && i+6 <= len(pattern) && isHex(pattern[i+2:i+6]) {
			out.WriteString(`\x{` + pattern[i+2:i+6] + `}`)
			i += 5
			continue
		}

		// Copy any other escape pair unchanged, so that "\\u" stays a
		// literal backslash followed by "u".
		out.WriteString(pattern[i : i+2])
		i++
	}
	return out.String()
}

func isHex(s string) bool {
	for _, c := range []byte(s) {
		isDigit := c >= '0' && c <= '9'
		isLetter := (c|0x20) >= 'a' && (c|0x20) <= 'f'
		if !isDigit && !isLetter {
			return false
		}
	}
	return true
}
