package batch

// AppendResultLine appends one line of a batch's results file to dst, without
// the trailing newline: {"custom_id":…,"result":{"type":…,…}}.
//
// body is the stored Message (succeeded) or error envelope (errored) and is
// copied as it is, with no decoding. customID must already have passed
// [ValidateCustomID], so it needs no JSON escaping.
func AppendResultLine(dst []byte, customID string, outcome Outcome, body []byte) []byte {
	dst = append(dst, `{"custom_id":"`...)
	dst = append(dst, customID...)
	dst = append(dst, `","result":{"type":"`...)
	dst = append(dst, outcome...)
	dst = append(dst, '"')

	switch outcome {
	case OutcomeSucceeded:
		dst = append(dst, `,"message":`...)
		dst = append(dst, body...)
	case OutcomeErrored:
		dst = append(dst, `,"error":`...)
		dst = append(dst, body...)
	}
	return append(dst, "}}"...)
}
