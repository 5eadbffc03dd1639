package testmodel_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pb33f/jsonschema/v6"

	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/backend/testmodel"
	"github.com/batchd/batchd/internal/messages"
)

// toolSchemas are input schemas covering the keywords the generator
// supports.
var toolSchemas = map[string]string{
	"weather": `{"type":"object","properties":{
		"location":{"type":"string","description":"City"},
		"unit":{"type":"string","enum":["celsius","fahrenheit"]}},
		"required":["location"]}`,

	"nested": `{"type":"object","properties":{
		"user":{"type":"object","properties":{
			"name":{"type":"string","minLength":12,"maxLength":20},
			"age":{"type":"integer","minimum":18,"maximum":99},
			"email":{"type":"string","format":"email"},
			"nickname":{"type":"string","maxLength":2}},
			"required":["name","age","email","nickname"],"additionalProperties":false},
		"tags":{"type":"array","items":{"type":"string"},"minItems":1,"maxItems":3,
			"uniqueItems":true},
		"active":{"type":"boolean"},
		"score":{"type":"number","exclusiveMinimum":0,"exclusiveMaximum":1},
		"note":{"type":"null"}},
		"required":["user","tags","active","score","note"]}`,

	"refs": `{"type":"object","$defs":{"point":{"type":"object",
		"properties":{"x":{"type":"number"},"y":{"type":"number","minimum":-5,"maximum":-1}},
		"required":["x","y"]}},
		"properties":{"from":{"$ref":"#/$defs/point"},"to":{"$ref":"#/$defs/point"},
			"path":{"type":"array","items":{"$ref":"#/$defs/point"},"minItems":2}},
		"required":["from","to","path"]}`,

	"definitions": `{"type":"object","definitions":{"id":{"type":"integer","minimum":1000}},
		"properties":{"ids":{"type":"array","items":{"$ref":"#/definitions/id"},"minItems":1}},
		"required":["ids"]}`,

	"unions": `{"type":"object","properties":{
		"id":{"anyOf":[{"type":"string","format":"uuid"},{"type":"integer"}]},
		"kind":{"const":"fixed"},
		"maybe":{"type":["string","null"]},
		"mode":{"oneOf":[{"type":"null"},{"type":"string","enum":["a","b"]}]},
		"combo":{"allOf":[{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]},
			{"properties":{"b":{"type":"string"}},"required":["b"]}]},
		"count":{"type":"integer","multipleOf":5,"minimum":1,"maximum":50},
		"price":{"type":"number","multipleOf":0.01,"minimum":0,"maximum":10},
		"level":{"type":"integer","enum":[1,2,3]}},
		"required":["id","kind","maybe","mode","combo","count","price","level"]}`,

	"recursive": `{"type":"object","properties":{"tree":{"$ref":"#/$defs/node"}},
		"required":["tree"],"$defs":{"node":{"type":"object","properties":{
			"value":{"type":"integer"},
			"children":{"type":"array","items":{"$ref":"#/$defs/node"}}},
			"required":["value"]}}}`,

	"empty": `{"type":"object"}`,

	"tuple": `{"type":"object","properties":{"pair":{"type":"array",
		"prefixItems":[{"type":"string"},{"type":"integer"}],"minItems":2,"maxItems":2}},
		"required":["pair"]}`,

	"formats": `{"type":"object","properties":{
		"when":{"type":"string","format":"date-time"},
		"day":{"type":"string","format":"date"},
		"at":{"type":"string","format":"time"},
		"link":{"type":"string","format":"uri"},
		"ip":{"type":"string","format":"ipv4"},
		"host":{"type":"string","format":"hostname"}},
		"required":["when","day","at","link","ip","host"]}`,

	"bounds": `{"type":"object","properties":{
		"big":{"type":"integer","minimum":1000000},
		"small":{"type":"integer","maximum":-1000},
		"window":{"type":"integer","exclusiveMinimum":10,"exclusiveMaximum":12},
		"ratio":{"type":"number","minimum":0.5,"maximum":0.5}},
		"required":["big","small","window","ratio"]}`,

	"draft-04 exclusive bounds": `{"$schema":"http://json-schema.org/draft-04/schema#",
		"type":"object","properties":{"n":{"type":"integer","minimum":5,
		"exclusiveMinimum":true,"maximum":7,"exclusiveMaximum":true}},"required":["n"]}`,

	"required without properties": `{"type":"object","required":["anything"]}`,
}

