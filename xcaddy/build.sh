#!/usr/bin/env bash
# Builds Caddy with this plugin the way users do, with a pinned xcaddy.
#   xcaddy/build.sh [output]   (default: bin/caddy-xcaddy)
set -euo pipefail
cd "$(dirname "$0")/.."
XCADDY_VERSION=v0.4.5
CADDY_VERSION=$(go list -m -f '{{.Version}}' github.com/caddyserver/caddy/v2)
out=${1:-bin/caddy-xcaddy}
# The module path is not on the proxy: xcaddy's `go get` must not ask it.
export GOPRIVATE=github.com/llmgate/llmgate
export CADDY_VERSION
mkdir -p "$(dirname "$out")"
go run "github.com/caddyserver/xcaddy/cmd/xcaddy@${XCADDY_VERSION}" build "$CADDY_VERSION" \
	--output "$out" --with github.com/llmgate/llmgate=.
"$out" list-modules | grep -E '^(llm_gate|http.handlers.llm_gate|admin.api.llm_gate)$'
