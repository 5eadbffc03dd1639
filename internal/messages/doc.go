// Package messages reads Messages API request bodies and builds Messages API
// responses. The engine and every model backend share it.
//
// A batch request's params are a Messages API request body. [Validate]
// checks one the way the API does before a model receives it. params must be
// a JSON object with a non-empty model, max_tokens of at least 1 and a
// non-empty messages array. The optional fields must have the right shapes
// and ranges. Batches also reject stream: true. A failed check is a
// [*backend.Error] of type invalid_request_error whose message names the
// field by its path, for example:
//
//	max_tokens: must be at least 1, got 0
//	messages.2.role: must be "user", "assistant" or "system", got "bot"
//	stream: streaming is not supported in batches
//
// Fields the checks do not know are never rejected, because params travel to
// model backends byte for byte and newer API versions add fields.
//
// [Parse] runs the same checks and returns a [Request], a typed view for
// backends that must translate or interpret the body, such as the
// OpenAI-compatible backend and the built-in test model.
//
// [Message] is the response side: it encodes with every field of the
// Message schema in the OpenAPI document that anthropic-sdk-go v2.17.0
// ships, so clients that validate responses strictly accept it.
package messages
