package vllmsim

import (
	"strings"
	"sync"

	tiktoken_loader "github.com/pkoukk/tiktoken-go-loader"
)

// vocab is the emulator's output vocabulary. Every entry is exactly one
// cl100k_base token (the id beside it), and each starts with a space before
// letters, so tiktoken's pre-tokenizer splits any concatenation of them back
// into the same words: counting a relayed answer with cl100k_base gives back
// exactly the number of text tokens generated. vocab_test.go checks both.
var vocab = [...]struct {
	text string
	id   int
}{
	{" the", 279}, {" of", 315}, {" and", 323}, {" to", 311},
	{" a", 264}, {" in", 304}, {" is", 374}, {" that", 430},
	{" for", 369}, {" it", 433}, {" with", 449}, {" as", 439},
	{" was", 574}, {" on", 389}, {" be", 387}, {" by", 555},
	{" this", 420}, {" are", 527}, {" from", 505}, {" at", 520},
	{" or", 477}, {" an", 459}, {" have", 617}, {" not", 539},
	{" but", 719}, {" which", 902}, {" can", 649}, {" all", 682},
	{" one", 832}, {" more", 810}, {" their", 872}, {" has", 706},
	{" will", 690}, {" they", 814}, {" were", 1051}, {" been", 1027},
	{" we", 584}, {" when", 994}, {" there", 1070}, {" also", 1101},
	{" time", 892}, {" new", 502}, {" would", 1053}, {" first", 1176},
	{" other", 1023}, {" some", 1063}, {" into", 1139}, {" only", 1193},
	{" people", 1274}, {" data", 828}, {" system", 1887}, {" model", 1646},
	{" token", 4037}, {" server", 3622}, {" request", 1715}, {" stream", 4365},
	{" water", 3090}, {" light", 3177}, {" river", 15140}, {" city", 3363},
	{" world", 1917}, {" music", 4731}, {" story", 3446}, {" place", 2035},
}

// wordStride walks the vocabulary in an order that does not look like the
// table; it is coprime with len(vocab), so every word appears once per cycle.
const wordStride = 17

// word returns the text of token t of a choice whose sequence starts at seed.
func word(seed, t int) string {
	return vocab[(seed+t*wordStride)%len(vocab)].text
}

// wordID returns the cl100k id of the same token.
func wordID(seed, t int) int {
	return vocab[(seed+t*wordStride)%len(vocab)].id
}

// choiceSeed derives the vocabulary offset of one choice from the prompt, so
// different prompts and different choices read differently while the same
// request always produces the same text.
func choiceSeed(promptTokens, choice int) int {
	s := (promptTokens*7 + choice*31) % len(vocab)
	if s < 0 {
		s += len(vocab)
	}
	return s
}

// Special token ids of the emulator's chat template. cl100k_base's
// <|endoftext|> and FIM tokens are 100257–100260 and <|endofprompt|> is
// 100276; the ChatML ids are those OpenAI's chat models use with cl100k.
const (
	tokEndOfText = 100257
	tokImStart   = 100264
	tokImEnd     = 100265
	tokImSep     = 100266
	tokColon     = 25 // ":" in cl100k_base
)

var specialText = map[int]string{
	tokEndOfText: "<|endoftext|>",
	100258:       "<|fim_prefix|>",
	100259:       "<|fim_middle|>",
	100260:       "<|fim_suffix|>",
	tokImStart:   "<|im_start|>",
	tokImEnd:     "<|im_end|>",
	tokImSep:     "<|im_sep|>",
	100276:       "<|endofprompt|>",
}

// The repo's tokenizer package only encodes. /detokenize and echo of
// token-id prompts need the reverse table, built on first use from the same
// embedded BPE file (about 100k entries).
var (
	decodeOnce  sync.Once
	decodeTable []string
	decodeErr   error
)

func loadDecodeTable() ([]string, error) {
	decodeOnce.Do(func() {
		ranks, err := tiktoken_loader.NewOfflineLoader().LoadTiktokenBpe("cl100k_base.tiktoken")
		if err != nil {
			decodeErr = err
			return
		}
		maxRank := 0
		for _, r := range ranks {
			maxRank = max(maxRank, r)
		}
		decodeTable = make([]string, maxRank+1)
		for tok, r := range ranks {
			decodeTable[r] = tok
		}
	})
	return decodeTable, decodeErr
}

// tokenText returns the bytes of one cl100k token id, and false for an id
// the encoding does not have.
func tokenText(id int) (string, bool) {
	if s, ok := specialText[id]; ok {
		return s, true
	}
	table, err := loadDecodeTable()
	if err != nil || id < 0 || id >= len(table) || (table[id] == "" && id != 0) {
		return "", false
	}
	return table[id], true
}

// decodeTokens concatenates the bytes of ids; ok is false if one is unknown.
func decodeTokens(ids []int) (string, bool) {
	var sb strings.Builder
	for _, id := range ids {
		s, ok := tokenText(id)
		if !ok {
			return "", false
		}
		sb.WriteString(s)
	}
	return sb.String(), true
}
