# llm_gate — the commands a newcomer runs:
#   make run    build Caddy with the plugin and serve the gate on :8080 in front
#               of the vLLM emulator (or of VLLM_URL when set)
#   make test   vet + every test, with coverage of the plugin's packages
#   make lint   gofmt, go vet, staticcheck
#   make bench  the side-by-side benchmark (never part of make test)

GO          ?= go
BIN         := bin
TOOLS       := $(CURDIR)/.cache/bin
STATICCHECK := $(TOOLS)/staticcheck
# staticcheck 2026.2.2 (the proxy serves it by its module version)
STATICCHECK_VERSION := v0.8.2
# The plugin's own packages (the emulator and the mains are fixtures, not plugin).
COVERPKG    := ./,./admin/...,./auth/...,./caddyfile/...,./gate/...,./handler/...,./meter/...,./quota/...,./store/...,./tokenizer/...,./cli/...
COVERMIN    := 80

export GOFLAGS := -buildvcs=false

.PHONY: all build run test lint bench xcaddy clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/caddy ./cmd/caddy
	$(GO) build -o $(BIN)/vllm-sim ./cmd/vllm-sim
	$(GO) build -o $(BIN)/llm-bench ./cmd/llm-bench

run: build
	@scripts/dev.sh

test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m -coverpkg=$(COVERPKG) -coverprofile=coverage.out ./...
	@$(GO) tool cover -func=coverage.out | awk '/^total:/ { sub("%","",$$3); printf "coverage of the plugin packages: %s%% (minimum $(COVERMIN)%%)\n", $$3; if ($$3+0 < $(COVERMIN)) { print "coverage below $(COVERMIN)%"; exit 1 } }'

$(STATICCHECK):
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

lint: $(STATICCHECK)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./auth/ ./handler/ ./meter/ ./quota/ ./store/ ./tokenizer/
	$(BIN)/llm-bench -caddy $(BIN)/caddy -sim $(BIN)/vllm-sim -out bench

xcaddy:
	xcaddy/build.sh $(BIN)/caddy-xcaddy

clean:
	rm -rf $(BIN) coverage.out
