package testmodel

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/batchd/batchd/internal/backend"
	"github.com/batchd/batchd/internal/messages"
)

// bytesPerToken is the divisor of the token approximation: a text of n bytes
// counts as ceil(n / bytesPerToken) tokens.
const bytesPerToken = 4

// tokens returns the approximate token count of a text of n bytes.
func tokens(n int) int {
	return (n + bytesPerToken - 1) / bytesPerToken
}

// Limits of the echoed excerpts in generated text, in bytes.
const (
	systemExcerptLen   = 60
	userExcerptLen     = 200
	thinkingExcerptLen = 80
)

// words is the vocabulary of generated sentences.
var words = [...]string{
	"alpha", "amber", "anchor", "apple", "arrow", "autumn", "basket", "beacon",
	"bridge", "candle", "canyon", "cedar", "circle", "cloud", "copper", "coral",
	"delta", "desert", "ember", "falcon", "feather", "field", "forest", "garden",
	"glacier", "harbor", "island", "jasmine", "kettle", "lantern", "lemon", "marble",
	"meadow", "mirror", "nebula", "orbit", "pebble", "pepper", "planet", "quartz",
	"river", "saddle", "signal", "silver", "spiral", "spring", "summit", "thunder",
	"timber", "tulip", "valley", "velvet", "violet", "walnut", "willow", "window",
	"winter", "yellow", "zephyr", "compass", "lattice", "prism", "sonnet", "tidal",
}

// generate builds the Message that responds to req. lastText is the text of the
// last user message, content hashes the params and id the request's
// identity. The Message depends only on req and content, except for the
// ids, which come from id.
func generate(req messages.Request, lastText string, content, id digest) (messages.Message, error) {
	r := newRNG(content.word(0))
	msg := messages.NewMessage(appendPrefixedID("msg_", id.word(2)), req.Model)
	msg.Usage.InputTokens = int64(tokens(inputBytes(req)))

	// Thinking comes first and spends part of max_tokens.
	budget := req.MaxTokens
	if req.Thinking.Enabled() {
		block, used := think(req, lastText, r)
		if used > 0 {
			msg.Content = append(msg.Content, block)
			msg.Usage.OutputTokens += int64(used)
			msg.Usage.OutputTokensDetails = &messages.OutputTokensDetails{
				ThinkingTokens: int64(used),
			}
			budget -= used
		}
	}

	tool, forced := chooseTool(req, r)
	var text string
	switch {
	case tool == nil:
		text = composeText(req, lastText, r)
	case !forced:
		text = "I will use the " + tool.Name + " tool."
	}

	// Stop sequences and max_tokens end the text; a tool call comes only
	// after text that ended on its own.
	text, stop, seq := applyStops(text, req.StopSequences, budget)
	if text != "" {
		msg.Content = append(msg.Content, messages.TextBlock(text))
		used := tokens(len(text))
		msg.Usage.OutputTokens += int64(used)
		budget -= used
	}
	msg.StopReason, msg.StopSequence = stop, messages.NullableString(seq)
	if stop != messages.StopEndTurn || tool == nil {
		return msg, nil
	}

	input, err := generateInput(tool.InputSchema, r)
	if err != nil {
		return msg, newError(backend.TypeInvalidRequest,
			fmt.Sprintf("tools: input_schema of tool %q: %v", tool.Name, err))
	}
	used := tokens(len(tool.Name) + len(input))
	if used > budget {
		// The call does not fit in what is left of max_tokens.
		msg.StopReason = messages.StopMaxTokens
		return msg, nil
	}
	toolID := appendPrefixedID("toolu_", id.word(3))
	msg.Content = append(msg.Content, messages.ToolUseBlock(toolID, tool.Name, input))
	msg.Usage.OutputTokens += int64(used)
	msg.StopReason = messages.StopToolUse
	return msg, nil
}

