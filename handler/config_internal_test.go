package handler

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// TestVerifierConfigPlaceholders: a secret, public_key or jwks whose
// placeholder comes out empty fails provisioning with the placeholder
// named and the thing to check, {env.*} and {file.*} each their own.
func TestVerifierConfigPlaceholders(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(strings.Repeat("s", 40)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LLM_GATE_TEST_SECRET", strings.Repeat("e", 40))
	good := JWTConfig{Secrets: []string{"{env.LLM_GATE_TEST_SECRET}", "{file." + secretFile + "}", "{literal-" + strings.Repeat("x", 32) + "}"}}
	cfg, err := good.verifierConfig(zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Secrets) != 3 || string(cfg.Secrets[0]) != strings.Repeat("e", 40) || string(cfg.Secrets[1]) != strings.Repeat("s", 40) ||
		!strings.HasPrefix(string(cfg.Secrets[2]), "{literal-") {
		t.Fatalf("secrets %q", cfg.Secrets)
	}
	for _, c := range []struct {
		name string
		cfg  JWTConfig
		want []string
	}{
		{"unset env secret", JWTConfig{Secrets: []string{"{env.LLM_GATE_TEST_UNSET}"}}, []string{"secret #1", "{env.LLM_GATE_TEST_UNSET}", "environment variable"}},
		{"missing file secret", JWTConfig{Secrets: []string{"{file." + filepath.Join(dir, "nope") + "}"}}, []string{"secret #1", "does the file exist"}},
		{"blank secret", JWTConfig{Secrets: []string{"   "}}, []string{"secret #1", "empty"}},
		{"unset env public_key", JWTConfig{PublicKeys: []string{"{env.LLM_GATE_TEST_UNSET}"}}, []string{"public_key {env.LLM_GATE_TEST_UNSET}", "environment variable"}},
		{"unset env jwks", JWTConfig{JWKS: []string{"https://idp/{env.LLM_GATE_TEST_UNSET}"}}, []string{"jwks https://idp/{env.LLM_GATE_TEST_UNSET}", "environment variable"}},
	} {
		_, err := c.cfg.verifierConfig(zap.NewNop())
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q lacks %q", c.name, err, w)
			}
		}
	}
}
