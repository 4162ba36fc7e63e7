// Command caddy is Caddy with its standard modules and the llm_gate plugin,
// the same binary `xcaddy build --with github.com/llmgate/llmgate=.` makes.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/llmgate/llmgate"
)

func main() {
	caddycmd.Main()
}
