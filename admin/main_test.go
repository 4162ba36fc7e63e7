package admin_test

import (
	"testing"

	"github.com/llmgate/llmgate/internal/testcaddy"
)

// TestMain keeps Caddy's autosaved config and default data directory out of
// the user's home.
func TestMain(m *testing.M) { testcaddy.Main(m) }
