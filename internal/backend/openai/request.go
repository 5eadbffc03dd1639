package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/messages"
)

// chatRequest is the body of POST /v1/chat/completions, limited to the fields
// this backend sends.
type chatRequest struct {
	Model    string        `json:"model"`
	Messages []chatMessage `json:"messages"`

	// MaxTokens is the deprecated OpenAI name of the output limit. vLLM,
	// Ollama and llama.cpp read it, while not all of them read its
	// replacement max_completion_tokens.
	MaxTokens int `json:"max_tokens"`

	Stop        []string `json:"stop,omitempty"`
	Temperature *float64 `json:"temperature,omitempty"`
	TopP        *float64 `json:"top_p,omitempty"`

	// TopK is not an OpenAI field. vLLM and llama.cpp read it; OpenAI's own
	// API rejects unknown fields with HTTP 400.
	TopK *int `json:"top_k,omitempty"`

	Tools             []chatTool      `json:"tools,omitempty"`
	ToolChoice        any             `json:"tool_choice,omitempty"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls,omitempty"`
	ResponseFormat    *responseFormat `json:"response_format,omitempty"`
	ReasoningEffort   string          `json:"reasoning_effort,omitempty"`
}

// chatMessage is one entry of a chat request's messages. Content is a string,
// a []contentPart, or nil for an assistant message that only calls tools.
type chatMessage struct {
	Role       string     `json:"role"`
	Content    any        `json:"content"`
	ToolCalls  []toolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

type contentPart struct {
	Type     string    `json:"type"`
	Text     string    `json:"text,omitempty"`
	ImageURL *imageURL `json:"image_url,omitempty"`
}

type imageURL struct {
	URL string `json:"url"`
}

type toolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function functionCall `json:"function"`
}

type functionCall struct {
	Name string `json:"name"`
	// Arguments is the JSON object of arguments, encoded as a string.
	Arguments string `json:"arguments"`
}

type chatTool struct {
	Type     string       `json:"type"`
	Function toolFunction `json:"function"`
}

type toolFunction struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters"`
}

type namedToolChoice struct {
	Type     string `json:"type"`
	Function struct {
		Name string `json:"name"`
	} `json:"function"`
}

type responseFormat struct {
	Type       string     `json:"type"`
	JSONSchema jsonSchema `json:"json_schema"`
}

type jsonSchema struct {
	Name   string          `json:"name"`
	Schema json.RawMessage `json:"schema"`
}

// translatedFields are the top-level params fields that are translated.
var translatedFields = map[string]bool{
	"model": true, "max_tokens": true, "messages": true, "system": true,
	"stop_sequences": true, "temperature": true, "top_p": true, "top_k": true,
	"tools": true, "tool_choice": true, "thinking": true, "output_config": true,
	"output_format": true,
}

// ignoredFields are the top-level params fields that are accepted and not
// sent, because they change billing, caching, routing or diagnostics but not
// what the model generates. stream is here because validation already
// rejected stream: true.
var ignoredFields = map[string]bool{
	"metadata": true, "service_tier": true, "cache_control": true,
	"inference_geo": true, "speed": true, "diagnostics": true, "stream": true,
}

// untranslatable returns the invalid_request_error for a part of params at
// path that this backend cannot send.
func untranslatable(path, format string, args ...any) *backend.Error {
	return &backend.Error{
		Type: backend.TypeInvalidRequest,
		Message: path + ": " + fmt.Sprintf(format, args...) +
			"; the OpenAI-compatible backend cannot translate it",
	}
}

// translateRequest builds the chat completions request for params, with the
// model name that params request. It fails with an invalid_request_error
// naming the first part of params that has no chat completions equivalent.
func translateRequest(params json.RawMessage) (chatRequest, error) {
	req, err := messages.Parse(params)
	if err != nil {
		// The error is about params, not a response from the model
		// server, so it carries no HTTP status.
		var be *backend.Error
		if errors.As(err, &be) {
			copied := *be
			copied.StatusCode = 0
			return chatRequest{}, &copied
		}
		return chatRequest{}, err
	}

	var fields map[string]json.RawMessage
	if err := json.Unmarshal(params, &fields); err != nil {
		return chatRequest{}, fmt.Errorf("decode params: %w", err)
	}
	if err := checkTopLevelFields(fields); err != nil {
		return chatRequest{}, err
	}

	out := chatRequest{
		Model:       req.Model,
		MaxTokens:   req.MaxTokens,
		Stop:        req.StopSequences,
		Temperature: req.Temperature,
		TopP:        req.TopP,
		TopK:        req.TopK,
	}

	if req.Thinking != nil && req.Thinking.Type != messages.ThinkingDisabled {
		return chatRequest{}, untranslatable("thinking", "thinking of type %q is set", req.Thinking.Type)
	}
	if err := translateOutput(fields, req.OutputConfig, &out); err != nil {
		return chatRequest{}, err
	}
	if err := translateTools(req, &out); err != nil {
		return chatRequest{}, err
	}

	if len(req.SystemBlocks) > 0 {
		if err := checkTextBlocks(req.SystemBlocks, "system"); err != nil {
			return chatRequest{}, err
		}
		out.Messages = append(out.Messages, chatMessage{Role: "system", Content: req.System})
	}
	for i, msg := range req.Messages {
		out.Messages, err = appendMessage(out.Messages, msg, fmt.Sprintf("messages.%d", i))
		if err != nil {
			return chatRequest{}, err
		}
	}

	last := req.Messages[len(req.Messages)-1]
	if last.Role == messages.RoleAssistant {
		return chatRequest{}, untranslatable(fmt.Sprintf("messages.%d", len(req.Messages)-1),
			"the conversation ends with an assistant message (a prefill), which chat "+
				"completions servers do not continue")
	}
	return out, nil
}

