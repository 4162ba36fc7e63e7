// Package llmgate registers every llm_gate module with Caddy: the
// `llm_gate` app, the `http.handlers.llm_gate` handler, reverse_proxy's
// `http.reverse_proxy.transport.llm_gate` transport, the
// `admin.api.llm_gate` admin routes, and the Caddyfile directive and global
// option. Import it (or build with xcaddy --with github.com/llmgate/llmgate)
// to get the whole plugin.
package llmgate

import (
	// Each package registers its own modules in init.
	_ "github.com/llmgate/llmgate/admin"
	_ "github.com/llmgate/llmgate/caddyfile"
	_ "github.com/llmgate/llmgate/cli"
	_ "github.com/llmgate/llmgate/gate"
	_ "github.com/llmgate/llmgate/handler"
)
