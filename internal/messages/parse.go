package messages

import (
	"encoding/json"
	"math"
	"strings"
)

const (
	// maxMessages is the largest messages array the Messages API accepts.
	maxMessages = 100_000

	// maxTokensLimit caps max_tokens. No model comes near it, and it keeps
	// token arithmetic in every backend far from int overflow.
	maxTokensLimit = math.MaxInt32

	// minBudgetTokens is the smallest thinking budget the API accepts.
	minBudgetTokens = 1024

	// maxToolNameLen is the longest custom tool name the API accepts.
	maxToolNameLen = 128

	// maxUserIDLen is the longest metadata.user_id the API accepts.
	maxUserIDLen = 512
)

// parseRequest checks params and builds its typed view. Each step reads one
// top-level field; the order of the steps decides which error a body with
// several problems reports.
func parseRequest(params json.RawMessage) (Request, error) {
	var req Request

	// The scans below trust the syntax, so it is checked once, here.
	if !json.Valid(params) {
		var v any
		if err := json.Unmarshal(params, &v); err != nil {
			return req, invalid("params", "invalid JSON: %v", err)
		}
		return req, invalid("params", "invalid JSON")
	}
	if kindOf(params) != kindObject {
		return req, wrongType("params", "a JSON object", params)
	}
	fields, err := decodeObject(params, "params")
	if err != nil {
		return req, err
	}

	if err := parseRequired(fields, &req); err != nil {
		return req, err
	}
	if err := parseStream(fields); err != nil {
		return req, err
	}
	if err := parseSystem(fields, &req); err != nil {
		return req, err
	}
	if err := parseStopSequences(fields, &req); err != nil {
		return req, err
	}
	if err := parseTools(fields, &req); err != nil {
		return req, err
	}
	if err := parseToolChoice(fields, &req); err != nil {
		return req, err
	}
	if err := parseThinking(fields, &req); err != nil {
		return req, err
	}
	if err := parseSampling(fields, &req); err != nil {
		return req, err
	}
	if err := parseMetadata(fields, &req); err != nil {
		return req, err
	}
	if err := parseOutputConfig(fields, &req); err != nil {
		return req, err
	}
	return req, nil
}

// parseRequired reads model, max_tokens and messages.
func parseRequired(fields object, req *Request) error {
	raw, ok := fields.get("model")
	if !ok {
		return invalid("model", "field required")
	}
	model, err := decodeString(raw, "model")
	if err != nil {
		return err
	}
	if model == "" {
		return invalid("model", "must not be empty")
	}
	req.Model = model

	raw, ok = fields.get("max_tokens")
	if !ok {
		return invalid("max_tokens", "field required")
	}
	maxTokens, err := decodeInt(raw, "max_tokens", 1, maxTokensLimit)
	if err != nil {
		return err
	}
	req.MaxTokens = int(maxTokens)

	raw, ok = fields.get("messages")
	if !ok {
		return invalid("messages", "field required")
	}
	req.Messages, err = parseMessages(raw)
	return err
}

func parseMessages(raw json.RawMessage) ([]InputMessage, error) {
	items, err := decodeArray(raw, "messages")
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, invalid("messages", "must contain at least one message")
	}
	if len(items) > maxMessages {
		return nil, invalid("messages", "must contain at most %d messages, got %d",
			maxMessages, len(items))
	}

	msgs := make([]InputMessage, len(items))
	for i, item := range items {
		msgs[i], err = parseMessage(item, index("messages", i))
		if err != nil {
			return nil, err
		}
	}
	return msgs, nil
}

func parseMessage(raw json.RawMessage, path string) (InputMessage, error) {
	var msg InputMessage

	fields, err := decodeObject(raw, path)
	if err != nil {
		return msg, err
	}

	roleRaw, ok := fields.get("role")
	if !ok {
		return msg, invalid(path+".role", "field required")
	}
	msg.Role, err = decodeString(roleRaw, path+".role")
	if err != nil {
		return msg, err
	}
	switch msg.Role {
	case RoleUser, RoleAssistant, RoleSystem:
	default:
		return msg, invalid(path+".role", `must be "user", "assistant" or "system", got %s`,
			quote(msg.Role))
	}

	contentRaw, ok := fields.get("content")
	if !ok {
		return msg, invalid(path+".content", "field required")
	}
	msg.Content, err = parseContent(contentRaw, path+".content", false)
	if err != nil {
		return msg, err
	}

	if msg.Role == RoleSystem {
		if err := requireTextBlocks(msg.Content, path+".content"); err != nil {
			return msg, err
		}
	}
	return msg, nil
}

