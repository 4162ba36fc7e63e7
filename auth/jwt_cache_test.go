package auth

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestVerifiedCacheHonoursExpiry: a token that verified once is refused
// once its exp passes, even though it is in the cache, and a cached token
// is not used with another key set.
func TestVerifiedCacheHonoursExpiry(t *testing.T) {
	clk := newClock()
	v := newTestVerifier(t, JWTConfig{Secrets: [][]byte{testSecret}, Now: clk.Now})
	exp := clk.Now().Add(time.Minute)
	tok := sign(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "a", "exp": exp.Unix()}, nil)
	first, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	again, err := v.Verify(tok)
	if err != nil || again != first {
		t.Fatalf("second verification: %v (cached: %v)", err, again == first)
	}
	// A caller's time decides whether the cache answers (a token not
	// answered from it is verified again, with the parser's clock).
	if id, err := v.VerifyAt(tok, exp.Add(-time.Second)); err != nil || id != first {
		t.Fatalf("before its exp by the caller's time: %v (cached: %v)", err, id == first)
	}
	if id, err := v.VerifyAt(tok, exp.Add(time.Second)); err != nil || id == first {
		t.Fatalf("after its exp by the caller's time, before by the verifier's: %v (cached: %v)", err, id == first)
	}
	clk.Advance(2 * time.Minute)
	if _, err := v.Verify(tok); err == nil {
		t.Fatal("an expired token verified from the cache")
	}
	// A changed key set invalidates what was verified against the old one.
	clk.Advance(-2 * time.Minute)
	if _, err := v.Verify(tok); err != nil {
		t.Fatal(err)
	}
	v.keys.Store(newKeySet(nil, v.algs))
	if _, err := v.Verify(tok); err == nil {
		t.Fatal("a token verified with a key that is gone")
	}
}

func TestVerifiedCacheIsBounded(t *testing.T) {
	var c verifiedCache
	id := &Identity{User: "u", Expires: time.Now().Add(time.Hour)}
	for i := range maxVerifiedCache + 10 {
		c.put(string(rune(i))+"tok", id, nil)
	}
	if len(c.entries) > maxVerifiedCache {
		t.Fatalf("%d entries", len(c.entries))
	}
	c.put("noexp", &Identity{User: "u"}, nil)
	if _, ok := c.entries["noexp"]; ok {
		t.Fatal("a token without exp was cached")
	}
}
