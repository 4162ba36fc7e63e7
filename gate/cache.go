package gate

import (
	"sync"
	"sync/atomic"
)

// maxCached bounds each of the State's caches; beyond it an arbitrary entry
// goes.
const maxCached = 100_000

// readCache caches values read from the store (users by ID, keys by hash),
// which changes to the store invalidate (forget). A lookup that misses
// reads the store; a change landing between that read and the put would
// leave the value from before the change in the cache, served until the
// next change (a disabled user still let in, a revoked key still
// accepted). So a reader notes the generation before reading the store,
// forget moves the generation on under the lock with its delete, and put
// refuses, under the same lock, a value read in an older generation.
type readCache[K comparable, V any] struct {
	mu  sync.RWMutex
	m   map[K]V
	gen atomic.Uint64
}

func (c *readCache[K, V]) get(k K) (V, bool) {
	c.mu.RLock()
	v, ok := c.m[k]
	c.mu.RUnlock()
	return v, ok
}

// generation is to be read before the store read whose value goes to put.
func (c *readCache[K, V]) generation() uint64 { return c.gen.Load() }

// put caches v, read from the store in generation gen, unless something was
// forgotten since.
func (c *readCache[K, V]) put(k K, v V, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen.Load() != gen {
		return
	}
	if c.m == nil {
		c.m = make(map[K]V)
	}
	if _, ok := c.m[k]; !ok && len(c.m) >= maxCached {
		for other := range c.m {
			delete(c.m, other)
			break
		}
	}
	c.m[k] = v
}

// forget drops k's entry.
func (c *readCache[K, V]) forget(k K) {
	c.mu.Lock()
	delete(c.m, k)
	c.gen.Add(1)
	c.mu.Unlock()
}

// forgetIf drops the entries for which drop is true.
func (c *readCache[K, V]) forgetIf(drop func(K, V) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, v := range c.m {
		if drop(k, v) {
			delete(c.m, k)
		}
	}
	c.gen.Add(1)
}
