package gate

import (
	"errors"
	"path"
	"strings"
)

// Model globs are path.Match patterns in which '*' and '?' match '/' too:
// vLLM serves a model under its Hugging Face id by default
// ("meta-llama/Llama-3.1-8B-Instruct"), so "*" must allow every model and
// "*Llama*" must match that one. path.Match never crosses a '/', so both
// pattern and name have each '/' swapped for a byte no model name holds
// (NUL) before they are matched: '\/' and "[/]" still match a '/'.

// globSlash stands for '/' in a model name or glob handed to path.Match.
const globSlash = "\x00"

// ValidModelGlob reports a model glob that can match nothing: empty, holding
// a NUL byte, or malformed (an unclosed '[', a '\' at its end).
func ValidModelGlob(g string) error {
	if g == "" {
		return errors.New("empty model name")
	}
	if strings.Contains(g, globSlash) {
		return errors.New("a NUL byte is not allowed")
	}
	// Match reports a malformed pattern whatever the name.
	_, err := path.Match(strings.ReplaceAll(g, "/", globSlash), "")
	return err
}

// MatchModel reports whether model matches the glob g (see ValidModelGlob);
// a malformed glob matches nothing.
func MatchModel(g, model string) bool {
	if strings.Contains(model, globSlash) {
		return false // not a model name: it could pass for a '/'
	}
	// ReplaceAll returns its argument itself when there is no '/'.
	ok, _ := path.Match(strings.ReplaceAll(g, "/", globSlash), strings.ReplaceAll(model, "/", globSlash))
	return ok
}
