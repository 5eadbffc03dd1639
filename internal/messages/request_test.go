package messages_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/batchd/batchd/internal/messages"
)

const fullParams = `{
	"model": "claude-opus-4-6",
	"max_tokens": 4096,
	"system": [{"type":"text","text":"You are terse."},{"type":"text","text":"Answer in French."}],
	"messages": [
		{"role":"user","content":"What is the weather in Paris?"},
		{"role":"assistant","content":[
			{"type":"thinking","thinking":"I need the tool.","signature":"c2ln"},
			{"type":"text","text":"Let me check."},
			{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}]},
		{"role":"user","content":[
			{"type":"tool_result","tool_use_id":"toolu_1","content":"18 C","is_error":true},
			{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA=="}},
			{"type":"text","text":"And "},
			{"type":"text","text":"tomorrow?"}]}
	],
	"stop_sequences": ["END", "\n\nHuman:"],
	"tools": [
		{"name":"get_weather","description":"Current weather","input_schema":{"type":"object"}},
		{"type":"web_search_20250305","name":"web_search"}
	],
	"tool_choice": {"type":"tool","name":"get_weather","disable_parallel_tool_use":true},
	"thinking": {"type":"enabled","budget_tokens":2048,"display":"omitted"},
	"temperature": 0.5,
	"top_p": 0.9,
	"top_k": 40,
	"metadata": {"user_id":"user-1"},
	"output_config": {"effort":"high","format":{"type":"json_schema","schema":{}}},
	"service_tier": "auto",
	"unknown_field": 1
}`

func TestParseFull(t *testing.T) {
	t.Parallel()

	req, err := messages.Parse(json.RawMessage(fullParams))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}

	if req.Model != "claude-opus-4-6" {
		t.Errorf("Model = %q, want %q", req.Model, "claude-opus-4-6")
	}
	if req.MaxTokens != 4096 {
		t.Errorf("MaxTokens = %d, want 4096", req.MaxTokens)
	}
	if want := "You are terse.\n\nAnswer in French."; req.System != want {
		t.Errorf("System = %q, want %q", req.System, want)
	}
	if len(req.SystemBlocks) != 2 {
		t.Errorf("len(SystemBlocks) = %d, want 2", len(req.SystemBlocks))
	}
	if want := []string{"END", "\n\nHuman:"}; !reflect.DeepEqual(req.StopSequences, want) {
		t.Errorf("StopSequences = %q, want %q", req.StopSequences, want)
	}

	if len(req.Messages) != 3 {
		t.Fatalf("len(Messages) = %d, want 3", len(req.Messages))
	}
	first := req.Messages[0]
	if first.Role != messages.RoleUser || len(first.Content) != 1 ||
		first.Content[0].Type != messages.BlockText ||
		first.Content[0].Text != "What is the weather in Paris?" {
		t.Errorf("Messages[0] = %+v, want one user text block", first)
	}
	if first.Content[0].Raw != nil {
		t.Errorf("Raw of a block made from string content = %s, want nil", first.Content[0].Raw)
	}

	assistant := req.Messages[1].Content
	if got := assistant[0]; got.Thinking != "I need the tool." || got.Signature != "c2ln" {
		t.Errorf("thinking block = %+v, want thinking and signature", got)
	}
	toolUse := assistant[2]
	if toolUse.ID != "toolu_1" || toolUse.Name != "get_weather" ||
		string(toolUse.Input) != `{"city":"Paris"}` {
		t.Errorf("tool_use block = %+v, want id toolu_1, name get_weather, input", toolUse)
	}
	if len(toolUse.Raw) == 0 {
		t.Error("tool_use block Raw is empty, want the block as sent")
	}

	last := req.Messages[2]
	result := last.Content[0]
	if result.ToolUseID != "toolu_1" || !result.IsError || len(result.Content) != 1 ||
		result.Content[0].Text != "18 C" {
		t.Errorf("tool_result block = %+v, want tool_use_id, is_error and one text", result)
	}
	image := last.Content[1]
	if image.Source == nil || image.Source.Type != "base64" ||
		image.Source.MediaType != "image/png" || image.Source.Data != "AA==" {
		t.Errorf("image source = %+v, want base64 image/png AA==", image.Source)
	}
	if got, want := last.Text(), "And tomorrow?"; got != want {
		t.Errorf("Messages[2].Text() = %q, want %q", got, want)
	}

	if len(req.Tools) != 2 {
		t.Fatalf("len(Tools) = %d, want 2", len(req.Tools))
	}
	custom := req.Tools[0]
	if !custom.Custom() || custom.Name != "get_weather" || custom.Description != "Current weather" ||
		string(custom.InputSchema) != `{"type":"object"}` {
		t.Errorf("Tools[0] = %+v, want the custom get_weather tool", custom)
	}
	server := req.Tools[1]
	if server.Custom() || server.Type != "web_search_20250305" || server.Name != "web_search" {
		t.Errorf("Tools[1] = %+v, want the web_search server tool", server)
	}

	wantChoice := &messages.ToolChoice{Type: "tool", Name: "get_weather",
		DisableParallelToolUse: true}
	if !reflect.DeepEqual(req.ToolChoice, wantChoice) {
		t.Errorf("ToolChoice = %+v, want %+v", req.ToolChoice, wantChoice)
	}
	wantThinking := &messages.Thinking{Type: "enabled", BudgetTokens: 2048, Display: "omitted"}
	if !reflect.DeepEqual(req.Thinking, wantThinking) {
		t.Errorf("Thinking = %+v, want %+v", req.Thinking, wantThinking)
	}
	if !req.Thinking.Enabled() {
		t.Error("Thinking.Enabled() = false, want true")
	}

	if req.Temperature == nil || *req.Temperature != 0.5 {
		t.Errorf("Temperature = %v, want 0.5", req.Temperature)
	}
	if req.TopP == nil || *req.TopP != 0.9 {
		t.Errorf("TopP = %v, want 0.9", req.TopP)
	}
	if req.TopK == nil || *req.TopK != 40 {
		t.Errorf("TopK = %v, want 40", req.TopK)
	}
	if req.Metadata.UserID != "user-1" {
		t.Errorf("Metadata.UserID = %q, want %q", req.Metadata.UserID, "user-1")
	}
	if req.OutputConfig == nil || req.OutputConfig.Effort != "high" ||
		len(req.OutputConfig.Format) == 0 {
		t.Errorf("OutputConfig = %+v, want effort high and a format", req.OutputConfig)
	}
	if req.ServiceTier != "auto" {
		t.Errorf("ServiceTier = %q, want %q", req.ServiceTier, "auto")
	}
}

