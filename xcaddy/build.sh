#!/usr/bin/env bash
# Builds Caddy with this plugin the way users do, with a pinned xcaddy.
#   xcaddy/build.sh [output]   (default: bin/caddy-xcaddy)
set -euo pipefail
cd "$(dirname "$0")/.."
XCADDY_VERSION=v0.4.5
CADDY_VERSION=$(go list -m -f '{{.Version}}' github.com/caddyserver/caddy/v2)
out=${1:-bin/caddy-xcaddy}
# The module path is not on the proxy (and this checkout may differ from it):
# fill the module cache first, then let xcaddy's `go get` work offline, so the
# plugin resolves to the local replacement instead of a network lookup.
go mod download
GOPROXY=$(go env GOPROXY) go install "github.com/caddyserver/xcaddy/cmd/xcaddy@${XCADDY_VERSION}"
# (Every module was verified against go.sum by `go mod download` above.)
export GOPROXY=off GOSUMDB=off GOFLAGS=-mod=mod
export CADDY_VERSION
mkdir -p "$(dirname "$out")"
"$(go env GOPATH)/bin/xcaddy" build "$CADDY_VERSION" \
	--output "$out" --with github.com/llmgate/llmgate=.
"$out" list-modules | grep -E '^(llm_gate|http.handlers.llm_gate|admin.api.llm_gate)$'