// applyStops cuts text at the first stop sequence or at budget tokens,
// whichever the model would reach first, and returns the remaining text, the
// stop reason and the stop sequence that matched. A stop sequence counts
// only if the model could generate all of it within budget.
func applyStops(text string, stopSequences []string, budget int) (string, messages.StopReason,
	string) {
	at, matched := -1, ""
	for _, seq := range stopSequences {
		if seq == "" {
			continue
		}
		if i := strings.Index(text, seq); i >= 0 && (at < 0 || i < at) {
			at, matched = i, seq
		}
	}
	if at >= 0 && tokens(at+len(matched)) <= budget {
		return text[:at], messages.StopSequence, matched
	}

	if tokens(len(text)) > budget {
		return truncate(text, budget*bytesPerToken), messages.StopMaxTokens, ""
	}
	return text, messages.StopEndTurn, ""
}

// think returns the thinking block for req and the tokens it used. The
// thinking may use budget_tokens when thinking is enabled, or half of
// max_tokens when it is adaptive. With display "omitted" the block's text is
// empty, but its tokens still count, as in the API.
func think(req messages.Request, lastText string, r *rng) (messages.ContentBlock, int) {
	limit := req.MaxTokens / 2
	if req.Thinking.Type == messages.ThinkingEnabled {
		limit = req.Thinking.BudgetTokens
	}
	if limit <= 0 {
		return messages.ContentBlock{}, 0
	}

	var b strings.Builder
	b.WriteString("The request asks: \"")
	b.WriteString(excerpt(lastText, thinkingExcerptLen))
	b.WriteString("\". ")
	writeSentence(&b, r, 12+r.intn(30))
	thinking := truncate(b.String(), limit*bytesPerToken)

	sum := sha256.Sum256([]byte("batchd test model thinking\x00" + thinking))
	signature := base64.StdEncoding.EncodeToString(sum[:])
	used := tokens(len(thinking))
	if req.Thinking.Display == "omitted" {
		thinking = ""
	}
	return messages.ThinkingBlock(thinking, signature), used
}

// checkToolChoice rejects a tool_choice that the test model cannot follow,
// because it calls only custom tools and cannot run server tools.
func checkToolChoice(req messages.Request) error {
	if req.ToolChoice == nil {
		return nil
	}

	switch req.ToolChoice.Type {
	case messages.ToolChoiceTool:
		name := req.ToolChoice.Name
		tool := findTool(req, name)
		if tool == nil {
			return newError(backend.TypeInvalidRequest, fmt.Sprintf(
				"tool_choice.name: no tool named %q in tools", name))
		}
		if !tool.Custom() {
			return newError(backend.TypeInvalidRequest, fmt.Sprintf(
				"tool_choice.name: the test model cannot call server tool %q", name))
		}
	case messages.ToolChoiceAny:
		if len(customTools(req)) == 0 {
			return newError(backend.TypeInvalidRequest, `tool_choice: type "any" `+
				"needs at least one custom tool (with input_schema) for the test model to call")
		}
	}
	return nil
}

// chooseTool returns the custom tool the response calls, or nil for a text
// response, and whether tool_choice forced the call. It expects req to have
// passed [checkToolChoice].
func chooseTool(req messages.Request, r *rng) (*messages.Tool, bool) {
	custom := customTools(req)

	choice := messages.ToolChoiceAuto
	if req.ToolChoice != nil {
		choice = req.ToolChoice.Type
	}

	switch choice {
	case messages.ToolChoiceNone:
		return nil, false
	case messages.ToolChoiceTool:
		tool := findTool(req, req.ToolChoice.Name)
		return tool, tool != nil
	case messages.ToolChoiceAny:
		if len(custom) == 0 {
			return nil, false
		}
		return custom[r.intn(len(custom))], true
	}

	// With tool_choice auto, half of the requests call a tool. A request
	// that already returns a tool result gets text, so that a tool loop
	// ends.
	if len(custom) == 0 || answersToolCall(req) || r.next()&1 == 0 {
		return nil, false
	}
	return custom[r.intn(len(custom))], false
}

