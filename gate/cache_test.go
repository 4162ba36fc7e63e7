package gate

import "testing"

// TestReadCacheBound: a full cache makes room for a new entry by dropping
// another, keeps the newest, and replaces an entry it holds in place.
func TestReadCacheBound(t *testing.T) {
	var c readCache[int, int]
	gen := c.generation()
	for i := range maxCached + 1 {
		c.put(i, i, gen)
	}
	if n := len(c.m); n != maxCached {
		t.Fatalf("%d entries, want the bound %d", n, maxCached)
	}
	if v, ok := c.get(maxCached); !ok || v != maxCached {
		t.Fatalf("the newest entry: %d, %v", v, ok)
	}
	var held int
	for k := range c.m {
		held = k
		break
	}
	c.put(held, -1, gen)
	if v, _ := c.get(held); len(c.m) != maxCached || v != -1 {
		t.Fatalf("replacing a held entry: %d entries, value %d", len(c.m), v)
	}
	c.forget(held)
	if _, ok := c.get(held); ok || c.generation() == gen {
		t.Fatal("forget left the entry or the generation")
	}
	c.put(held, 1, gen) // read before the forget
	if _, ok := c.get(held); ok {
		t.Fatal("a read older than a forget was cached")
	}
}
