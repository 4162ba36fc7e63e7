package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// maxJWKSSize bounds a JWKS document. Real ones are a few kilobytes; the
// bound keeps a broken or hostile endpoint from filling memory.
const maxJWKSSize = 1 << 20

// jwksSource is one configured JWKS location and the keys last loaded from
// it. keys is guarded by Verifier.fetchMu.
type jwksSource struct {
	loc  string // URL or file path
	url  bool
	keys []*key // last good keys; kept when a refresh fails
}

// lastGood keeps, for the whole process, the keys of each JWKS URL's last
// good fetch and when it was, so that a config loaded while the identity
// provider is down (a reload, another site's change) starts with the keys
// the config before it had, rather than failing or refusing every token.
var lastGood sync.Map // URL → goodKeys

type goodKeys struct {
	keys []*key
	at   time.Time
}

// newJWKSSource classifies a configured location.
func newJWKSSource(loc string) (*jwksSource, error) {
	loc = strings.TrimSpace(loc)
	switch {
	case loc == "":
		return nil, errors.New("jwt: empty jwks location; give an https URL or a file path")
	case strings.HasPrefix(loc, "https://"), strings.HasPrefix(loc, "http://"):
		return &jwksSource{loc: loc, url: true}, nil
	case strings.Contains(loc, "://") && !strings.HasPrefix(loc, "file://"):
		return nil, fmt.Errorf("jwt: jwks %q: unsupported scheme; use https://, http:// or a file path", loc)
	}
	return &jwksSource{loc: strings.TrimPrefix(loc, "file://")}, nil
}

// fetch reads and parses the source's current key set.
func (v *Verifier) fetch(ctx context.Context, s *jwksSource) ([]*key, error) {
	var data []byte
	if s.url {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.loc, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/jwk-set+json, application/json")
		resp, err := v.client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("HTTP status %s", resp.Status)
		}
		data, err = io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
		if err != nil {
			return nil, fmt.Errorf("reading body: %v", err)
		}
	} else {
		f, err := os.Open(s.loc)
		if err != nil {
			return nil, err
		}
		data, err = io.ReadAll(io.LimitReader(f, maxJWKSSize+1))
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	if len(data) > maxJWKSSize {
		return nil, fmt.Errorf("document is larger than %d bytes", maxJWKSSize)
	}
	keys, skipped, err := parseJWKS(data, "jwks "+s.loc)
	for _, e := range skipped {
		// Sets routinely carry encryption keys next to signing keys.
		v.log.Debug("JWKS key skipped", zap.String("jwks", s.loc), zap.Error(e))
	}
	if err == nil && s.url {
		lastGood.Store(s.loc, goodKeys{keys, time.Now()})
	}
	return keys, err
}

// initialFetch loads every JWKS once at construction and starts the refresh
// loop. See NewVerifier for which failures are fatal.
func (v *Verifier) initialFetch() error {
	var failed []error
	v.fetchMu.Lock()
	for _, s := range v.sources {
		keys, err := v.fetch(v.ctx, s)
		if err != nil {
			err = fmt.Errorf("jwt: jwks %q: %v", s.loc, err)
			if !s.url {
				v.fetchMu.Unlock()
				return err
			}
			if g, ok := lastGood.Load(s.loc); ok {
				good := g.(goodKeys)
				s.keys = good.keys
				v.log.Warn("JWKS unavailable; serving with the keys this process fetched from it before, and retrying in the background",
					zap.String("jwks", s.loc), zap.Strings("kids", kids(s.keys)), zap.Time("fetched", good.at), zap.Error(err))
			} else {
				failed = append(failed, err)
			}
			continue
		}
		s.keys = keys
		v.log.Info("JWKS loaded", zap.String("jwks", s.loc), zap.Strings("kids", kids(keys)))
	}
	v.publishLocked()
	v.fetchMu.Unlock()

	// An identity provider that does not answer is not the config's fault:
	// failing here would fail the whole config (every site of the Caddy,
	// at a start or a reload). The gate starts, refuses the tokens it has
	// no key for, and fetches again in the background.
	for _, err := range failed {
		if v.keys.Load().count == 0 {
			v.log.Error("JWKS unavailable at start and no other key source has a key: every token is refused until it answers; retrying in the background",
				zap.Error(err))
		} else {
			v.log.Warn("JWKS unavailable at start; serving with the other keys and retrying in the background",
				zap.Error(err))
		}
	}
	if len(v.sources) > 0 {
		v.done = make(chan struct{})
		go v.refreshLoop(len(failed) == 0)
	}
	return nil
}