// compileSchema compiles a tool's input schema with format assertions on, so
// that the check covers formats too.
func compileSchema(t *testing.T, name, schema string) *jsonschema.Schema {
	t.Helper()

	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(schema))
	if err != nil {
		t.Fatalf("decode schema %s: %v", name, err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	url := "file:///" + strings.ReplaceAll(name, " ", "_") + ".json"
	if err := c.AddResource(url, doc); err != nil {
		t.Fatalf("add schema %s: %v", name, err)
	}
	compiled, err := c.Compile(url)
	if err != nil {
		t.Fatalf("compile schema %s: %v", name, err)
	}
	return compiled
}

// toolParams returns params that define one custom tool with the schema and
// use the given tool_choice.
func toolParams(maxTokens int, text, schema, choice string) string {
	return userParams(maxTokens, text, `,"tools":[{"name":"the_tool","description":"A tool.",`+
		`"input_schema":`+schema+`}],"tool_choice":`+choice)
}

// toolUse returns the single tool_use block of msg, failing t otherwise.
func toolUse(t *testing.T, msg messages.Message) messages.ContentBlock {
	t.Helper()

	if msg.StopReason != messages.StopToolUse {
		t.Fatalf("stop_reason = %q, want tool_use", msg.StopReason)
	}
	last := msg.Content[len(msg.Content)-1]
	if last.Type != messages.BlockToolUse {
		t.Fatalf("last content block = %+v, want tool_use", last)
	}
	return last
}

func TestToolInputFitsSchema(t *testing.T) {
	t.Parallel()

	for name, schema := range toolSchemas {
		t.Run(name, func(t *testing.T) {
			t.Parallel()

			compiled := compileSchema(t, name, schema)
			m := testmodel.New(testmodel.Config{})
			distinct := map[string]bool{}

			// Every prompt seeds different draws, so 50 prompts exercise
			// optional properties, array lengths and branch choices.
			for i := range 50 {
				params := toolParams(4000, fmt.Sprintf("prompt %d", i), schema,
					`{"type":"tool","name":"the_tool"}`)
				msg, _ := send(t, m, "req", params)
				block := toolUse(t, msg)

				if block.Name != "the_tool" {
					t.Errorf("tool_use name = %q, want the_tool", block.Name)
				}
				if !strings.HasPrefix(block.ID, "toolu_") {
					t.Errorf("tool_use id = %q, want prefix toolu_", block.ID)
				}
				value, err := jsonschema.UnmarshalJSON(bytes.NewReader(block.Input))
				if err != nil {
					t.Fatalf("decode input %s: %v", block.Input, err)
				}
				if err := compiled.Validate(value); err != nil {
					t.Errorf("input %s does not fit the schema: %v", block.Input, err)
				}
				distinct[string(block.Input)] = true
			}

			fixed := name == "empty" || name == "draft-04 exclusive bounds"
			if !fixed && len(distinct) < 2 {
				t.Errorf("50 prompts gave %d distinct inputs, want variety", len(distinct))
			}
		})
	}
}

func TestToolChoiceForcedHasNoText(t *testing.T) {
	t.Parallel()

	m := testmodel.New(testmodel.Config{})
	for _, choice := range []string{`{"type":"any"}`, `{"type":"tool","name":"the_tool"}`} {
		msg, _ := send(t, m, "req", toolParams(1000, "Weather?", toolSchemas["weather"], choice))

		block := toolUse(t, msg)
		if len(msg.Content) != 1 {
			t.Errorf("tool_choice %s: content = %+v, want only the tool_use block", choice,
				msg.Content)
		}
		want := int64((len(block.Name) + len(block.Input) + 3) / 4)
		if msg.Usage.OutputTokens != want {
			t.Errorf("tool_choice %s: output_tokens = %d, want %d", choice,
				msg.Usage.OutputTokens, want)
		}
	}
}

func TestToolChoiceAnyPicksCustomTool(t *testing.T) {
	t.Parallel()

	m := testmodel.New(testmodel.Config{})
	params := userParams(1000, "Search.", `,"tools":[{"type":"web_search_20250305",`+
		`"name":"web_search"},{"name":"lookup","input_schema":{"type":"object"}}],`+
		`"tool_choice":{"type":"any"}`)
	msg, _ := send(t, m, "req", params)

	if block := toolUse(t, msg); block.Name != "lookup" {
		t.Errorf("tool_use name = %q, want the custom tool lookup", block.Name)
	}
}

func TestToolChoiceAuto(t *testing.T) {
	t.Parallel()

	m := testmodel.New(testmodel.Config{})
	tools, texts := 0, 0
	for i := range 100 {
		params := toolParams(1000, fmt.Sprintf("question %d", i), toolSchemas["weather"],
			`{"type":"auto"}`)
		msg, _ := send(t, m, "req", params)

		switch msg.StopReason {
		case messages.StopToolUse:
			tools++
			if msg.Content[0].Type != messages.BlockText {
				t.Errorf("auto tool call: content[0] = %+v, want a text block first", msg.Content[0])
			}
		case messages.StopEndTurn:
			texts++
		default:
			t.Errorf("stop_reason = %q, want tool_use or end_turn", msg.StopReason)
		}
	}

	// Each prompt calls the tool with probability 1/2, and the outcomes are
	// fixed by the prompts, so these bounds are far from flaking.
	if tools < 20 || texts < 20 {
		t.Errorf("100 auto requests: %d tool calls and %d text answers, want at least 20 each",
			tools, texts)
	}

	// Without tool_choice, tools behave as auto.
	found := false
	for i := range 20 {
		params := userParams(1000, fmt.Sprintf("question %d", i),
			`,"tools":[{"name":"t","input_schema":{"type":"object"}}]`)
		if msg, _ := send(t, m, "req", params); msg.StopReason == messages.StopToolUse {
			found = true
		}
	}
	if !found {
		t.Error("20 requests with tools and no tool_choice made no tool call, want some")
	}
}

func TestToolChoiceAutoAnswersToolResult(t *testing.T) {
	t.Parallel()

	m := testmodel.New(testmodel.Config{})
	for i := range 20 {
		params := fmt.Sprintf(`{"model":"m","max_tokens":500,`+
			`"tools":[{"name":"t","input_schema":{"type":"object"}}],`+
			`"messages":[{"role":"user","content":"q%d"},`+
			`{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"t","input":{}}]},`+
			`{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1",`+
			`"content":"result %d"}]}]}`, i, i)
		msg, _ := send(t, m, "req", params)

		if msg.StopReason != messages.StopEndTurn {
			t.Errorf("answer to a tool_result: stop_reason = %q, want end_turn", msg.StopReason)
		}
		if want := fmt.Sprintf(`You said: "result %d"`, i); !strings.Contains(textOf(msg), want) {
			t.Errorf("text = %q, want it to echo %q", textOf(msg), want)
		}
	}
}

func TestToolChoiceNone(t *testing.T) {
	t.Parallel()

	m := testmodel.New(testmodel.Config{})
	for i := range 20 {
		params := toolParams(1000, fmt.Sprintf("q%d", i), toolSchemas["weather"],
			`{"type":"none"}`)
		msg, _ := send(t, m, "req", params)
		if msg.StopReason != messages.StopEndTurn {
			t.Errorf("tool_choice none: stop_reason = %q, want end_turn", msg.StopReason)
		}
	}
}

func TestToolCallThatDoesNotFit(t *testing.T) {
	t.Parallel()

	m := testmodel.New(testmodel.Config{})
	msg, _ := send(t, m, "req", toolParams(2, "Weather?", toolSchemas["nested"],
		`{"type":"any"}`))

	if msg.StopReason != messages.StopMaxTokens {
		t.Errorf("stop_reason = %q, want max_tokens", msg.StopReason)
	}
	for _, block := range msg.Content {
		if block.Type == messages.BlockToolUse {
			t.Errorf("content has a tool_use block %+v that exceeds max_tokens", block)
		}
	}
}

func TestToolChoiceErrors(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name   string
		params string
		want   string
	}{
		{"unknown tool name", toolParams(100, "x", `{"type":"object"}`,
			`{"type":"tool","name":"missing"}`),
			`tool_choice.name: no tool named "missing" in tools`},
		{"server tool named", userParams(100, "x",
			`,"tools":[{"type":"web_search_20250305","name":"web_search"}],`+
				`"tool_choice":{"type":"tool","name":"web_search"}`),
			`tool_choice.name: the test model cannot call server tool "web_search"`},
		{"any without tools", userParams(100, "x", `,"tool_choice":{"type":"any"}`),
			`tool_choice: type "any" needs at least one custom tool`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			// With an hour of latency, only an error returned before the
			// delay arrives within the context's 30 seconds.
			m := testmodel.New(testmodel.Config{Latency: time.Hour})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			_, err := m.Send(ctx, request("req", tt.params))
			var be *backend.Error
			if !errors.As(err, &be) {
				t.Fatalf("Send error = %v, want *backend.Error", err)
			}
			if be.Type != backend.TypeInvalidRequest {
				t.Errorf("error type = %q, want invalid_request_error", be.Type)
			}
			if !strings.HasPrefix(be.Message, tt.want) {
				t.Errorf("message = %q, want prefix %q", be.Message, tt.want)
			}
		})
	}
}

func TestToolInputIsCompactJSONObject(t *testing.T) {
	t.Parallel()

	m := testmodel.New(testmodel.Config{})
	msg, _ := send(t, m, "req", toolParams(1000, "x", toolSchemas["nested"], `{"type":"any"}`))
	block := toolUse(t, msg)

	var input map[string]any
	if err := json.Unmarshal(block.Input, &input); err != nil {
		t.Fatalf("input %s is not a JSON object: %v", block.Input, err)
	}
	for _, key := range []string{"user", "tags", "active", "score", "note"} {
		if _, ok := input[key]; !ok {
			t.Errorf("input %s lacks required property %q", block.Input, key)
		}
	}
}
