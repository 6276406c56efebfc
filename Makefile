# nixlayer — make targets. `make test` is what CI runs (after scripts/install-deps.sh).
GO       ?= go
BIN      := bin/nixlayer
PKGS     := ./...

.PHONY: all build test unit e2e lint bench bench-editor fuzz demo clean

all: build

# nixlayer --version says which commit it was built from.
VERSION  := $(shell git describe --tags --always --dirty 2>/dev/null)
COMMIT   := $(shell git rev-parse HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo +dirty)

build:
	$(GO) build -ldflags "-X main.version=$(VERSION) -X main.commit=$(COMMIT)" -o $(BIN) ./cmd/nixlayer

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) mod tidy -diff
	shellcheck $$(git ls-files '*.bash')

# Everything, with real Nix, bubblewrap and overlay layers (root).
test: lint build
	NIXLAYER_E2E=1 $(GO) test -count=1 -timeout 30m $(PKGS)

# Unit tests only (no Nix builds).
unit:
	$(GO) test -count=1 -short $(PKGS)

# Benchmarks of the engine: cold layered build vs nix-build, full vs resumed rebuild.
bench: build
	bash scripts/bench.sh

# What the editor's live lenses cost during a build of the medium fixture
# (code-server's extension host; installs code-server like npm test).
bench-editor: build
	bash scripts/bench-editor.sh

# Each fuzz target for FUZZTIME (default 60s).
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./drv/
	$(GO) test -run '^$$' -fuzz '^FuzzParseDumps$$' -fuzztime $(FUZZTIME) ./shellstate/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./nixexpr/
	$(GO) test -run '^$$' -fuzz '^FuzzReadRequest$$' -fuzztime $(FUZZTIME) ./hook/
	$(GO) test -run '^$$' -fuzz '^FuzzReadRequest$$' -fuzztime $(FUZZTIME) ./daemon/
	$(GO) test -run '^$$' -fuzz '^FuzzCodeReads$$' -fuzztime $(FUZZTIME) ./phaserules/

demo: build
	bash scripts/demo.sh

clean:
	rm -rf bin
