#!/usr/bin/env bash
# `make run`: serves examples/dev/Caddyfile on http://localhost:8080 in front
# of the vLLM emulator, or of the real vLLM named by VLLM_URL.
set -euo pipefail
cd "$(dirname "$0")/.."

dev_default=dev-only-secret-change-me-0123456789abcdef
export LLM_GATE_JWT_SECRET=${LLM_GATE_JWT_SECRET:-$dev_default}
export LLM_GATE_DB=${LLM_GATE_DB:-$PWD/.cache/llm_gate-dev.db}
mkdir -p "$(dirname "$LLM_GATE_DB")"

sim_pid=
cleanup() { [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null || true; }
trap cleanup EXIT INT TERM

if [ -z "${VLLM_URL:-}" ]; then
	export VLLM_URL=http://127.0.0.1:8000
	bin/vllm-sim -addr 127.0.0.1:8000 -model sim-model -tps 50 &
	sim_pid=$!
	model=sim-model
else
	model=${VLLM_MODEL:-$(curl -fsS "$VLLM_URL/v1/models" | sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -1)}
fi

token=$(bin/caddy llm-gate token --secret "$LLM_GATE_JWT_SECRET" --user dev --ttl 24h)
[ "$LLM_GATE_JWT_SECRET" = "$dev_default" ] && echo "WARNING: using the dev JWT secret; set LLM_GATE_JWT_SECRET (openssl rand -base64 48) for anything real." >&2

cat <<MSG

llm_gate (dev) on http://localhost:8080  ->  $VLLM_URL
admin API on http://localhost:2019/llm_gate/   store: $LLM_GATE_DB

A JWT for user "dev", valid 24h (mint more with:
  bin/caddy llm-gate token --secret "\$LLM_GATE_JWT_SECRET" --user alice --ttl 1h):

  export OPENAI_API_KEY=$token

Try it:

  curl -sN http://localhost:8080/v1/chat/completions \\
    -H "Authorization: Bearer \$OPENAI_API_KEY" -H 'Content-Type: application/json' \\
    -d '{"model":"$model","stream":true,"messages":[{"role":"user","content":"Hello!"}]}'

  curl -s http://localhost:8080/llm_gate/me -H "Authorization: Bearer \$OPENAI_API_KEY"

OpenAI SDK (Python):

  from openai import OpenAI
  client = OpenAI(base_url="http://localhost:8080/v1")   # reads OPENAI_API_KEY
  r = client.chat.completions.create(model="$model", messages=[{"role": "user", "content": "Hello!"}])
  print(r.choices[0].message.content, r.usage)

MSG

bin/caddy run --config examples/dev/Caddyfile --adapter caddyfile
