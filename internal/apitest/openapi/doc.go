// Package openapi checks batchd's JSON bodies against the OpenAPI 3.1
// document of the Claude API that the official Go SDK ships as
// scripts/mock-spec.json.gz in github.com/anthropics/anthropic-sdk-go/v2.
// It is test support: only _test.go files import it.
//
// [Load] parses the document once per test binary and returns a shared
// [Validator]. Its methods check a body against one named component schema
// ([Validator.Batch], [Validator.Page], [Validator.ResultLine], ...) or a
// whole HTTP exchange against the path operation it addresses
// ([Validator.Request], [Validator.Response]). [Validator.Beta] returns a view
// that uses the Beta* schemas of the ?beta=true operations.
//
// A failed check returns a [*SchemaError] that lists every violation with its
// JSONPath, so a failing test shows all differences at once. The schemas are
// compiled by github.com/pb33f/libopenapi-validator with format assertions on,
// so "format": "date-time" fields must hold RFC 3339 timestamps.
//
// The schemas allow properties they do not declare, so the checks do not
// catch a misspelled optional field. They catch a missing required field, a
// wrong type, a null where none is allowed and a value outside an enum.
//
// Loading parses about 5 MB of JSON and is done once per process;
// BenchmarkLoad and the validation benchmarks measure the cost.
package openapi
