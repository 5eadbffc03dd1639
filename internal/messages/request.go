package messages

import "encoding/json"

// Request is a typed view of a Messages API request body. [Parse] builds it
// after checking the body as [Validate] does. Fields the client left out hold
// their zero value; optional numbers and objects are nil pointers.
//
// Every json.RawMessage in a Request is a slice of the params it was parsed
// from and shares its memory, so callers must not modify params while they
// use the Request.
type Request struct {
	// Model is the model name exactly as sent. Any non-empty string passes.
	Model string

	// MaxTokens is the maximum number of tokens to generate, at least 1.
	MaxTokens int

	// System is the text of the system prompt. A system prompt sent as an
	// array of text blocks is flattened by joining the blocks' texts with a
	// blank line ("\n\n").
	System string

	// SystemBlocks are the system prompt's text blocks. A system prompt sent
	// as a string becomes one text block.
	SystemBlocks []InputBlock

	// Messages are the conversation turns in order, at least one.
	Messages []InputMessage

	// StopSequences are the custom strings that end generation.
	StopSequences []string

	// Tools are the tool definitions in the order sent.
	Tools []Tool

	// ToolChoice is the constraint on the model's use of Tools, or nil when
	// not sent.
	ToolChoice *ToolChoice

	// Thinking is the extended thinking setting, or nil when not sent.
	Thinking *Thinking

	// Temperature is the sampling temperature in [0, 1], or nil.
	Temperature *float64

	// TopP is the nucleus sampling threshold in [0, 1], or nil.
	TopP *float64

	// TopK is the number of top tokens sampled from, at least 0, or nil.
	TopK *int

	// Metadata is the request's metadata object.
	Metadata Metadata

	// OutputConfig is the output_config object, or nil when not sent.
	OutputConfig *OutputConfig

	// ServiceTier is "auto", "standard_only" or empty when not sent.
	ServiceTier string
}

// Roles a message in Request.Messages can have. RoleSystem is the
// mid-conversation system message of newer API versions; its content holds
// only text blocks.
const (
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleSystem    = "system"
)

// InputMessage is one turn of the conversation.
type InputMessage struct {
	// Role is [RoleUser], [RoleAssistant] or [RoleSystem].
	Role string

	// Content are the turn's blocks. Content sent as a string becomes one
	// text block.
	Content []InputBlock
}

// Text returns the texts of m's text blocks joined with no separator.
// Blocks of other types are skipped.
func (m InputMessage) Text() string {
	return joinText(m.Content, "")
}

// Block types the parser reads fields from. Blocks of any other type, such
// as search_result or web_search_tool_result, are kept only as Raw.
const (
	BlockText             = "text"
	BlockImage            = "image"
	BlockDocument         = "document"
	BlockToolUse          = "tool_use"
	BlockServerToolUse    = "server_tool_use"
	BlockToolResult       = "tool_result"
	BlockThinking         = "thinking"
	BlockRedactedThinking = "redacted_thinking"
)

// InputBlock is one content block of a request. Which fields are set depends
// on Type, as each field's comment states.
type InputBlock struct {
	// Type is the block's type, such as "text" or "tool_use".
	Type string

	// Text is the text of a text block.
	Text string

	// Source is the source of an image or document block.
	Source *Source

	// ID is the id of a tool_use or server_tool_use block.
	ID string

	// Name is the tool name of a tool_use or server_tool_use block.
	Name string

	// Input is the JSON object a tool_use or server_tool_use block passes to
	// the tool.
	Input json.RawMessage

	// ToolUseID is the id of the tool_use block that a tool_result replies to.
	ToolUseID string

	// Content are the blocks of a tool_result. Content sent as a string
	// becomes one text block.
	Content []InputBlock

	// IsError reports whether a tool_result describes a failed tool call.
	IsError bool

	// Thinking is the text of a thinking block.
	Thinking string

	// Signature is the signature of a thinking block.
	Signature string

	// Data is the opaque data of a redacted_thinking block.
	Data string

	// Raw is the block exactly as sent, for every type. A block that was sent
	// as a plain string has no Raw.
	Raw json.RawMessage
}