func TestParseMinimalLeavesOptionalFieldsUnset(t *testing.T) {
	t.Parallel()

	req, err := messages.Parse(json.RawMessage(minimalParams))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}

	if req.System != "" || req.SystemBlocks != nil {
		t.Errorf("System = %q, SystemBlocks = %v, want both empty", req.System, req.SystemBlocks)
	}
	if req.Tools != nil || req.ToolChoice != nil || req.Thinking != nil {
		t.Errorf("Tools = %v, ToolChoice = %v, Thinking = %v, want all nil",
			req.Tools, req.ToolChoice, req.Thinking)
	}
	if req.Temperature != nil || req.TopP != nil || req.TopK != nil {
		t.Error("sampling parameters are set, want nil")
	}
	if req.Thinking.Enabled() {
		t.Error("nil Thinking.Enabled() = true, want false")
	}
}

func TestParseSystemString(t *testing.T) {
	t.Parallel()

	req, err := messages.Parse(with(t, "system", `"Be brief."`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if req.System != "Be brief." {
		t.Errorf("System = %q, want %q", req.System, "Be brief.")
	}
	if len(req.SystemBlocks) != 1 || req.SystemBlocks[0].Text != "Be brief." {
		t.Errorf("SystemBlocks = %+v, want one text block", req.SystemBlocks)
	}
}

func TestParseDecodesEscapes(t *testing.T) {
	t.Parallel()

	params := json.RawMessage(`{"model":"m\u00e9","max_tokens":1,` +
		`"messages":[{"role":"user","content":"line\nnext \"q\" \ud83d\ude00"}]}`)
	req, err := messages.Parse(params)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if req.Model != "m\u00e9" {
		t.Errorf("Model = %q, want %q", req.Model, "m\u00e9")
	}
	if want := "line\nnext \"q\" \U0001F600"; req.Messages[0].Text() != want {
		t.Errorf("text = %q, want %q", req.Messages[0].Text(), want)
	}
}

func BenchmarkParse(b *testing.B) {
	params := json.RawMessage(`{"model":"claude-test","max_tokens":256,` +
		`"system":"You are a test.","messages":[{"role":"user","content":"Hello there, ` +
		`how are you today?"}],"stop_sequences":["END"]}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := messages.Parse(params); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseFull(b *testing.B) {
	params := json.RawMessage(fullParams)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := messages.Parse(params); err != nil {
			b.Fatal(err)
		}
	}
}
