package messages

import (
	"encoding/json"
	"math"
	"unicode/utf8"
)

// parseTools reads the tools array. Custom tools need a name of letters,
// digits, '_' and '-' and an input_schema object of type "object". Server
// tools, recognised by a type other than "custom", are checked only for the
// types of name and type, so that tool versions newer than this code pass.
func parseTools(fields object, req *Request) error {
	raw, ok := fields.get("tools")
	if !present(raw, ok) {
		return nil
	}

	items, err := decodeArray(raw, "tools")
	if err != nil {
		return err
	}
	req.Tools = make([]Tool, len(items))
	seen := make(map[string]int, len(items))
	for i, item := range items {
		path := index("tools", i)
		tool, err := parseTool(item, path)
		if err != nil {
			return err
		}

		if tool.Name != "" {
			if first, dup := seen[tool.Name]; dup {
				return invalid(path+".name", "tool name %s is already used by tools.%d",
					quote(tool.Name), first)
			}
			seen[tool.Name] = i
		}
		req.Tools[i] = tool
	}
	return nil
}

func parseTool(raw json.RawMessage, path string) (Tool, error) {
	tool := Tool{Raw: raw}

	fields, err := decodeObject(raw, path)
	if err != nil {
		return tool, err
	}
	if tool.Type, err = optionalString(fields, "type", path); err != nil {
		return tool, err
	}
	if tool.Description, err = optionalString(fields, "description", path); err != nil {
		return tool, err
	}

	if !tool.Custom() {
		tool.Name, err = optionalString(fields, "name", path)
		return tool, err
	}

	if tool.Name, err = requiredString(fields, "name", path); err != nil {
		return tool, err
	}
	if err := checkToolName(tool.Name, path+".name"); err != nil {
		return tool, err
	}

	schema, ok := fields.get("input_schema")
	if !ok {
		return tool, invalid(path+".input_schema", "field required")
	}
	if err := checkInputSchema(schema, path+".input_schema"); err != nil {
		return tool, err
	}
	tool.InputSchema = schema
	return tool, nil
}

