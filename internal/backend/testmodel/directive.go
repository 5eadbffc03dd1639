package testmodel

import (
	"fmt"
	"strings"
	"time"

	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/messages"
)

const (
	directiveOpen  = "[[batchd:"
	directiveClose = "]]"
)

// directives are the instructions a test author put in a request's last user
// message; see the package documentation for the syntax.
type directives struct {
	// fail is the error type every send of the request fails with.
	fail string
	// failOnce is the error type the first send of the request fails with.
	failOnce string
	// delay is added to the configured latency.
	delay time.Duration
}

// readDirectives reads the directives in text, the text of the request's
// last user message. A malformed or unknown directive is an
// invalid_request_error, so that a typo in a test does not pass unnoticed.
func readDirectives(text string) (directives, error) {
	var dirs directives

	for {
		start := strings.Index(text, directiveOpen)
		if start < 0 {
			return dirs, nil
		}
		text = text[start+len(directiveOpen):]

		end := strings.Index(text, directiveClose)
		if end < 0 {
			return dirs, directiveError("%s… has no closing %q", directiveOpen, directiveClose)
		}
		body := text[:end]
		text = text[end+len(directiveClose):]

		if err := dirs.set(body); err != nil {
			return dirs, err
		}
	}
}

// set applies one directive body, the text between "[[batchd:" and "]]".
func (d *directives) set(body string) error {
	name, value, ok := strings.Cut(body, "=")
	if !ok {
		return directiveError("[[batchd:%s]] has no '='; write [[batchd:NAME=VALUE]]", body)
	}
	name = strings.TrimSpace(name)
	value = strings.TrimSpace(value)

	switch name {
	case "fail", "fail-once":
		if _, known := statusCodes[value]; !known {
			return directiveError("[[batchd:%s]] names unknown error type %q; use one of "+
				"invalid_request_error, authentication_error, permission_error, "+
				"not_found_error, rate_limit_error, api_error, timeout_error, "+
				"overloaded_error", body, value)
		}
		if name == "fail" {
			d.fail = value
		} else {
			d.failOnce = value
		}
	case "delay":
		delay, err := time.ParseDuration(value)
		if err != nil || delay < 0 {
			return directiveError("[[batchd:%s]] needs a non-negative duration such as "+
				"250ms or 2s", body)
		}
		d.delay = delay
	default:
		return directiveError("[[batchd:%s]] has unknown name %q; use fail, fail-once or "+
			"delay", body, name)
	}
	return nil
}

func directiveError(format string, args ...any) *backend.Error {
	return newError(backend.TypeInvalidRequest,
		"test model directive: "+fmt.Sprintf(format, args...))
}

// lastUserText returns the text of the last user message: its text blocks
// and the text inside its tool_result blocks, joined with no separator.
func lastUserText(req messages.Request) string {
	for i := len(req.Messages) - 1; i >= 0; i-- {
		msg := req.Messages[i]
		if msg.Role != messages.RoleUser {
			continue
		}

		var b strings.Builder
		for _, block := range msg.Content {
			switch block.Type {
			case messages.BlockText:
				b.WriteString(block.Text)
			case messages.BlockToolResult:
				for _, inner := range block.Content {
					if inner.Type == messages.BlockText {
						b.WriteString(inner.Text)
					}
				}
			}
		}
		return b.String()
	}
	return ""
}
