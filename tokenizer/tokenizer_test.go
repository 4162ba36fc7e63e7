package tokenizer

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"go/build"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func TestGetAndCount(t *testing.T) {
	tok, err := Get("")
	if err != nil {
		t.Fatal(err)
	}
	if tok.Name() != Default {
		t.Fatalf("default name %q", tok.Name())
	}
	// Reference counts from OpenAI's tiktoken (cl100k_base).
	for s, want := range map[string]int{
		"":                     0,
		"hello world":          2,
		"Hello, world!":        4,
		" the the the":         3,
		"<|endoftext|>":        7, // ordinary text, never the special token
		strings.Repeat("a", 8): 1,
	} {
		if got := tok.Count(s); got != want {
			t.Errorf("Count(%q) = %d, want %d", s, got, want)
		}
		if got := len(tok.Encode(s)); got != tok.Count(s) {
			t.Errorf("len(Encode(%q)) = %d, Count = %d", s, got, tok.Count(s))
		}
	}
	if ids := tok.Encode(""); ids == nil || len(ids) != 0 {
		t.Errorf("Encode(\"\") = %#v, want an empty slice", ids)
	}
	// Ids from OpenAI's tiktoken.
	if got, want := tok.Encode("hello world"), []int{15339, 1917}; !slices.Equal(got, want) {
		t.Errorf("Encode(hello world) = %v, want %v", got, want)
	}
	o, err := Get("o200k_base")
	if err != nil {
		t.Fatal(err)
	}
	if o.Count("hello world") != 2 || o == tok {
		t.Fatal("o200k_base")
	}
}

func TestGetIsCachedAndConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	got := make([]*Tokenizer, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tk, err := Get("cl100k_base")
			if err != nil {
				t.Error(err)
				return
			}
			tk.Count("some text to count")
			got[i] = tk
		}()
	}
	wg.Wait()
	for _, tk := range got {
		if tk != got[0] {
			t.Fatal("Get built the encoder twice")
		}
	}
}

func TestUnknown(t *testing.T) {
	if _, err := Get("gpt2-nonexistent"); err == nil || !strings.Contains(err.Error(), "cl100k_base") {
		t.Fatalf("error %v should list the known encodings", err)
	}
	if Known("nope") || !Known("p50k_base") {
		t.Fatal("Known")
	}
	for _, name := range Encodings {
		if !Known(name) {
			t.Errorf("Known(%q) = false", name)
		}
	}
}