// checkTopLevelFields rejects any top-level field of params, other than a
// null one, that is neither translated nor safe to ignore.
func checkTopLevelFields(fields map[string]json.RawMessage) error {
	var unknown []string
	for name, raw := range fields {
		if translatedFields[name] || ignoredFields[name] || isNull(raw) {
			continue
		}
		unknown = append(unknown, name)
	}
	if len(unknown) == 0 {
		return nil
	}

	// Report the first name in sorted order, so the message is the same on
	// every run.
	first := unknown[0]
	for _, name := range unknown[1:] {
		first = min(first, name)
	}
	return untranslatable(first, "the field is set")
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// translateOutput maps output_config (and the older beta field output_format)
// to response_format and reasoning_effort.
func translateOutput(fields map[string]json.RawMessage, config *messages.OutputConfig, out *chatRequest) error {
	format := json.RawMessage(nil)
	path := ""
	if config != nil {
		format, path = config.Format, "output_config.format"
	}
	if raw, ok := fields["output_format"]; ok && !isNull(raw) && format == nil {
		format, path = raw, "output_format"
	}

	if format != nil && !isNull(format) {
		var f struct {
			Type   string          `json:"type"`
			Schema json.RawMessage `json:"schema"`
		}
		if err := json.Unmarshal(format, &f); err != nil {
			return untranslatable(path, "the format is not an object: %v", err)
		}
		if f.Type != "json_schema" || len(f.Schema) == 0 {
			return untranslatable(path+".type", "format type %q is set", f.Type)
		}
		out.ResponseFormat = &responseFormat{
			Type:       "json_schema",
			JSONSchema: jsonSchema{Name: "output", Schema: f.Schema},
		}
	}

	if config == nil || config.Effort == "" {
		return nil
	}
	switch config.Effort {
	case "low", "medium", "high":
		out.ReasoningEffort = config.Effort
		return nil
	}
	return untranslatable("output_config.effort", "effort %q has no reasoning_effort equivalent",
		config.Effort)
}

// translateTools maps custom tools to functions and tool_choice to its chat
// completions form. Server tools, such as web_search, are rejected because no
// OpenAI-compatible server runs them.
func translateTools(req messages.Request, out *chatRequest) error {
	for i, tool := range req.Tools {
		if !tool.Custom() {
			return untranslatable(fmt.Sprintf("tools.%d", i), "server tool of type %q is used", tool.Type)
		}
		out.Tools = append(out.Tools, chatTool{
			Type: "function",
			Function: toolFunction{
				Name:        tool.Name,
				Description: tool.Description,
				Parameters:  tool.InputSchema,
			},
		})
	}

	// Chat completions servers reject tool_choice and parallel_tool_calls
	// without tools, and with no tools the model calls none anyway.
	choice := req.ToolChoice
	if choice == nil || len(out.Tools) == 0 {
		return nil
	}

	switch choice.Type {
	case messages.ToolChoiceAuto:
		out.ToolChoice = "auto"
	case messages.ToolChoiceAny:
		out.ToolChoice = "required"
	case messages.ToolChoiceNone:
		out.ToolChoice = "none"
	case messages.ToolChoiceTool:
		named := namedToolChoice{Type: "function"}
		named.Function.Name = choice.Name
		out.ToolChoice = named
	}
	if choice.DisableParallelToolUse {
		parallel := false
		out.ParallelToolCalls = &parallel
	}
	return nil
}

// appendMessage appends the chat messages for one conversation turn.
func appendMessage(dst []chatMessage, msg messages.InputMessage, path string) ([]chatMessage, error) {
	switch msg.Role {
	case messages.RoleAssistant:
		return appendAssistant(dst, msg, path)
	case messages.RoleSystem:
		if err := checkTextBlocks(msg.Content, path+".content"); err != nil {
			return nil, err
		}
		return append(dst, chatMessage{Role: "system", Content: joinText(msg.Content, "\n\n")}), nil
	}
	return appendUser(dst, msg, path)
}

// appendUser appends a user turn. Its tool_result blocks become tool messages
// placed first, because chat completions requires them to follow the
// assistant message that made the calls. Its text and image blocks then
// become one user message.
func appendUser(dst []chatMessage, msg messages.InputMessage, path string) ([]chatMessage, error) {
	var parts []contentPart
	for i, block := range msg.Content {
		blockPath := fmt.Sprintf("%s.content.%d", path, i)

		switch block.Type {
		case messages.BlockText:
			if err := checkCitations(block, blockPath); err != nil {
				return nil, err
			}
			parts = append(parts, contentPart{Type: "text", Text: block.Text})
		case messages.BlockImage:
			part, err := imagePart(block, blockPath)
			if err != nil {
				return nil, err
			}
			parts = append(parts, part)
		case messages.BlockToolResult:
			toolMessage, err := toolResultMessage(block, blockPath)
			if err != nil {
				return nil, err
			}
			dst = append(dst, toolMessage)
		default:
			return nil, untranslatable(blockPath, "a %s block is used in a user message", block.Type)
		}
	}

	hasToolResults := len(parts) < len(msg.Content)
	switch {
	case len(parts) == 0 && hasToolResults:
		return dst, nil
	case len(parts) == 1 && parts[0].Type == "text":
		return append(dst, chatMessage{Role: "user", Content: parts[0].Text}), nil
	case len(parts) == 0:
		return append(dst, chatMessage{Role: "user", Content: ""}), nil
	}
	return append(dst, chatMessage{Role: "user", Content: parts}), nil
}

// appendAssistant appends an assistant turn: its text blocks joined as they
// were generated, and its tool_use blocks as tool_calls. Thinking blocks are
// left out, as the Messages API itself leaves earlier turns' thinking out of
// the model's context.
func appendAssistant(dst []chatMessage, msg messages.InputMessage, path string) ([]chatMessage, error) {
	var text strings.Builder
	var calls []toolCall

	for i, block := range msg.Content {
		blockPath := fmt.Sprintf("%s.content.%d", path, i)

		switch block.Type {
		case messages.BlockText:
			if err := checkCitations(block, blockPath); err != nil {
				return nil, err
			}
			text.WriteString(block.Text)
		case messages.BlockToolUse:
			var arguments bytes.Buffer
			if err := json.Compact(&arguments, block.Input); err != nil {
				return nil, fmt.Errorf("compact %s.input: %w", blockPath, err)
			}
			calls = append(calls, toolCall{
				ID:       block.ID,
				Type:     "function",
				Function: functionCall{Name: block.Name, Arguments: arguments.String()},
			})
		case messages.BlockThinking, messages.BlockRedactedThinking:
			continue
		default:
			return nil, untranslatable(blockPath, "a %s block is used in an assistant message", block.Type)
		}
	}

	out := chatMessage{Role: "assistant", Content: text.String(), ToolCalls: calls}
	if text.Len() == 0 && len(calls) > 0 {
		out.Content = nil
	}
	return append(dst, out), nil
}

// toolResultMessage returns the tool message for a tool_result block. Chat
// completions has no error flag, so a failed call's content is prefixed with
// "Error: ".
func toolResultMessage(block messages.InputBlock, path string) (chatMessage, error) {
	for i, inner := range block.Content {
		innerPath := fmt.Sprintf("%s.content.%d", path, i)
		if inner.Type != messages.BlockText {
			return chatMessage{}, untranslatable(innerPath, "a %s block is used in a tool_result", inner.Type)
		}
		if err := checkCitations(inner, innerPath); err != nil {
			return chatMessage{}, err
		}
	}

	content := joinText(block.Content, "\n\n")
	if block.IsError {
		content = "Error: " + content
	}
	return chatMessage{Role: "tool", ToolCallID: block.ToolUseID, Content: content}, nil
}

// imagePart returns the image_url part for an image block with a base64 or
// url source. A base64 source becomes a data: URL.
func imagePart(block messages.InputBlock, path string) (contentPart, error) {
	src := block.Source
	var url string
	switch src.Type {
	case "base64":
		url = "data:" + src.MediaType + ";base64," + src.Data
	case "url":
		url = src.URL
	default:
		return contentPart{}, untranslatable(path+".source", "an image source of type %q is used", src.Type)
	}
	return contentPart{Type: "image_url", ImageURL: &imageURL{URL: url}}, nil
}

// checkTextBlocks checks the blocks of a system prompt, which are text blocks.
func checkTextBlocks(blocks []messages.InputBlock, path string) error {
	for i, block := range blocks {
		if err := checkCitations(block, fmt.Sprintf("%s.%d", path, i)); err != nil {
			return err
		}
	}
	return nil
}

// checkCitations rejects a text block that carries citations, which chat
// completions has no place for.
func checkCitations(block messages.InputBlock, path string) error {
	if block.Raw == nil {
		return nil
	}

	var fields struct {
		Citations json.RawMessage `json:"citations"`
	}
	if err := json.Unmarshal(block.Raw, &fields); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	citations := bytes.TrimSpace(fields.Citations)
	if len(citations) == 0 || string(citations) == "null" || string(citations) == "[]" {
		return nil
	}
	return untranslatable(path+".citations", "citations are set")
}

// joinText returns the texts of blocks joined by sep.
func joinText(blocks []messages.InputBlock, sep string) string {
	texts := make([]string, 0, len(blocks))
	for _, block := range blocks {
		texts = append(texts, block.Text)
	}
	return strings.Join(texts, sep)
}
