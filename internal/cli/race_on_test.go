//go:build race

package cli

// raceEnabled reports whether the tests run under the race detector, which
// makes JSON decoding several times slower.
const raceEnabled = true
