// Package testmodel is batchd's built-in model backend: a deterministic fake
// that returns a valid Messages API response for any model name and can be
// configured to be slow or to fail. Tests and demos use it in place of a real
// model server. docs/testmodel.md is the user guide.
//
// # Responses
//
// The same params always produce the same response, byte for byte, apart from
// the message id and tool_use ids. The ids are derived from the batch id, the
// custom_id and the params, so they are stable across retries but differ
// between requests. A text response looks like
//
//	[system: <system prompt excerpt>] You said: "<last user message excerpt>". <words>.
//
// The system part appears only when the request has a system prompt. Both
// excerpts collapse runs of white space to one space and are cut to 60 and
// 200 bytes. The closing sentence has 6 to 25 words drawn from a fixed
// vocabulary, seeded by a SHA-256 hash of the params.
//
// The response honours these parameters:
//
//   - thinking: with type enabled or adaptive, the response starts with a
//     thinking block with a deterministic text and signature. It uses at
//     most budget_tokens (enabled) or half of max_tokens (adaptive). With
//     display omitted its text is empty but its tokens still count.
//   - tools and tool_choice: "any" calls one of the custom tools and "tool"
//     calls the named one, with no text before the call. "auto", which is
//     the default when tools are given, calls a custom tool for about half
//     of all params and responds with text otherwise. "auto" always
//     responds with text when the last message returns a tool_result, so an
//     agent loop ends. "none" responds with text. The call's input is
//     generated to fit the tool's input_schema, and stop_reason is tool_use.
//     Server tools are never called: "tool" naming one, or "any" without
//     custom tools, is an invalid_request_error.
//   - stop_sequences: when the text would contain a stop sequence, it ends
//     just before the first one, stop_reason is stop_sequence and
//     stop_sequence names it. Putting the sequence in the last user message
//     makes it appear in the echo.
//   - max_tokens: output stops after max_tokens tokens (see Usage) with
//     stop_reason max_tokens. Thinking comes first and text next. A tool
//     call that no longer fits is left out.
//
// # Usage
//
// Token counts are an approximation, not a real tokenizer: a text of n bytes
// counts as ceil(n/4) tokens.
//
// input_tokens is ceil(B/4), where B is the sum of the byte lengths of the
// system prompt's texts, and of these parts of every message's blocks: text
// for text blocks; thinking for thinking blocks; data for redacted_thinking
// blocks; name plus the input JSON for tool_use and server_tool_use blocks;
// the same rules applied to the blocks inside tool_result blocks; and the
// whole JSON encoding of every other block, images and documents included.
// B also includes, for each custom tool, its name, description and
// input_schema JSON, and for each server tool its whole JSON definition.
//
// output_tokens is the sum over the response's blocks of ceil(n/4), where n is
// the thinking text (before display omitted empties it), the text, or the
// tool name plus the input JSON. output_tokens_details.thinking_tokens
// repeats the thinking part when there is one. Cache counts are always 0 and
// service_tier is "batch".
//
// # Delays and faults
//
// [Config] sets a fixed latency, a jitter and three fault rates. Each send is
// drawn against the rates using the Seed, the request's identity and the
// number of sends of that request that failed in a row before it. The same
// Seed therefore fails the same sends in every run, and a retry gets a fresh
// draw.
//
// # Directives
//
// A test can steer one request by writing directives anywhere in the text of
// its last user message (text blocks, or text inside tool_result blocks):
//
//	[[batchd:fail=TYPE]]       every send fails with error type TYPE
//	[[batchd:fail-once=TYPE]]  the first send fails with TYPE, later sends succeed
//	[[batchd:delay=DURATION]]  adds DURATION (Go syntax, e.g. 1.5s) to the latency
//
// TYPE is one of invalid_request_error, authentication_error,
// permission_error, not_found_error, rate_limit_error, api_error,
// timeout_error and overloaded_error. The error carries the HTTP status the
// API uses for that type (400, 401, 403, 404, 429, 500, 504, 529), and
// rate_limit_error also carries Config.RetryAfter. fail-once is remembered
// per Model, in memory: a restarted process fails the request once more. An
// unknown or malformed directive makes the request fail with
// invalid_request_error.
//
// Before any of this, Send checks the params with [messages.Parse] and
// returns its invalid_request_error for invalid params, without delay.
package testmodel
