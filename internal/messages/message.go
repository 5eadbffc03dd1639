package messages

import (
	"encoding/json"
	"fmt"
)

// StopReason is the reason the model stopped generating.
type StopReason string

// The stop reasons of the Messages API.
const (
	StopEndTurn                    StopReason = "end_turn"
	StopMaxTokens                  StopReason = "max_tokens"
	StopSequence                   StopReason = "stop_sequence"
	StopToolUse                    StopReason = "tool_use"
	StopPauseTurn                  StopReason = "pause_turn"
	StopRefusal                    StopReason = "refusal"
	StopModelContextWindowExceeded StopReason = "model_context_window_exceeded"
)

// ServiceTierBatch is the usage.service_tier of responses produced for a
// batch.
const ServiceTierBatch = "batch"

// NullableString is a string field that the API sends as null when it has no
// value. The empty string encodes as null, and null decodes as "".
type NullableString string

// MarshalJSON encodes s as a JSON string, or as null when s is empty.
func (s NullableString) MarshalJSON() ([]byte, error) {
	return appendNullableString(nil, string(s)), nil
}

// Message is a Messages API response body: the message inside a succeeded
// batch result.
//
// It encodes with every field the API schema lists, in the API's order.
// Fields left at their zero value encode as the API would send them when
// absent: an empty Type or Role as "message" or "assistant", nil Content as
// [], and nil pointers, empty NullableStrings and nil raw JSON as null. Use
// [NewMessage] to start one.
type Message struct {
	// ID is the message id, such as "msg_013Zva2CMHLNnXjNJJKqJ2EF".
	ID string `json:"id"`

	// Type is always "message".
	Type string `json:"type"`

	// Role is always "assistant".
	Role string `json:"role"`

	// Model is the model that produced the message.
	Model string `json:"model"`

	// Content are the generated blocks.
	Content []ContentBlock `json:"content"`

	// StopReason is the reason generation stopped. Empty encodes as null.
	StopReason StopReason `json:"stop_reason"`

	// StopSequence is the custom stop sequence that ended generation, if
	// one did.
	StopSequence NullableString `json:"stop_sequence"`

	// StopDetails explains a refusal, or is nil.
	StopDetails *StopDetails `json:"stop_details"`

	// Container describes the code execution container used, or is nil.
	Container *Container `json:"container"`

	// Diagnostics is the request-level diagnostics object as raw JSON, or nil.
	Diagnostics json.RawMessage `json:"diagnostics"`

	// Usage is the token accounting of the request.
	Usage Usage `json:"usage"`
}

// NewMessage returns a Message with the given id and model, no content, and
// usage.service_tier set to "batch".
func NewMessage(id, model string) Message {
	return Message{
		ID:      id,
		Type:    "message",
		Role:    "assistant",
		Model:   model,
		Content: []ContentBlock{},
		Usage:   Usage{ServiceTier: ServiceTierBatch},
	}
}

// StopDetails is structured information about a refusal.
type StopDetails struct {
	// Type is "refusal".
	Type string `json:"type"`

	// Category is the policy category of the refusal, or empty.
	Category NullableString `json:"category"`

	// Explanation is a human-readable explanation, or empty.
	Explanation NullableString `json:"explanation"`
}

// Container describes the code execution container a request used.
type Container struct {
	// ID is the container id.
	ID string `json:"id"`

	// ExpiresAt is when the container expires, in RFC 3339 format.
	ExpiresAt string `json:"expires_at"`

	// Skills is the JSON array of skills loaded in the container, or nil.
	Skills json.RawMessage `json:"skills"`
}