// Source is the origin of an image or document block's data.
type Source struct {
	// Type is "base64", "url", "file", or for documents also "text" and
	// "content".
	Type string

	// MediaType is the MIME type of base64 and text data, such as
	// "image/png".
	MediaType string

	// Data is the base64-encoded bytes of a base64 source, or the text of a
	// text source.
	Data string

	// URL is the address of a url source.
	URL string

	// FileID is the Files API id of a file source.
	FileID string

	// Raw is the source object exactly as sent.
	Raw json.RawMessage
}

// Tool is one entry of a request's tools array.
type Tool struct {
	// Type is empty or "custom" for a custom tool, otherwise the versioned
	// type of a server tool, such as "web_search_20250305".
	Type string

	// Name is the name the model calls the tool by. It is empty only for
	// server tools sent without a name, such as toolsets.
	Name string

	// Description is the custom tool's description, possibly empty.
	Description string

	// InputSchema is the JSON Schema object of a custom tool's input.
	InputSchema json.RawMessage

	// Raw is the tool definition exactly as sent.
	Raw json.RawMessage
}

// Custom reports whether t is a custom tool, defined by the client with an
// input schema, as opposed to a tool the API server runs.
func (t Tool) Custom() bool {
	return t.Type == "" || t.Type == "custom"
}

// Tool choice types.
const (
	ToolChoiceAuto = "auto"
	ToolChoiceAny  = "any"
	ToolChoiceTool = "tool"
	ToolChoiceNone = "none"
)

// ToolChoice is the constraint on the model's use of the tools.
type ToolChoice struct {
	// Type is [ToolChoiceAuto], [ToolChoiceAny], [ToolChoiceTool] or
	// [ToolChoiceNone].
	Type string

	// Name is the tool the model must call when Type is "tool".
	Name string

	// DisableParallelToolUse requests at most one tool call per response.
	DisableParallelToolUse bool
}

// Thinking types.
const (
	ThinkingEnabled      = "enabled"
	ThinkingDisabled     = "disabled"
	ThinkingAdaptive     = "adaptive"
	ThinkingBetweenTools = "between_tools"
)

// Thinking is the extended thinking setting.
type Thinking struct {
	// Type is [ThinkingEnabled], [ThinkingDisabled], [ThinkingAdaptive] or
	// [ThinkingBetweenTools].
	Type string

	// BudgetTokens is how many tokens the model may think for when Type is
	// "enabled": at least 1024 and less than Request.MaxTokens. It is 0 for
	// the other types.
	BudgetTokens int

	// Display is "summarized", "omitted" or empty when not sent.
	Display string
}

// Enabled reports whether the setting makes the model think, which is the
// case for the "enabled" and "adaptive" types.
func (t *Thinking) Enabled() bool {
	return t != nil && (t.Type == ThinkingEnabled || t.Type == ThinkingAdaptive)
}

// Metadata is the request's metadata object.
type Metadata struct {
	// UserID is the opaque end-user id, or empty.
	UserID string
}

// OutputConfig is the output_config object.
type OutputConfig struct {
	// Effort is "low", "medium", "high", "xhigh", "max" or empty.
	Effort string

	// Format is the output format object, such as
	// {"type":"json_schema","schema":{…}}, or nil.
	Format json.RawMessage
}

// Validate checks a Messages API request body, the params of one batch
// request. It returns nil or a [*backend.Error] of type
// invalid_request_error whose message starts with the path of the offending
// field, such as "messages.2.role: …".
//
// Fields the checks do not know are allowed, because the body is forwarded
// to model backends as it is. Validate does not panic on any input, which
// FuzzValidate checks.
func Validate(params json.RawMessage) error {
	_, err := Parse(params)
	return err
}

// Parse checks params as [Validate] does and returns its typed view. On
// error the Request is zero.
func Parse(params json.RawMessage) (Request, error) {
	req, err := parseRequest(params)
	if err != nil {
		return Request{}, err
	}
	return req, nil
}