// checkToolName applies the API's rule for custom tool names: 1 to 128
// letters, digits, '_' or '-'.
func checkToolName(name, path string) error {
	if name == "" || len(name) > maxToolNameLen {
		return invalid(path, "must be 1 to %d characters long, got %d", maxToolNameLen, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '-'
		if !ok {
			return invalid(path, "%s contains %q; only letters, digits, '_' and '-' are allowed",
				quote(name), c)
		}
	}
	return nil
}

// checkInputSchema checks the outline the API requires of a custom tool's
// input schema: an object whose type is "object". The rest of the JSON
// Schema is not checked.
func checkInputSchema(raw json.RawMessage, path string) error {
	fields, err := decodeObject(raw, path)
	if err != nil {
		return err
	}

	typ, err := requiredString(fields, "type", path)
	if err != nil {
		return err
	}
	if typ != "object" {
		return invalid(path+".type", `must be "object", got %s`, quote(typ))
	}

	if props, ok := fields.get("properties"); present(props, ok) && kindOf(props) != kindObject {
		return wrongType(path+".properties", "an object", props)
	}
	if req, ok := fields.get("required"); present(req, ok) {
		items, err := decodeArray(req, path+".required")
		if err != nil {
			return err
		}
		for i, item := range items {
			if kindOf(item) != kindString {
				return wrongType(index(path+".required", i), "a string", item)
			}
		}
	}
	return nil
}

func parseToolChoice(fields object, req *Request) error {
	raw, ok := fields.get("tool_choice")
	if !present(raw, ok) {
		return nil
	}

	choiceFields, err := decodeObject(raw, "tool_choice")
	if err != nil {
		return err
	}
	choice := &ToolChoice{}
	if choice.Type, err = requiredString(choiceFields, "type", "tool_choice"); err != nil {
		return err
	}

	switch choice.Type {
	case ToolChoiceAuto, ToolChoiceAny, ToolChoiceNone:
	case ToolChoiceTool:
		if choice.Name, err = requiredString(choiceFields, "name", "tool_choice"); err != nil {
			return err
		}
		if choice.Name == "" {
			return invalid("tool_choice.name", "must not be empty")
		}
	default:
		return invalid("tool_choice.type", `must be "auto", "any", "tool" or "none", got %s`,
			quote(choice.Type))
	}

	if raw, ok := choiceFields.get("disable_parallel_tool_use"); present(raw, ok) {
		choice.DisableParallelToolUse, err = decodeBool(raw,
			"tool_choice.disable_parallel_tool_use")
		if err != nil {
			return err
		}
	}
	req.ToolChoice = choice
	return nil
}

// parseThinking reads the thinking setting. It runs after max_tokens is
// known, because an enabled budget must stay below max_tokens.
func parseThinking(fields object, req *Request) error {
	raw, ok := fields.get("thinking")
	if !present(raw, ok) {
		return nil
	}

	thinkingFields, err := decodeObject(raw, "thinking")
	if err != nil {
		return err
	}
	thinking := &Thinking{}
	if thinking.Type, err = requiredString(thinkingFields, "type", "thinking"); err != nil {
		return err
	}

	switch thinking.Type {
	case ThinkingEnabled:
		budgetRaw, ok := thinkingFields.get("budget_tokens")
		if !ok {
			return invalid("thinking.budget_tokens", "field required")
		}
		budget, err := decodeInt(budgetRaw, "thinking.budget_tokens", minBudgetTokens,
			math.MaxInt64)
		if err != nil {
			return err
		}
		if budget >= int64(req.MaxTokens) {
			return invalid("thinking.budget_tokens", "must be less than max_tokens (%d), got %d",
				req.MaxTokens, budget)
		}
		thinking.BudgetTokens = int(budget)
	case ThinkingDisabled, ThinkingAdaptive, ThinkingBetweenTools:
	default:
		return invalid("thinking.type",
			`must be "enabled", "disabled", "adaptive" or "between_tools", got %s`,
			quote(thinking.Type))
	}

	if thinking.Display, err = optionalString(thinkingFields, "display", "thinking"); err != nil {
		return err
	}
	switch thinking.Display {
	case "", "summarized", "omitted":
	default:
		return invalid("thinking.display", `must be "summarized" or "omitted", got %s`,
			quote(thinking.Display))
	}

	req.Thinking = thinking
	return nil
}

// parseSampling reads temperature, top_p and top_k.
func parseSampling(fields object, req *Request) error {
	var err error
	if req.Temperature, err = optionalUnitNumber(fields, "temperature"); err != nil {
		return err
	}
	if req.TopP, err = optionalUnitNumber(fields, "top_p"); err != nil {
		return err
	}

	raw, ok := fields.get("top_k")
	if !present(raw, ok) {
		return nil
	}
	topK, err := decodeInt(raw, "top_k", 0, math.MaxInt32)
	if err != nil {
		return err
	}
	n := int(topK)
	req.TopK = &n
	return nil
}

// optionalUnitNumber reads the number field name, which must lie in [0, 1],
// or returns nil when the field is absent or null.
func optionalUnitNumber(fields object, name string) (*float64, error) {
	raw, ok := fields.get(name)
	if !present(raw, ok) {
		return nil, nil
	}

	f, err := decodeNumber(raw, name)
	if err != nil {
		return nil, err
	}
	if f < 0 || f > 1 {
		return nil, invalid(name, "must be between 0 and 1, got %s", abbreviate(raw))
	}
	return &f, nil
}

func parseMetadata(fields object, req *Request) error {
	raw, ok := fields.get("metadata")
	if !present(raw, ok) {
		return nil
	}

	metaFields, err := decodeObject(raw, "metadata")
	if err != nil {
		return err
	}
	userID, err := optionalString(metaFields, "user_id", "metadata")
	if err != nil {
		return err
	}
	if n := utf8.RuneCountInString(userID); n > maxUserIDLen {
		return invalid("metadata.user_id", "must be at most %d characters long, got %d",
			maxUserIDLen, n)
	}
	req.Metadata.UserID = userID
	return nil
}

// parseOutputConfig reads output_config and service_tier. Their values are
// checked only for their JSON types, because the allowed values change with
// API versions.
func parseOutputConfig(fields object, req *Request) error {
	if raw, ok := fields.get("service_tier"); present(raw, ok) {
		tier, err := decodeString(raw, "service_tier")
		if err != nil {
			return err
		}
		req.ServiceTier = tier
	}

	raw, ok := fields.get("output_config")
	if !present(raw, ok) {
		return nil
	}
	configFields, err := decodeObject(raw, "output_config")
	if err != nil {
		return err
	}

	config := &OutputConfig{}
	if config.Effort, err = optionalString(configFields, "effort", "output_config"); err != nil {
		return err
	}
	if format, ok := configFields.get("format"); present(format, ok) {
		if kindOf(format) != kindObject {
			return wrongType("output_config.format", "an object", format)
		}
		config.Format = format
	}
	req.OutputConfig = config
	return nil
}