// parseContent reads a content field, which is either a string or an array
// of content blocks. nested is true inside a tool_result block, where another
// tool_result is not allowed.
func parseContent(raw json.RawMessage, path string, nested bool) ([]InputBlock, error) {
	if kindOf(raw) == kindString {
		text, err := decodeString(raw, path)
		if err != nil {
			return nil, err
		}
		return []InputBlock{{Type: BlockText, Text: text}}, nil
	}
	if kindOf(raw) != kindArray {
		return nil, wrongType(path, "a string or an array of content blocks", raw)
	}

	items, err := decodeArray(raw, path)
	if err != nil {
		return nil, err
	}
	blocks := make([]InputBlock, len(items))
	for i, item := range items {
		blocks[i], err = parseBlock(item, index(path, i), nested)
		if err != nil {
			return nil, err
		}
	}
	return blocks, nil
}

// parseBlock reads one content block. It checks the fields of the block types
// listed with [BlockText] and keeps other types as they are.
func parseBlock(raw json.RawMessage, path string, nested bool) (InputBlock, error) {
	block := InputBlock{Raw: raw}

	fields, err := decodeObject(raw, path)
	if err != nil {
		return block, err
	}
	typeRaw, ok := fields.get("type")
	if !ok {
		return block, invalid(path+".type", "field required")
	}
	block.Type, err = decodeString(typeRaw, path+".type")
	if err != nil {
		return block, err
	}

	switch block.Type {
	case BlockText:
		block.Text, err = requiredString(fields, "text", path)
	case BlockImage, BlockDocument:
		block.Source, err = parseSource(fields, path, block.Type == BlockImage)
	case BlockToolUse, BlockServerToolUse:
		err = parseToolUse(fields, path, &block)
	case BlockToolResult:
		if nested {
			return block, invalid(path+".type", "a tool_result block cannot contain "+
				"another tool_result block")
		}
		err = parseToolResult(fields, path, &block)
	case BlockThinking:
		block.Thinking, err = requiredString(fields, "thinking", path)
		if err == nil {
			block.Signature, err = requiredString(fields, "signature", path)
		}
	case BlockRedactedThinking:
		block.Data, err = requiredString(fields, "data", path)
	}
	return block, err
}

// requiredString reads the string field name of an object at path.
func requiredString(fields object, name, path string) (string, error) {
	raw, ok := fields.get(name)
	if !ok {
		return "", invalid(path+"."+name, "field required")
	}
	return decodeString(raw, path+"."+name)
}

// optionalString reads the string field name of an object at path, or
// returns "" when the field is absent or null.
func optionalString(fields object, name, path string) (string, error) {
	raw, ok := fields.get(name)
	if !present(raw, ok) {
		return "", nil
	}
	return decodeString(raw, path+"."+name)
}

// parseSource reads the source of an image or document block. Image sources
// are checked by type; document sources need only a string type, because
// their shapes vary more.
func parseSource(fields object, path string, image bool) (*Source, error) {
	raw, ok := fields.get("source")
	if !ok {
		return nil, invalid(path+".source", "field required")
	}
	path += ".source"
	sourceFields, err := decodeObject(raw, path)
	if err != nil {
		return nil, err
	}

	src := &Source{Raw: raw}
	if src.Type, err = requiredString(sourceFields, "type", path); err != nil {
		return nil, err
	}
	if src.MediaType, err = optionalString(sourceFields, "media_type", path); err != nil {
		return nil, err
	}
	if src.URL, err = optionalString(sourceFields, "url", path); err != nil {
		return nil, err
	}
	if src.FileID, err = optionalString(sourceFields, "file_id", path); err != nil {
		return nil, err
	}
	// A content source of a document carries blocks in "content" and has no
	// string data.
	if src.Type != "content" {
		if src.Data, err = optionalString(sourceFields, "data", path); err != nil {
			return nil, err
		}
	}

	if !image {
		return src, nil
	}
	switch src.Type {
	case "base64":
		if src.MediaType == "" {
			return nil, invalid(path+".media_type", "field required")
		}
		if raw, ok := sourceFields.get("data"); !present(raw, ok) {
			return nil, invalid(path+".data", "field required")
		}
	case "url":
		if src.URL == "" {
			return nil, invalid(path+".url", "field required")
		}
	case "file":
		if src.FileID == "" {
			return nil, invalid(path+".file_id", "field required")
		}
	default:
		return nil, invalid(path+".type", `must be "base64", "url" or "file", got %s`,
			quote(src.Type))
	}
	return src, nil
}