// publishLocked rebuilds the key-set snapshot from the static keys and each
// source's cached keys. The caller holds fetchMu (or is the constructor).
func (v *Verifier) publishLocked() {
	all := slices.Clone(v.static)
	for _, s := range v.sources {
		all = append(all, s.keys...)
	}
	v.keys.Store(newKeySet(all, v.algs))
}

// Refresh fetches every JWKS now. A source that fails keeps its cached keys,
// so tokens that verified before keep verifying; the error joins every
// source's failure. Refresh ignores the unknown-kid rate limit: it is for
// operators and tests, not for the request path.
func (v *Verifier) Refresh(ctx context.Context) error {
	v.fetchMu.Lock()
	defer v.fetchMu.Unlock()
	var errs []error
	for _, s := range v.sources {
		keys, err := v.fetch(ctx, s)
		if err != nil {
			v.log.Warn("JWKS refresh failed; keeping the cached keys",
				zap.String("jwks", s.loc), zap.Int("cached_keys", len(s.keys)), zap.Error(err))
			errs = append(errs, fmt.Errorf("jwks %q: %w", s.loc, err))
			continue
		}
		if old, now := kids(s.keys), kids(keys); !slices.Equal(old, now) {
			v.log.Info("JWKS keys changed", zap.String("jwks", s.loc),
				zap.Strings("old_kids", old), zap.Strings("new_kids", now))
		}
		s.keys = keys
	}
	v.publishLocked()
	return errors.Join(errs...)
}

// kids lists the key ids of keys, sorted, for change detection in logs.
func kids(keys []*key) []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k.kid)
	}
	slices.Sort(out)
	return out
}

// refreshLoop refreshes every RefreshInterval until Close. After a failure it
// retries sooner — from MinRefetchInterval, doubling up to RefreshInterval —
// so an identity provider that was down at start is picked up quickly.
func (v *Verifier) refreshLoop(healthy bool) {
	defer close(v.done)
	retry := min(v.minRefetch, v.refreshEvery)
	delay := v.refreshEvery
	if !healthy {
		delay = retry
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-v.ctx.Done():
			return
		case <-t.C:
		}
		if err := v.Refresh(v.ctx); err != nil && v.ctx.Err() == nil {
			delay = retry
			retry = min(2*retry, v.refreshEvery)
		} else {
			retry = min(v.minRefetch, v.refreshEvery)
			delay = v.refreshEvery
		}
		t.Reset(delay)
	}
}

// refetchForKid refreshes the JWKS because a token named an unknown kid,
// unless one such fetch started less than MinRefetchInterval ago. A caller
// arriving while a fetch runs waits for it instead of starting another. It
// reports whether a fetch happened (so the key set is worth a second look).
func (v *Verifier) refetchForKid() bool {
	v.rfMu.Lock()
	if ch := v.rfInflight; ch != nil {
		v.rfMu.Unlock()
		select {
		case <-ch:
			return true
		case <-v.ctx.Done():
			return false
		}
	}
	now := v.now()
	if !v.rfLast.IsZero() && now.Sub(v.rfLast) < v.minRefetch && now.Sub(v.rfLast) >= 0 {
		v.rfMu.Unlock()
		return false
	}
	v.rfLast = now
	ch := make(chan struct{})
	v.rfInflight = ch
	v.rfMu.Unlock()

	// Failures are logged by Refresh; the cached keys stay in place.
	_ = v.Refresh(v.ctx)

	v.rfMu.Lock()
	v.rfInflight = nil
	v.rfMu.Unlock()
	close(ch)
	return true
}
