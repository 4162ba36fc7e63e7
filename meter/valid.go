package meter

import "encoding/binary"

// maxDepth is the deepest nesting valid accepts, encoding/json's limit.
const maxDepth = 10000

// strPlain marks the bytes a string's content runs over without a second
// look: everything but the quote, the backslash and control characters.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// topMember is where a top-level member of an object stands in its body: the
// key's content (between the quotes, still escaped) at [ks:ke], the value
// at [vs:ve].
type topMember struct{ ks, ke, vs, ve int }

// validMembers reports whether b is one JSON value with nothing but
// whitespace around it, exactly as encoding/json.Valid does (FuzzValid
// compares them), in a single pass without a call per byte: every request
// body goes through it before the gate trusts its own lenient scanner. When
// b is an object and members is not nil, it also appends each top-level
// member to members as it checks it and returns them, so the walk over the
// body's members that would follow needs no second pass. (Returned rather
// than written through a pointer, a caller's array on its stack stays
// there.)
func validMembers(b []byte, members []topMember) ([]topMember, bool) {
	// stack holds '{' or '[' for each open container; 64 levels live on
	// the stack frame, deeper bodies grow it.
	var buf [64]byte
	stack := buf[:0]
	open := false // a top-level member's value is being read
	i := skipSpace(b, 0)
	for {
		// A value starts at b[i].
		if i >= len(b) {
			return members, false
		}
		switch c := b[i]; {
		case c == '{' || c == '[':
			if len(stack) == maxDepth {
				return members, false
			}
			stack = append(stack, c)
			i = skipSpace(b, i+1)
			if i < len(b) && b[i] == c+2 { // '}' is '{'+2, ']' is '['+2: empty
				stack = stack[:len(stack)-1]
				i++
				break
			}
			if c == '{' {
				ks, ke := i, 0
				if ke, i = objectKey(b, i); i < 0 {
					return members, false
				}
				if members != nil && len(stack) == 1 {
					members, open = append(members, topMember{ks: ks + 1, ke: ke - 1, vs: i}), true
				}
			}
			continue
		case c == '"':
			if i = stringEnd(b, i); i < 0 {
				return members, false
			}
		case c == '-' || c >= '0' && c <= '9':
			if i = numberEnd(b, i); i < 0 {
				return members, false
			}
		case c == 't':
			if i = literalEnd(b, i, "true"); i < 0 {
				return members, false
			}
		case c == 'f':
			if i = literalEnd(b, i, "false"); i < 0 {
				return members, false
			}
		case c == 'n':
			if i = literalEnd(b, i, "null"); i < 0 {
				return members, false
			}
		default:
			return members, false
		}
		// After a value: close containers, or go on to the next element.
		for {
			if open && len(stack) == 1 { // a top-level member's value ended
				members[len(members)-1].ve, open = i, false
			}
			i = skipSpace(b, i)
			if len(stack) == 0 {
				return members, i == len(b)
			}
			if i >= len(b) {
				return members, false
			}
			top := stack[len(stack)-1]
			if b[i] == top+2 {
				stack = stack[:len(stack)-1]
				i++
				continue
			}
			if b[i] != ',' {
				return members, false
			}
			i = skipSpace(b, i+1)
			if top == '{' {
				ks, ke := i, 0
				if ke, i = objectKey(b, i); i < 0 {
					return members, false
				}
				if members != nil && len(stack) == 1 {
					members, open = append(members, topMember{ks: ks + 1, ke: ke - 1, vs: i}), true
				}
			}
			break
		}
	}
}

// objectKey checks `"key" :` at b[i] and returns the index after the key's
// closing quote and where the value starts (-1: malformed).
func objectKey(b []byte, i int) (ke, vs int) {
	if i >= len(b) || b[i] != '"' {
		return 0, -1
	}
	if ke = stringEnd(b, i); ke < 0 {
		return 0, -1
	}
	i = skipSpace(b, ke)
	if i >= len(b) || b[i] != ':' {
		return 0, -1
	}
	return ke, skipSpace(b, i+1)
}

// stringEnd checks the string whose quote is at b[i] and returns the index
// after its closing quote, or -1.
func stringEnd(b []byte, i int) int {
	i++
	for {
		i = plainRun(b, i)
		if i >= len(b) || b[i] < 0x20 {
			return -1
		}
		if b[i] == '"' {
			return i + 1
		}
		// A backslash.
		if i+1 >= len(b) {
			return -1
		}
		switch b[i+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			i += 2
		case 'u':
			if i+6 > len(b) {
				return -1
			}
			for _, h := range b[i+2 : i+6] {
				if !isHex(h) {
					return -1
				}
			}
			i += 6
		default:
			return -1
		}
	}
}

// plainRun returns the index of the first byte at or after i that ends a
// run of plain string content (a quote, a backslash or a control byte), or
// len(b). Long strings (prompts) go eight bytes at a time.
func plainRun(b []byte, i int) int {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	for ; i+8 <= len(b); i += 8 {
		v := binary.LittleEndian.Uint64(b[i:])
		q := v ^ ('"' * ones)   // a zero byte where b has '"'
		bs := v ^ ('\\' * ones) // a zero byte where b has '\\'
		// The high bit of a byte is set where the byte is zero (q, bs) or
		// below 0x20 (v): bytes of 0x80 and up (UTF-8) are never flagged.
		if ((q-ones)&^q|(bs-ones)&^bs|(v-0x20*ones)&^v)&highs != 0 {
			break
		}
	}
	for i < len(b) && strPlain[b[i]] {
		i++
	}
	return i
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// numberEnd checks the number at b[i] (JSON's grammar: no leading zeros,
// no bare dot, no plus sign) and returns the index after it, or -1.
func numberEnd(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// literalEnd checks that lit is at b[i] and returns the index after it.
func literalEnd(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}