// varied exercises every alternative of every pattern and the awkward
// corners of Unicode and UTF-8 handling.
var varied = []string{
	"hello world", "Hello, world!", " the the the",
	"<|endoftext|>", "<|endoftext|><|fim_prefix|>x<|fim_middle|>y<|endofprompt|>",
	strings.Repeat("a", 8),
	// whitespace runs, tabs, CRLF, exotic spaces
	"\n\n  \n", "\n\n  \n  x", "a  b   c    d", "trailing spaces   ", "   leading",
	"\t\tindented\tcode\t", "tabs\t\t\n\t\t\n", "line one\r\nline two\r\n\r\n", "\r\r\n\n\r",
	"  \r\n  x", " \n", "\n ", "x\u00a0y\u3000z\u2028w\u0085v\u000bu\u000ct", "nbsp\u00a0\u00a0word",
	"\u3000\u3000漢字", " \t\n \t\u00a0x",
	// contractions, upper and lower case, and lookalikes
	"I'm, you're, he's, we've, they'll, I'd, can't", "I'M YOU'RE HE'S WE'VE THEY'LL I'D CAN'T",
	"'s 'S 'Ll 'lL 're 'RE 'x ''s '", "rock'n'roll", "O'Neil's DON'T", "İ'S K'S ſ 'İ 'K 'ſ",
	"it’s curly’s", "Éric's ÉCOLE'S", "x's's's", "'Sup 'LLama 'REally 'VEry 'Dx 'Mike 'Tis 'sup 'llama",
	// numbers
	"12345678901234567890", "3.14159 1,000,000 -42 +7e10 0x1F", "١٢٣٤٥٦٧ ²³¼ Ⅻ ⅷ", "v1.2.3-rc.4", " 1 22 333 4444",
	// scripts
	"日本語のテキストと漢字、カタカナ。", "中文字符串，标点符号！", "한국어 문장입니다.",
	"emoji 😀😃😄 👩‍👩‍👧‍👦 🇺🇸 ❤️ ✨ 🤖x", "Привет, мир! Как дела?", "مرحبا بالعالم", "שלום עולם",
	"Ελληνικά κείμενα", "हिन्दी भाषा", "ไทย ภาษา", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐛𝐨𝐥𝐝 𠀀𠀁",
	// combining marks and letter case classes (o200k splits on them)
	"e\u0301 cafe\u0301 a\u0308\u0308\u0308 \u0301start", "Zalgo: Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǵ̼͚̑ǒ̩̆̉",
	"ÀʰB HELLOworld helloWORLD CamelCaseIdentifier XMLHttpRequest iOS ǅungla ᾈ",
	"\u0301\u0301", "x\u0301Y\u0301z", "ʰʰA", "Aʰ", "ǅǅa", " \u0301A", "!\u0301", "\u02b0'S",
	// code, JSON, paths, URLs, punctuation runs
	"func main() {\n\tfmt.Println(\"hi\")\n}\n", "if (a && b || !c) { return x->y; } // comment\n/* block */",
	`{"key": "value", "n": [1, 2, 3], "nested": {"a": null, "b": true, "c": -1.5e-3}}`,
	"path/to/file.go:12:3: error", "https://example.com/a/b?c=d&e=f#g", "a//b///c\n//\n",
	"!!!???...,,,;;;", "--- *** ___ === +++", "$$$ %%% ^^^", " !x", " !\n\n", "!\r\n/\n/", "x/\n/\r",
	"<div class=\"a\">&amp;</div>", "SELECT * FROM t WHERE a='b';",
	// long runs
	strings.Repeat("ab", 300), strings.Repeat("9", 1000), strings.Repeat(" ", 100) + "x",
	strings.Repeat("\n", 50), strings.Repeat("supercalifragilistic", 20), strings.Repeat("!?", 200),
	strings.Repeat("é", 200), strings.Repeat("😀", 100),
	// control bytes, invalid UTF-8, replacement and zero-width characters
	"\x00\x01\x02\x7f control", "\xff\xfe invalid \xc3\x28 utf8 \xed\xa0\x80 surrogate \xf4\x90\x80\x80",
	"\xff", "a\xffb", "\xe2\x82", "\uFFFD replacement", "\u200b\u200c\u200d\ufeff zero width",
}

// checkAgainstReference fails t unless Encode and Count agree with
// tiktoken-go's EncodeOrdinary on s, and counting in small chunks changes
// nothing.
func checkAgainstReference(t *testing.T, tok *Tokenizer, s string) {
	t.Helper()
	ref, err := tok.reference()
	if err != nil {
		t.Fatal(err)
	}
	want := ref.EncodeOrdinary(s)
	got := tok.Encode(s)
	if !slices.Equal(got, want) {
		t.Fatalf("%s: Encode(%s) differs from tiktoken-go: %s", tok.Name(), short(s), firstDiff(tok, got, want))
	}
	if n := tok.Count(s); n != len(want) {
		t.Fatalf("%s: Count(%s) = %d, tiktoken-go %d", tok.Name(), short(s), n, len(want))
	}
	v := validUTF8(s)
	for _, chunk := range []int{1, 7, 100} {
		if n := tok.m.countChunks(v, chunk); n != len(want) {
			t.Fatalf("%s: countChunks(%s, %d) = %d, want %d", tok.Name(), short(s), chunk, n, len(want))
		}
	}
}

