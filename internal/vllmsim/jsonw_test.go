package vllmsim

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func goJSON(s string) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return string(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote\back`, "tab\tnl\ncr\r", "\x00\x1f\b\f", "<a&b>", "wörld 😀", "bad\xffutf8"} {
		got := string(appendString(nil, s))
		want := goJSON(s)
		// Go writes \u0008, \u000c and \ufffd where Python writes \b, \f
		// and the raw replacement character.
		want = strings.NewReplacer(`\u0008`, `\b`, `\u000c`, `\f`, `\ufffd`, "\ufffd").Replace(want)
		if got != want {
			t.Errorf("appendString(%q) = %s, want %s", s, got, want)
		}
	}
}

// Python's json.dumps escapes every non-ASCII rune.
func TestAppendStringASCII(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"abc", `"abc"`},
		{"é", `"\u00e9"`},
		{"😀", `"\ud83d\ude00"`},
		{"a\"b\\\n", `"a\"b\\\n"`},
		{"\x01", `"\u0001"`},
	} {
		if got := string(appendStringASCII(nil, tc.in)); got != tc.want {
			t.Errorf("appendStringASCII(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "x", "\"\\", "é😀", "\xff\xfe", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, enc := range []func([]byte, string) []byte{appendString, appendStringASCII} {
			out := enc(nil, s)
			var back string
			if err := json.Unmarshal(out, &back); err != nil {
				t.Fatalf("%q encodes to invalid JSON %s: %v", s, out, err)
			}
			if utf8.ValidString(s) && back != s {
				t.Fatalf("%q round-trips to %q", s, back)
			}
		}
	})
}

func TestPyTruthy(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"", false}, {"null", false}, {"{}", false}, {"{ }", false}, {"[]", false}, {"false", false},
		{"0", false}, {`""`, false}, {`{"include_usage":false}`, true}, {"true", true}, {"[1]", true}, {`"x"`, true},
	} {
		if got := pyTruthy(json.RawMessage(tc.in)); got != tc.want {
			t.Errorf("pyTruthy(%s) = %v", tc.in, got)
		}
	}
}
