package openai

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/messages"
)

// chatResponse is the body of a chat completions reply, limited to the fields
// this backend reads.
type chatResponse struct {
	Choices []chatChoice `json:"choices"`
	Usage   *chatUsage   `json:"usage"`

	// Error is set by servers that report a failure with a 2xx status.
	Error json.RawMessage `json:"error"`
}

type chatChoice struct {
	Message      replyMessage `json:"message"`
	FinishReason string       `json:"finish_reason"`

	// StopReason is a vLLM extension: the stop string that ended generation,
	// a token id, or null.
	StopReason json.RawMessage `json:"stop_reason"`
}

type replyMessage struct {
	// Content is a string, null, or an array of content parts.
	Content   json.RawMessage `json:"content"`
	Refusal   string          `json:"refusal"`
	ToolCalls []replyToolCall `json:"tool_calls"`
}

type replyToolCall struct {
	ID       string `json:"id"`
	Function struct {
		Name string `json:"name"`
		// Arguments is normally a string holding a JSON object. Some
		// servers send the object itself.
		Arguments json.RawMessage `json:"arguments"`
	} `json:"function"`
}

type chatUsage struct {
	PromptTokens        int64 `json:"prompt_tokens"`
	CompletionTokens    int64 `json:"completion_tokens"`
	PromptTokensDetails *struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
}

// errMalformedReply marks a 2xx reply that cannot be read as a chat
// completion.
var errMalformedReply = errors.New("the model server returned an invalid chat completion")

// translateReply builds the Message for a chat completions reply body. model
// is the model name the client requested; stopSequences are the request's
// stop_sequences.
func translateReply(body []byte, model string, stopSequences []string) (messages.Message, error) {
	var reply chatResponse
	if err := json.Unmarshal(body, &reply); err != nil {
		return messages.Message{}, fmt.Errorf("%w: %v", errMalformedReply, err)
	}
	if len(reply.Error) > 0 && !isNull(reply.Error) {
		return messages.Message{}, fmt.Errorf("%w: it reports an error: %s",
			errMalformedReply, errorText(reply.Error))
	}
	if len(reply.Choices) == 0 {
		return messages.Message{}, fmt.Errorf("%w: it has no choices", errMalformedReply)
	}
	choice := reply.Choices[0]

	msg := messages.NewMessage("msg_"+rand.Text(), model)

	text, err := contentText(choice.Message.Content)
	if err != nil {
		return messages.Message{}, err
	}
	if text == "" && choice.Message.Refusal != "" {
		text = choice.Message.Refusal
	}
	if text != "" {
		msg.Content = append(msg.Content, messages.TextBlock(text))
	}

	for i, call := range choice.Message.ToolCalls {
		block, err := toolUseBlock(call, i)
		if err != nil {
			return messages.Message{}, err
		}
		msg.Content = append(msg.Content, block)
	}

	msg.StopReason, msg.StopSequence = stopReason(choice, stopSequences)
	if reply.Usage != nil {
		msg.Usage.InputTokens = reply.Usage.PromptTokens
		msg.Usage.OutputTokens = reply.Usage.CompletionTokens
		// Chat completions counts cached tokens inside prompt_tokens; the
		// Messages API counts them apart from input_tokens.
		if d := reply.Usage.PromptTokensDetails; d != nil && d.CachedTokens > 0 &&
			d.CachedTokens <= reply.Usage.PromptTokens {
			msg.Usage.InputTokens -= d.CachedTokens
			msg.Usage.CacheReadInputTokens = d.CachedTokens
		}
	}
	return msg, nil
}

// contentText returns the text of a reply message's content, which is a
// string, null, or an array of parts whose text parts are concatenated.
func contentText(content json.RawMessage) (string, error) {
	content = bytes.TrimSpace(content)
	if len(content) == 0 || isNull(content) {
		return "", nil
	}

	var text string
	if err := json.Unmarshal(content, &text); err == nil {
		return text, nil
	}

	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(content, &parts); err != nil {
		return "", fmt.Errorf("%w: message content is neither a string nor an array of parts",
			errMalformedReply)
	}
	var b strings.Builder
	for _, part := range parts {
		if part.Type == "text" {
			b.WriteString(part.Text)
		}
	}
	return b.String(), nil
}

// toolUseBlock returns the tool_use block for the i-th tool call of a reply.
// Arguments that are not a JSON object are a malformed reply: the model
// produced a call that a client cannot run, and sampling again may fix it.
func toolUseBlock(call replyToolCall, i int) (messages.ContentBlock, error) {
	if call.Function.Name == "" {
		return messages.ContentBlock{}, fmt.Errorf("%w: tool call %d has no function name",
			errMalformedReply, i)
	}

	input := bytes.TrimSpace(call.Function.Arguments)
	var encoded string
	if err := json.Unmarshal(input, &encoded); err == nil {
		input = bytes.TrimSpace([]byte(encoded))
	}
	if len(input) == 0 {
		// Some servers send "" for a call without arguments.
		input = []byte("{}")
	}
	if input[0] != '{' || !json.Valid(input) {
		return messages.ContentBlock{}, fmt.Errorf("%w: the arguments of tool call %d (%s) are not a "+
			"JSON object: %.200q", errMalformedReply, i, call.Function.Name, input)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, input); err != nil {
		return messages.ContentBlock{}, fmt.Errorf("compact tool call arguments: %w", err)
	}

	return messages.ToolUseBlock(toolUseID(call.ID), call.Function.Name, compact.Bytes()), nil
}

// toolUseID returns id when it is a valid tool_use id (letters, digits, '_'
// and '-') and a new random id otherwise. The id only has to link the call
// to its tool_result within one conversation, which this backend translates
// back, so a replaced id works as well as the original.
func toolUseID(id string) string {
	valid := id != ""
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			valid = false
			break
		}
	}
	if valid {
		return id
	}
	return "toolu_" + rand.Text()
}

// stopReason maps a choice's finish_reason to a Messages API stop reason.
//
// Chat completions reports "stop" both for a natural end and for a stop
// sequence, without saying which sequence matched. vLLM adds the matched
// string as stop_reason, so a reply with one of the request's stop sequences
// there gives stop_sequence. Every other "stop" gives end_turn.
func stopReason(choice chatChoice, stopSequences []string) (messages.StopReason, messages.NullableString) {
	switch choice.FinishReason {
	case "length":
		return messages.StopMaxTokens, ""
	case "tool_calls", "function_call":
		return messages.StopToolUse, ""
	case "content_filter":
		return messages.StopRefusal, ""
	}

	if len(choice.Message.ToolCalls) > 0 {
		// Some servers report "stop" for a reply that calls tools.
		return messages.StopToolUse, ""
	}

	var matched string
	if err := json.Unmarshal(choice.StopReason, &matched); err == nil &&
		slices.Contains(stopSequences, matched) {
		return messages.StopSequence, messages.NullableString(matched)
	}
	return messages.StopEndTurn, ""
}

// encodeMessage encodes msg, which must not fail for a Message this package
// built.
func encodeMessage(msg messages.Message) (json.RawMessage, error) {
	body, err := msg.MarshalJSON()
	if err != nil {
		return nil, &backend.Error{Type: backend.TypeAPI, Message: "encode the translated Message: " + err.Error()}
	}
	return body, nil
}
