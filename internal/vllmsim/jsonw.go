package vllmsim

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The emulator writes every JSON body by hand rather than through
// encoding/json: vLLM's key order is part of what it emulates, Go's encoder
// escapes <, > and & (pydantic does not), and the streaming path must not
// allocate per token.

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string the way pydantic and Starlette write
// it: raw UTF-8, only quotes, backslashes and control characters escaped.
// Invalid UTF-8 becomes U+FFFD, as a Python str would never hold it.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendEscaped(b, s)
	return append(b, '"')
}

// appendEscaped appends the inside of appendString's JSON string.
func appendEscaped(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			b = appendEscapedASCII(b, c)
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, "\ufffd"...)
			i++
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}

// appendStringASCII appends s as Python's json.dumps does by default
// (ensure_ascii): every non-ASCII rune as \uXXXX, with surrogate pairs above
// the BMP. vLLM builds mid-stream error events with json.dumps.
func appendStringASCII(b []byte, s string) []byte {
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r < utf8.RuneSelf:
			c := byte(r)
			if c >= 0x20 && c != '"' && c != '\\' {
				b = append(b, c)
			} else {
				b = appendEscapedASCII(b, c)
			}
		case r > 0xFFFF:
			r -= 0x10000
			b = appendU4(b, 0xD800+(r>>10))
			b = appendU4(b, 0xDC00+(r&0x3FF))
		default:
			b = appendU4(b, r)
		}
	}
	return append(b, '"')
}

func appendEscapedASCII(b []byte, c byte) []byte {
	switch c {
	case '"':
		return append(b, '\\', '"')
	case '\\':
		return append(b, '\\', '\\')
	case '\n':
		return append(b, '\\', 'n')
	case '\r':
		return append(b, '\\', 'r')
	case '\t':
		return append(b, '\\', 't')
	case '\b':
		return append(b, '\\', 'b')
	case '\f':
		return append(b, '\\', 'f')
	}
	return appendU4(b, rune(c))
}

func appendU4(b []byte, r rune) []byte {
	return append(b, '\\', 'u', hexDigits[r>>12&0xF], hexDigits[r>>8&0xF], hexDigits[r>>4&0xF], hexDigits[r&0xF])
}

// appendInt appends n in decimal.
func appendInt(b []byte, n int) []byte { return strconv.AppendInt(b, int64(n), 10) }

// appendNullableString appends s as a JSON string, or null when s is empty.
func appendNullableString(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return appendString(b, s)
}

// appendPython appends the JSON value raw as Python prints it once
// json.loads has read it: in json.dumps's default form (dumps: ", " and
// ": " separators, ASCII only), or as str() prints a dict or list (repr).
// vLLM's Anthropic conversion writes tool arguments with json.dumps and
// tool results with str(), and both are counted in the prompt.
func appendPython(b []byte, raw []byte, dumps bool) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return appendPyValue(b, dec, dumps)
}

func appendPyValue(b []byte, dec *json.Decoder, dumps bool) ([]byte, error) {
	tok, err := dec.Token()
	if err != nil {
		return b, err
	}
	switch v := tok.(type) {
	case json.Delim:
		b = append(b, byte(v))
		for i := 0; dec.More(); i++ {
			if i > 0 {
				b = append(b, ", "...)
			}
			if v == '{' {
				key, err := dec.Token()
				if err != nil {
					return b, err
				}
				b = appendPyString(b, key.(string), dumps)
				b = append(b, ": "...)
			}
			if b, err = appendPyValue(b, dec, dumps); err != nil {
				return b, err
			}
		}
		end, err := dec.Token()
		if err != nil {
			return b, err
		}
		return append(b, byte(end.(json.Delim))), nil
	case string:
		return appendPyString(b, v, dumps), nil
	case json.Number:
		return appendPyNumber(b, string(v), dumps), nil
	case bool:
		switch {
		case dumps:
			return strconv.AppendBool(b, v), nil
		case v:
			return append(b, "True"...), nil
		}
		return append(b, "False"...), nil
	}
	if dumps {
		return append(b, "null"...), nil
	}
	return append(b, "None"...), nil
}

func appendPyString(b []byte, s string, dumps bool) []byte {
	if dumps {
		return appendStringASCII(b, s)
	}
	return appendPyRepr(b, s)
}

// appendPyRepr appends s as Python's repr does: single quotes unless s
// holds a single quote and no double quote, non-printable runes escaped.
func appendPyRepr(b []byte, s string) []byte {
	q := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		q = '"'
	}
	b = append(b, q)
	for _, r := range s {
		switch {
		case r == rune(q) || r == '\\':
			b = append(b, '\\', byte(r))
		case r == '\n':
			b = append(b, `\n`...)
		case r == '\r':
			b = append(b, `\r`...)
		case r == '\t':
			b = append(b, `\t`...)
		case unicode.IsPrint(r):
			b = utf8.AppendRune(b, r)
		case r < 0x100:
			b = append(b, '\\', 'x', hexDigits[r>>4], hexDigits[r&0xF])
		case r < 0x10000:
			b = appendU4(b, r)
		default:
			b = append(b, '\\', 'U')
			for shift := 28; shift >= 0; shift -= 4 {
				b = append(b, hexDigits[r>>shift&0xF])
			}
		}
	}
	return append(b, q)
}

// appendPyNumber appends a JSON number as Python prints what json.loads
// made of it: an int as is, a float as repr does (shortest digits, exponent
// form below 1e-4 and from 1e16 on, else at least one decimal).
func appendPyNumber(b []byte, n string, dumps bool) []byte {
	if !strings.ContainsAny(n, ".eE") {
		if n == "-0" {
			n = "0"
		}
		return append(b, n...)
	}
	f, _ := strconv.ParseFloat(n, 64) // ±Inf when out of range, as in Python
	if math.IsInf(f, 0) {
		if f < 0 {
			b = append(b, '-')
		}
		if dumps {
			return append(b, "Infinity"...)
		}
		return append(b, "inf"...)
	}
	e := strconv.FormatFloat(f, 'e', -1, 64)
	if exp, _ := strconv.Atoi(e[strings.IndexByte(e, 'e')+1:]); exp < -4 || exp >= 16 {
		return append(b, e...)
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	b = append(b, s...)
	if !strings.Contains(s, ".") {
		b = append(b, ".0"...)
	}
	return b
}