// customTools returns the request's custom tools, in order.
func customTools(req messages.Request) []*messages.Tool {
	var custom []*messages.Tool
	for i := range req.Tools {
		if req.Tools[i].Custom() {
			custom = append(custom, &req.Tools[i])
		}
	}
	return custom
}

// findTool returns the tool named name, or nil.
func findTool(req messages.Request, name string) *messages.Tool {
	for i := range req.Tools {
		if req.Tools[i].Name == name {
			return &req.Tools[i]
		}
	}
	return nil
}

// answersToolCall reports whether the last message is a user message that
// contains a tool_result block.
func answersToolCall(req messages.Request) bool {
	last := req.Messages[len(req.Messages)-1]
	if last.Role != messages.RoleUser {
		return false
	}
	for _, block := range last.Content {
		if block.Type == messages.BlockToolResult {
			return true
		}
	}
	return false
}

// composeText builds a text answer: an excerpt of the system prompt, an echo
// of the last user message and a sentence of words drawn by r.
func composeText(req messages.Request, lastText string, r *rng) string {
	var b strings.Builder
	b.Grow(320)

	if req.System != "" {
		b.WriteString("[system: ")
		b.WriteString(excerpt(req.System, systemExcerptLen))
		b.WriteString("] ")
	}
	b.WriteString("You said: \"")
	b.WriteString(excerpt(lastText, userExcerptLen))
	b.WriteString("\". ")
	writeSentence(&b, r, 6+r.intn(20))
	return b.String()
}

// writeSentence writes n words drawn by r, capitalised and ending in a
// period.
func writeSentence(b *strings.Builder, r *rng, n int) {
	for i := range n {
		w := words[r.intn(len(words))]
		if i == 0 {
			b.WriteByte(w[0] - 'a' + 'A')
			b.WriteString(w[1:])
			continue
		}
		b.WriteByte(' ')
		b.WriteString(w)
	}
	b.WriteByte('.')
}

// excerpt returns s with each run of white space turned into one space, cut
// to at most maxLen bytes; a cut excerpt ends in "...".
func excerpt(s string, maxLen int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= maxLen {
		return s
	}
	return truncate(s, maxLen-3) + "..."
}

// truncate cuts s to at most maxLen bytes without splitting a UTF-8
// sequence.
func truncate(s string, maxLen int) string {
	if len(s) <= maxLen {
		return s
	}
	if maxLen <= 0 {
		return ""
	}
	for maxLen > 0 && !utf8.RuneStart(s[maxLen]) {
		maxLen--
	}
	return s[:maxLen]
}

// inputBytes returns the size of everything the request gives the model, in
// bytes, as the package documentation defines it.
func inputBytes(req messages.Request) int {
	n := 0
	for _, block := range req.SystemBlocks {
		n += len(block.Text)
	}
	for _, msg := range req.Messages {
		for _, block := range msg.Content {
			n += blockBytes(block)
		}
	}
	for _, tool := range req.Tools {
		if tool.Custom() {
			n += len(tool.Name) + len(tool.Description) + len(tool.InputSchema)
		} else {
			n += len(tool.Raw)
		}
	}
	return n
}

func blockBytes(block messages.InputBlock) int {
	switch block.Type {
	case messages.BlockText:
		return len(block.Text)
	case messages.BlockThinking:
		return len(block.Thinking)
	case messages.BlockRedactedThinking:
		return len(block.Data)
	case messages.BlockToolUse, messages.BlockServerToolUse:
		return len(block.Name) + len(block.Input)
	case messages.BlockToolResult:
		n := 0
		for _, inner := range block.Content {
			n += blockBytes(inner)
		}
		return n
	}
	return len(block.Raw)
}

// appendPrefixedID returns prefix followed by 24 base62 characters derived
// from seed.
func appendPrefixedID(prefix string, seed uint64) string {
	buf := make([]byte, 0, len(prefix)+24)
	buf = append(buf, prefix...)
	return string(appendID(buf, seed, 24))
}
