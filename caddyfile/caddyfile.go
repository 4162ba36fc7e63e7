// Package caddyfile turns the Caddyfile words of llm_gate into the JSON of
// its two modules: the global option `llm_gate { ... }` becomes the
// `llm_gate` app, and the site directive `llm_gate { ... }` becomes the
// `http.handlers.llm_gate` handler.
//
// Everything that can be checked without running Caddy is checked here, so
// `caddy adapt` and `caddy validate` name the file and line of a mistake:
// unknown words, argument counts, numbers, durations, windows, globs,
// short HMAC secrets, missing key files and plans that do not exist.
// Defaults are left to the modules' Provision: the JSON holds only what the
// user wrote.
package caddyfile

import (
	"errors"

	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("llm_gate", parseApp)
	httpcaddyfile.RegisterHandlerDirective("llm_gate", parseHandler)
	// The gate must see a request before the proxy forwards it; declaring
	// the place here spares users an `order` line.
	httpcaddyfile.RegisterDirectiveOrder("llm_gate", httpcaddyfile.Before, "reverse_proxy")
}

// errNoPEM explains a public_key file that exists but holds no key.
var errNoPEM = errors.New("no PEM block found; want a PEM public key (-----BEGIN PUBLIC KEY-----)")
