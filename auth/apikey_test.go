package auth

import (
	"crypto/sha256"
	"encoding/base64"
	"regexp"
	"strings"
	"testing"
)

func TestNewKey(t *testing.T) {
	idRE := regexp.MustCompile(`^key_[0-9a-f]{16}$`)
	seenSecrets := map[string]bool{}
	seenIDs := map[string]bool{}
	for range 100 {
		secret, id, prefix, err := NewKey()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(secret, KeyPrefix) || !IsAPIKey(secret) {
			t.Fatalf("secret %q lacks the %q prefix", secret, KeyPrefix)
		}
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(secret, KeyPrefix))
		if err != nil || len(raw) != 32 {
			t.Fatalf("secret body is not base64url of 32 bytes: %v, %d bytes", err, len(raw))
		}
		if !idRE.MatchString(id) {
			t.Fatalf("id %q does not match %s", id, idRE)
		}
		if prefix != secret[:10] || len(prefix) != 10 {
			t.Fatalf("prefix %q is not the first 10 characters of the secret", prefix)
		}
		if seenSecrets[secret] || seenIDs[id] {
			t.Fatalf("duplicate key minted: %q %q", secret, id)
		}
		seenSecrets[secret], seenIDs[id] = true, true
		if _, err := Credential(map[string][]string{"X-Api-Key": {secret}}); err != nil {
			t.Fatalf("minted key is not a valid credential: %v", err)
		}
	}
}

func TestIsAPIKey(t *testing.T) {
	for tok, want := range map[string]bool{
		"sk-abc":               true,
		"sk-":                  true,
		"eyJhbGciOiJIUzI1NiJ9": false,
		"SK-abc":               false,
		"":                     false,
		"xsk-abc":              false,
	} {
		if got := IsAPIKey(tok); got != want {
			t.Errorf("IsAPIKey(%q) = %v, want %v", tok, got, want)
		}
	}
}

func TestHashKey(t *testing.T) {
	secret, _, _, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := HashKey(secret), sha256.Sum256([]byte(secret)); got != want {
		t.Fatalf("HashKey = %x, want %x", got, want)
	}
	if HashKey(secret) == HashKey(secret+"x") {
		t.Fatal("different secrets hash alike")
	}
	// Long inputs take the other path and still hash correctly.
	long := strings.Repeat("sk-long", 30)
	if got, want := HashKey(long), sha256.Sum256([]byte(long)); got != want {
		t.Fatalf("HashKey(long) = %x, want %x", got, want)
	}
	if n := testing.AllocsPerRun(100, func() { _ = HashKey(secret) }); n != 0 {
		t.Errorf("HashKey allocates %v times for a minted key", n)
	}
}

func BenchmarkHashKey(b *testing.B) {
	secret, _, _, err := NewKey()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = HashKey(secret)
	}
}
