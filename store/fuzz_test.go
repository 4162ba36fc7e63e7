package store

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Stored values are read back after crashes and across versions: a damaged
// value must fail to decode, never panic, and whatever decodes must encode
// and decode to the same thing.

func FuzzDecodeRecord(f *testing.F) {
	r := Record{Time: t0, User: "alice", KeyID: "k", Model: "m", Endpoint: "/v1/x", Status: 200,
		PromptTokens: 5, CompletionTokens: 7, Estimated: true, Duration: time.Second, TTFT: time.Millisecond}
	f.Add(recordKey(nil, timeNanos(t0), 1), appendRecord(nil, &r))
	f.Add(recordKey(nil, 0, 0), appendRecord(nil, &Record{}))
	f.Add([]byte{1}, []byte{1, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, k, v []byte) {
		got, err := decodeRecord(k, v)
		if err != nil {
			return
		}
		again, err := decodeRecord(k, appendRecord(nil, &got))
		if err != nil || again != got {
			t.Fatalf("re-encoding %+v gave %+v, %v", got, again, err)
		}
		if recordUserIs(v, got.User) != true {
			t.Fatalf("recordUserIs disagrees with the decoder on %q", got.User)
		}
	})
}

func FuzzDecodeKey(f *testing.F) {
	k := Key{ID: "k", UserID: "u", Name: "n", Prefix: "sk-", Hash: [32]byte{9}, Created: t0, Expires: t0.Add(time.Hour)}
	f.Add(encodeKey(&k))
	f.Add(encodeKey(&Key{}))
	f.Add([]byte{1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, v []byte) {
		got, err := decodeKey("k", v)
		if err != nil {
			return
		}
		again, err := decodeKey("k", encodeKey(got))
		if err != nil || *again != *got {
			t.Fatalf("re-encoding %+v gave %+v, %v", got, again, err)
		}
	})
}

func FuzzValidUserID(f *testing.F) {
	for _, s := range []string{"alice", "a/b", " x", "ü", "\x00", strings.Repeat("a", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if ValidUserID(id) != nil {
			return
		}
		if id == "" || len(id) > MaxUserIDLen || !utf8.ValidString(id) || strings.ContainsAny(id, "\x00\n\r\t") ||
			strings.TrimSpace(id) != id && (id[0] == ' ' || id[len(id)-1] == ' ') {
			t.Fatalf("ValidUserID accepted %q", id)
		}
		// Valid ids are safe inside aggregate and index keys.
		k := aggKey(nil, 3600, id, "model")
		if h, u, m, ok := splitAggKey(k); !ok || h != 3600 || string(u) != id || string(m) != "model" {
			t.Fatalf("aggregate key of %q does not split back", id)
		}
	})
}
