package batch

import (
	"strings"
	"testing"
)

func TestValidateCustomID(t *testing.T) {
	for _, ok := range []string{"a", "A-b_9", strings.Repeat("x", 64)} {
		if err := ValidateCustomID(ok); err != nil {
			t.Errorf("ValidateCustomID(%q) = %v, want nil", ok, err)
		}
	}

	cases := map[string]string{
		"":                      "empty",
		strings.Repeat("x", 65): "65 bytes",
		"a b":                   `' '`,
		"héllo":                 `'é'`,
		"x😀":                    `'😀'`,
	}
	for id, want := range cases {
		err := ValidateCustomID(id)
		if err == nil {
			t.Errorf("ValidateCustomID(%q) = nil, want an error", id)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateCustomID(%q) = %q, want it to mention %s", id, err, want)
		}
	}
}