func parseToolUse(fields object, path string, block *InputBlock) error {
	var err error
	if block.ID, err = requiredString(fields, "id", path); err != nil {
		return err
	}
	if block.Name, err = requiredString(fields, "name", path); err != nil {
		return err
	}

	raw, ok := fields.get("input")
	if !ok {
		return invalid(path+".input", "field required")
	}
	if kindOf(raw) != kindObject {
		return wrongType(path+".input", "an object", raw)
	}
	block.Input = raw
	return nil
}

func parseToolResult(fields object, path string, block *InputBlock) error {
	var err error
	if block.ToolUseID, err = requiredString(fields, "tool_use_id", path); err != nil {
		return err
	}

	if raw, ok := fields.get("content"); present(raw, ok) {
		block.Content, err = parseContent(raw, path+".content", true)
		if err != nil {
			return err
		}
	}

	if raw, ok := fields.get("is_error"); present(raw, ok) {
		block.IsError, err = decodeBool(raw, path+".is_error")
	}
	return err
}

// requireTextBlocks checks that every block at path is a text block, as in a
// system prompt.
func requireTextBlocks(blocks []InputBlock, path string) error {
	for i, b := range blocks {
		if b.Type != BlockText {
			return invalid(index(path, i)+".type", `must be "text", got %s`, quote(b.Type))
		}
	}
	return nil
}

// parseStream rejects stream: true, which batches do not support. Clients
// such as the Go SDK send stream: false, and that passes.
func parseStream(fields object) error {
	raw, ok := fields.get("stream")
	if !present(raw, ok) {
		return nil
	}
	stream, err := decodeBool(raw, "stream")
	if err != nil {
		return err
	}
	if stream {
		return invalid("stream", "streaming is not supported in batches")
	}
	return nil
}

func parseSystem(fields object, req *Request) error {
	raw, ok := fields.get("system")
	if !present(raw, ok) {
		return nil
	}

	var err error
	switch kindOf(raw) {
	case kindString, kindArray:
		req.SystemBlocks, err = parseContent(raw, "system", false)
	default:
		return wrongType("system", "a string or an array of text blocks", raw)
	}
	if err != nil {
		return err
	}
	if err := requireTextBlocks(req.SystemBlocks, "system"); err != nil {
		return err
	}

	req.System = joinText(req.SystemBlocks, "\n\n")
	return nil
}

// joinText returns the texts of the text blocks among blocks, joined by sep.
func joinText(blocks []InputBlock, sep string) string {
	if len(blocks) == 1 && blocks[0].Type == BlockText {
		return blocks[0].Text
	}

	var b strings.Builder
	first := true
	for _, block := range blocks {
		if block.Type != BlockText {
			continue
		}
		if !first {
			b.WriteString(sep)
		}
		b.WriteString(block.Text)
		first = false
	}
	return b.String()
}

func parseStopSequences(fields object, req *Request) error {
	raw, ok := fields.get("stop_sequences")
	if !present(raw, ok) {
		return nil
	}

	items, err := decodeArray(raw, "stop_sequences")
	if err != nil {
		return err
	}
	req.StopSequences = make([]string, len(items))
	for i, item := range items {
		req.StopSequences[i], err = decodeString(item, index("stop_sequences", i))
		if err != nil {
			return err
		}
	}
	return nil
}