// Usage is the token accounting of one request.
type Usage struct {
	// InputTokens is the number of input tokens that were not read from or
	// written to the prompt cache.
	InputTokens int64 `json:"input_tokens"`

	// OutputTokens is the number of generated tokens, thinking included.
	OutputTokens int64 `json:"output_tokens"`

	// CacheCreationInputTokens is the number of input tokens written to the
	// prompt cache.
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`

	// CacheReadInputTokens is the number of input tokens read from the
	// prompt cache.
	CacheReadInputTokens int64 `json:"cache_read_input_tokens"`

	// CacheCreation splits CacheCreationInputTokens by cache lifetime, or is
	// nil.
	CacheCreation *CacheCreation `json:"cache_creation"`

	// ServerToolUse counts server tool requests, or is nil.
	ServerToolUse *ServerToolUsage `json:"server_tool_use"`

	// ServiceTier is "standard", "priority" or "batch".
	ServiceTier NullableString `json:"service_tier"`

	// InferenceGeo is the region inference ran in, such as "global".
	InferenceGeo NullableString `json:"inference_geo"`

	// OutputTokensDetails splits OutputTokens by kind, or is nil.
	OutputTokensDetails *OutputTokensDetails `json:"output_tokens_details"`

	// Speed is the inference speed mode, "standard" or "fast".
	Speed NullableString `json:"speed"`
}

// CacheCreation splits prompt cache writes by cache lifetime.
type CacheCreation struct {
	Ephemeral5mInputTokens int64 `json:"ephemeral_5m_input_tokens"`
	Ephemeral1hInputTokens int64 `json:"ephemeral_1h_input_tokens"`
}

// ServerToolUsage counts requests made by server tools.
type ServerToolUsage struct {
	WebSearchRequests int64 `json:"web_search_requests"`
	WebFetchRequests  int64 `json:"web_fetch_requests"`
}

// OutputTokensDetails splits output tokens by kind.
type OutputTokensDetails struct {
	// ThinkingTokens is the number of output tokens spent on thinking.
	ThinkingTokens int64 `json:"thinking_tokens"`
}

// ContentBlock is one block of a Message's content. Which fields are used
// depends on Type: text uses Text and Citations, thinking uses Thinking and
// Signature, redacted_thinking uses Data, and tool_use uses ID, Name, Input
// and Caller. A block of any other type is encoded from Raw alone.
type ContentBlock struct {
	// Type is the block type, such as "text" or "tool_use".
	Type string

	// Text is the text of a text block.
	Text string

	// Citations is the JSON array of a text block's citations; nil encodes
	// as null.
	Citations json.RawMessage

	// Thinking is the text of a thinking block.
	Thinking string

	// Signature is the signature of a thinking block.
	Signature string

	// Data is the opaque data of a redacted_thinking block.
	Data string

	// ID is the id of a tool_use block, such as "toolu_01A09q90qw90lq917835".
	ID string

	// Name is the tool a tool_use block calls.
	Name string

	// Input is the JSON object a tool_use block passes to the tool; nil
	// encodes as {}.
	Input json.RawMessage

	// Caller is the JSON object saying what invoked a tool_use block; nil
	// encodes as {"type":"direct"}, a call made by the model itself.
	Caller json.RawMessage

	// Raw is the whole encoded block, for types other than the four above.
	Raw json.RawMessage
}

// TextBlock returns a text block without citations.
func TextBlock(text string) ContentBlock {
	return ContentBlock{Type: BlockText, Text: text}
}

// ThinkingBlock returns a thinking block.
func ThinkingBlock(thinking, signature string) ContentBlock {
	return ContentBlock{Type: BlockThinking, Thinking: thinking, Signature: signature}
}

// ToolUseBlock returns a tool_use block made by the model itself.
func ToolUseBlock(id, name string, input json.RawMessage) ContentBlock {
	return ContentBlock{Type: BlockToolUse, ID: id, Name: name, Input: input}
}

// MarshalJSON encodes b in the shape the API uses for its type.
func (b ContentBlock) MarshalJSON() ([]byte, error) {
	return b.appendJSON(nil)
}

// UnmarshalJSON decodes a block of any type. Blocks of types other than text,
// thinking, redacted_thinking and tool_use keep only Type and Raw.
func (b *ContentBlock) UnmarshalJSON(data []byte) error {
	var wire struct {
		Type      string          `json:"type"`
		Text      string          `json:"text"`
		Citations json.RawMessage `json:"citations"`
		Thinking  string          `json:"thinking"`
		Signature string          `json:"signature"`
		Data      string          `json:"data"`
		ID        string          `json:"id"`
		Name      string          `json:"name"`
		Input     json.RawMessage `json:"input"`
		Caller    json.RawMessage `json:"caller"`
	}
	if err := json.Unmarshal(data, &wire); err != nil {
		return fmt.Errorf("decode content block: %w", err)
	}

	switch wire.Type {
	case BlockText, BlockThinking, BlockRedactedThinking, BlockToolUse:
		*b = ContentBlock{
			Type:      wire.Type,
			Text:      wire.Text,
			Citations: nullToNil(wire.Citations),
			Thinking:  wire.Thinking,
			Signature: wire.Signature,
			Data:      wire.Data,
			ID:        wire.ID,
			Name:      wire.Name,
			Input:     nullToNil(wire.Input),
			Caller:    nullToNil(wire.Caller),
		}
	default:
		*b = ContentBlock{Type: wire.Type, Raw: append(json.RawMessage(nil), data...)}
	}
	return nil
}

// nullToNil returns nil for a JSON null, so a decoded block encodes the same
// way again.
func nullToNil(raw json.RawMessage) json.RawMessage {
	if kindOf(raw) == kindNull {
		return nil
	}
	return raw
}

// MarshalJSON encodes m with every field of the API schema; see [Message].
func (m Message) MarshalJSON() ([]byte, error) {
	return m.AppendJSON(make([]byte, 0, 512))
}

// AppendJSON appends the encoding of m to dst, as [Message.MarshalJSON] does
// but without the extra pass that json.Marshal makes over a Marshaler's
// output. It fails when a raw JSON field contains invalid JSON, or when a
// block of a type it does not encode itself has no Raw.
func (m Message) AppendJSON(dst []byte) ([]byte, error) {
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, m.ID)
	dst = append(dst, `,"type":`...)
	dst = appendString(dst, orDefault(m.Type, "message"))
	dst = append(dst, `,"role":`...)
	dst = appendString(dst, orDefault(m.Role, "assistant"))
	dst = append(dst, `,"model":`...)
	dst = appendString(dst, m.Model)

	dst = append(dst, `,"content":[`...)
	for i, block := range m.Content {
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dst, err = block.appendJSON(dst); err != nil {
			return nil, fmt.Errorf("encode content block %d: %w", i, err)
		}
	}
	dst = append(dst, ']')

	dst = append(dst, `,"stop_reason":`...)
	dst = appendNullableString(dst, string(m.StopReason))
	dst = append(dst, `,"stop_sequence":`...)
	dst = appendNullableString(dst, string(m.StopSequence))
	dst = append(dst, `,"stop_details":`...)
	dst = appendStopDetails(dst, m.StopDetails)

	dst = append(dst, `,"container":`...)
	dst, err := appendContainer(dst, m.Container)
	if err != nil {
		return nil, err
	}
	dst = append(dst, `,"diagnostics":`...)
	if dst, err = appendRaw(dst, m.Diagnostics, "null", "diagnostics"); err != nil {
		return nil, err
	}

	dst = append(dst, `,"usage":`...)
	dst = m.Usage.appendJSON(dst)
	return append(dst, '}'), nil
}

func (b ContentBlock) appendJSON(dst []byte) ([]byte, error) {
	var err error
	switch b.Type {
	case BlockText:
		dst = append(dst, `{"type":"text","text":`...)
		dst = appendString(dst, b.Text)
		dst = append(dst, `,"citations":`...)
		dst, err = appendRaw(dst, b.Citations, "null", "citations")
	case BlockThinking:
		dst = append(dst, `{"type":"thinking","thinking":`...)
		dst = appendString(dst, b.Thinking)
		dst = append(dst, `,"signature":`...)
		dst = appendString(dst, b.Signature)
	case BlockRedactedThinking:
		dst = append(dst, `{"type":"redacted_thinking","data":`...)
		dst = appendString(dst, b.Data)
	case BlockToolUse:
		dst = append(dst, `{"type":"tool_use","id":`...)
		dst = appendString(dst, b.ID)
		dst = append(dst, `,"name":`...)
		dst = appendString(dst, b.Name)
		dst = append(dst, `,"input":`...)
		if dst, err = appendRaw(dst, b.Input, "{}", "input"); err != nil {
			return nil, err
		}
		dst = append(dst, `,"caller":`...)
		dst, err = appendRaw(dst, b.Caller, `{"type":"direct"}`, "caller")
	default:
		if b.Raw == nil {
			return nil, fmt.Errorf("content block of type %q has no Raw encoding", b.Type)
		}
		return appendRaw(dst, b.Raw, "", "block")
	}
	if err != nil {
		return nil, err
	}
	return append(dst, '}'), nil
}

func (u Usage) appendJSON(dst []byte) []byte {
	dst = append(dst, `{"input_tokens":`...)
	dst = appendInt(dst, u.InputTokens)
	dst = append(dst, `,"output_tokens":`...)
	dst = appendInt(dst, u.OutputTokens)
	dst = append(dst, `,"cache_creation_input_tokens":`...)
	dst = appendInt(dst, u.CacheCreationInputTokens)
	dst = append(dst, `,"cache_read_input_tokens":`...)
	dst = appendInt(dst, u.CacheReadInputTokens)

	dst = append(dst, `,"cache_creation":`...)
	if c := u.CacheCreation; c != nil {
		dst = append(dst, `{"ephemeral_5m_input_tokens":`...)
		dst = appendInt(dst, c.Ephemeral5mInputTokens)
		dst = append(dst, `,"ephemeral_1h_input_tokens":`...)
		dst = appendInt(dst, c.Ephemeral1hInputTokens)
		dst = append(dst, '}')
	} else {
		dst = append(dst, "null"...)
	}

	dst = append(dst, `,"server_tool_use":`...)
	if s := u.ServerToolUse; s != nil {
		dst = append(dst, `{"web_search_requests":`...)
		dst = appendInt(dst, s.WebSearchRequests)
		dst = append(dst, `,"web_fetch_requests":`...)
		dst = appendInt(dst, s.WebFetchRequests)
		dst = append(dst, '}')
	} else {
		dst = append(dst, "null"...)
	}

	dst = append(dst, `,"service_tier":`...)
	dst = appendNullableString(dst, string(u.ServiceTier))
	dst = append(dst, `,"inference_geo":`...)
	dst = appendNullableString(dst, string(u.InferenceGeo))

	dst = append(dst, `,"output_tokens_details":`...)
	if d := u.OutputTokensDetails; d != nil {
		dst = append(dst, `{"thinking_tokens":`...)
		dst = appendInt(dst, d.ThinkingTokens)
		dst = append(dst, '}')
	} else {
		dst = append(dst, "null"...)
	}

	dst = append(dst, `,"speed":`...)
	dst = appendNullableString(dst, string(u.Speed))
	return append(dst, '}')
}

func appendStopDetails(dst []byte, d *StopDetails) []byte {
	if d == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, `{"type":`...)
	dst = appendString(dst, orDefault(d.Type, "refusal"))
	dst = append(dst, `,"category":`...)
	dst = appendNullableString(dst, string(d.Category))
	dst = append(dst, `,"explanation":`...)
	dst = appendNullableString(dst, string(d.Explanation))
	return append(dst, '}')
}

func appendContainer(dst []byte, c *Container) ([]byte, error) {
	if c == nil {
		return append(dst, "null"...), nil
	}
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, c.ID)
	dst = append(dst, `,"expires_at":`...)
	dst = appendString(dst, c.ExpiresAt)
	dst = append(dst, `,"skills":`...)
	dst, err := appendRaw(dst, c.Skills, "null", "container.skills")
	if err != nil {
		return nil, err
	}
	return append(dst, '}'), nil
}

func orDefault(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}