func short(s string) string {
	if len(s) > 80 {
		return strings.ToValidUTF8(s[:80], "") + "…"
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func firstDiff(tok *Tokenizer, got, want []int) string {
	ref, _ := tok.reference()
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return fmt.Sprintf("at token %d: got %q, want %q", i,
		ref.Decode(got[i:min(i+4, len(got))]), ref.Decode(want[i:min(i+4, len(want))]))
}

func TestMatchesReference(t *testing.T) {
	for _, name := range Encodings {
		tok, err := Get(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(name, func(t *testing.T) {
			for _, s := range varied {
				checkAgainstReference(t, tok, s)
			}
		})
	}
}

// corpus returns the first n bytes of a file (ending at a line break), or
// skips the test when it is not there.
func corpus(tb testing.TB, path string, n int) string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Skipf("corpus not available: %v", err)
	}
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

// tomSawyer is a public-domain novel (388 KB, about 97,000 cl100k tokens)
// that the module cache holds as test data of a dependency.
func tomSawyer() string {
	root := os.Getenv("GOMODCACHE")
	if root == "" {
		root = filepath.Join(build.Default.GOPATH, "pkg", "mod")
	}
	return filepath.Join(root, "github.com", "klauspost", "compress@v1.20.1", "testdata", "Mark.Twain-Tom.Sawyer.txt")
}

// goSource concatenates Go standard-library sources until it has n bytes.
func goSource(tb testing.TB, n int) string {
	tb.Helper()
	var sb strings.Builder
	for _, dir := range []string{"net/http", "encoding/json", "strings", "fmt"} {
		files, _ := filepath.Glob(filepath.Join(build.Default.GOROOT, "src", dir, "*.go"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			sb.Write(b)
			if sb.Len() >= n {
				return sb.String()[:n]
			}
		}
	}
	if sb.Len() == 0 {
		tb.Skip("no Go sources under GOROOT")
	}
	return sb.String()
}

func TestCorpora(t *testing.T) {
	prose, err := os.ReadFile("testdata/prose.txt")
	if err != nil {
		t.Fatal(err)
	}
	texts := map[string]func(t *testing.T) string{
		"prose":      func(*testing.T) string { return string(prose) },
		"tom-sawyer": func(t *testing.T) string { return corpus(t, tomSawyer(), 40<<10) },
		"go-source":  func(t *testing.T) string { return goSource(t, 40<<10) },
	}
	for _, name := range Encodings {
		tok, err := Get(name)
		if err != nil {
			t.Fatal(err)
		}
		for what, text := range texts {
			t.Run(name+"/"+what, func(t *testing.T) { checkAgainstReference(t, tok, text(t)) })
		}
	}
}

// TestLongPieces covers pieces longer than smallPiece, which take the heap
// merge, against tiktoken-go's quadratic one.
func TestLongPieces(t *testing.T) {
	letters := make([]byte, 1500)
	for i := range letters {
		letters[i] = "etaoinshrdlucmfwyp"[i*7%18]
	}
	for _, name := range []string{"cl100k_base", "o200k_base", "p50k_base"} {
		tok, err := Get(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{
			strings.Repeat("a", 2000), string(letters), " " + string(letters) + "'s",
			strings.Repeat("Ab", 700), strings.Repeat("ñ", 600), strings.Repeat("!=", 500),
			strings.Repeat("\u0301", 300), strings.Repeat("z", smallPiece), strings.Repeat("z", smallPiece+1),
		} {
			checkAgainstReference(t, tok, s)
		}
	}
}

func TestConcurrentCount(t *testing.T) {
	tok, err := Get("o200k_base")
	if err != nil {
		t.Fatal(err)
	}
	want := make([]int, len(varied))
	for i, s := range varied {
		want[i] = tok.Count(s)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range varied {
				k := (i + g*7) % len(varied)
				if n := tok.Count(varied[k]); n != want[k] {
					t.Errorf("concurrent Count(%s) = %d, want %d", short(varied[k]), n, want[k])
				}
			}
		}()
	}
	wg.Wait()
}

// TestCountParallel checks that texts big enough to be counted on several
// goroutines get the same count as counting them in one pass.
func TestCountParallel(t *testing.T) {
	tok, err := Get("cl100k_base")
	if err != nil {
		t.Fatal(err)
	}
	prose, err := os.ReadFile("testdata/prose.txt")
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat(string(prose), parallelMin/len(prose)+8)
	want := tok.m.count(big)
	if got := tok.count(big); got != want {
		t.Fatalf("Count = %d, serial count %d", got, want)
	}
	// A text with no safe cut is counted in one chunk.
	digits := strings.Repeat("1234 ", parallelMin/5+1)
	if got, want := tok.m.countChunks(digits, 1000), tok.m.count(digits); got != want {
		t.Fatalf("countChunks(digits) = %d, want %d", got, want)
	}
}

func TestLoadModelErrors(t *testing.T) {
	defer func(f func(string) ([]byte, error)) { readAsset = f }(readAsset)
	for _, c := range []struct {
		name, data, want string
	}{
		{"missing", "", "file does not exist"},
		{"bad rank", "YQ== x\n", "bad rank"},
		{"no rank", "YQ==\n", "bad rank"},
		{"negative rank", "YQ== -1\n", "bad rank"},
		{"bad base64", "!!!! 0\n", "bad token"},
		{"empty token", " 0\n", "bad token"},
		{"missing bytes", "YQ== 0\nYg== 1\n", "is not a token"},
		{"duplicate token", "YQ== 0\nYQ== 1\n", "appears twice"},
		{"rank too large", "YQ== 1048576\n", "does not fit"},
		{"token too long", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("a"), 256)) + " 0\n", "does not fit"},
	} {
		readAsset = func(string) ([]byte, error) {
			if c.data == "" {
				return nil, os.ErrNotExist
			}
			return []byte(c.data), nil
		}
		if _, err := loadModel("cl100k_base"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}

// TestGetLoadError checks that a failed load is reported (and remembered)
// rather than returning a nil tokenizer without error.
func TestGetLoadError(t *testing.T) {
	defer func(f func(string) ([]byte, error)) { readAsset = f }(readAsset)
	readAsset = func(string) ([]byte, error) { return nil, errors.New("boom") }
	mu.Lock()
	saved := cache["r50k_base"]
	delete(cache, "r50k_base")
	mu.Unlock()
	defer func() {
		mu.Lock()
		if saved != nil {
			cache["r50k_base"] = saved
		} else {
			delete(cache, "r50k_base")
		}
		mu.Unlock()
	}()
	for range 2 {
		if tok, err := Get("r50k_base"); err == nil || tok != nil || !strings.Contains(err.Error(), "boom") {
			t.Fatalf("Get = %v, %v; want the load error", tok, err)
		}
	}
}

// TestRankTable: every token of every encoding is found with its rank, and
// strings that are not tokens (of lengths near the tokens') are not.
func TestRankTable(t *testing.T) {
	for _, name := range Encodings {
		tok, err := Get(name)
		if err != nil {
			t.Fatal(err)
		}
		data, err := readAsset(name)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]int32{}
		for l := range bytes.Lines(data) {
			b64, num, _ := strings.Cut(strings.TrimSpace(string(l)), " ")
			raw, err := base64.StdEncoding.DecodeString(b64)
			r, err2 := strconv.Atoi(num)
			if err != nil || err2 != nil {
				t.Fatalf("%s: line %q", name, l)
			}
			want[string(raw)] = int32(r)
		}
		rt := tok.m.ranks
		if rt.len() != len(want) {
			t.Fatalf("%s: %d tokens in the table, %d in the file", name, rt.len(), len(want))
		}
		seen := 0
		rt.each(func(s string, r int32) {
			if want[s] != r {
				t.Fatalf("%s: each gives %q rank %d, want %d", name, s, r, want[s])
			}
			seen++
		})
		if seen != len(want) {
			t.Fatalf("%s: each gave %d tokens of %d", name, seen, len(want))
		}
		misses := 0
		for s, r := range want {
			if got, ok := rt.get(s); !ok || got != r {
				t.Fatalf("%s: get(%q) = %d, %v, want %d", name, s, got, ok, r)
			}
			for _, other := range []string{s + "\x00", s[:len(s)-1] + "\xff", "\x01" + s} {
				if _, isTok := want[other]; isTok {
					continue
				}
				if _, ok := rt.get(other); ok {
					t.Fatalf("%s: get(%q) found a token that is not one", name, other)
				}
				misses++
			}
		}
		for _, n := range []int{255, 256, 300, 1 << 16} {
			if _, ok := rt.get(strings.Repeat(" ", n)); ok {
				t.Fatalf("%s: a run of %d spaces is a token", name, n)
			}
		}
		if misses < len(want) {
			t.Fatalf("%s: only %d non-tokens tried", name, misses)
		}
	}
}
