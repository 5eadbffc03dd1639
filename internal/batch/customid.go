package batch

import "fmt"

// MaxCustomIDLength is the longest custom_id the API accepts.
const MaxCustomIDLength = 64

// MaxRequests is the largest number of requests one batch may contain.
const MaxRequests = 100_000

// ValidateCustomID checks a custom_id against the API's rule: 1 to 64
// characters, each a letter, a digit, '_' or '-'.
func ValidateCustomID(id string) error {
	if id == "" {
		return fmt.Errorf("custom_id must not be empty")
	}
	if len(id) > MaxCustomIDLength {
		return fmt.Errorf("custom_id is %d bytes long, the maximum is %d",
			len(id), MaxCustomIDLength)
	}

	for _, c := range id {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("custom_id %q contains %q; only ASCII letters, digits, '_' "+
				"and '-' are allowed", id, c)
		}
	}
	return nil
}
