# pandanode — one Makefile for set-up, running, testing and tooling.
# Every target installs what it needs itself; nothing relies on a hand-made environment.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE_DIR   := tests/interop
NODE_STAMP := $(NODE_DIR)/node_modules/.installed

.PHONY: setup run test soak lint typecheck unit format clean help proto bench fuzz proto-check \
	nginx lock config-sample browser shells

help:
	@echo "make run    set up, then start the node (all-in-one, data in ./data)"
	@echo "make test   set up, then lint, type-check and run every test (but the soak ones)"
	@echo "make soak   set up, then run the long tests at scale and the fault suite SOAK_ROUNDS (20) rounds per case"
	@echo "make format apply ruff's formatter and autofixes"
	@echo "make bench  set up, then run the benchmarks (minutes; ARGS=\"--help\" for sizes)"
	@echo "make fuzz   set up, then fuzz every parser FUZZ_SECONDS (300) each; ARGS=\"entry …\""

# setup.py and core/_verify.c: the optional C extension, built into core/ by the editable install
# (skipped, with a warning, where there is no C compiler: PyNaCl then checks signatures).
$(STAMP): pyproject.toml setup.py core/_verify.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -e '.[node,dev]'
	touch $@

$(NODE_STAMP): $(NODE_DIR)/package.json
	@command -v node >/dev/null || { echo "error: node is required for the interop tests (install Node.js >= 18)"; exit 1; }
	@command -v npm >/dev/null || { echo "error: npm is required for the interop tests"; exit 1; }
	cd $(NODE_DIR) && npm install --no-audit --no-fund --loglevel=error
	touch $@

setup: $(STAMP) $(NODE_STAMP) nginx browser shells

# nginx (Debian's nginx-light) is the entry point the distributed tests and bench also route
# through (deploy/nginx/pandanode.conf.template, rendered by bench/deployment.py); installed
# when missing, where apt-get can as root.
nginx:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null \
	      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; } \
	      || echo "note: could not install nginx-light: the nginx tests are skipped"; \
	  else echo "note: nginx is not installed (apt-get install nginx-light): its tests are skipped"; fi; }

# zsh and fish run the completion tests of their scripts (tests/client/test_cli_usage.py);
# installed when missing, where apt-get can as root (else those tests skip, saying why).
shells:
	@for shell in zsh fish; do command -v $$shell >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$shell >/dev/null \
	      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$shell >/dev/null; } \
	      || echo "note: could not install $$shell: its completion tests are skipped"; \
	  else echo "note: $$shell is not installed (apt-get install $$shell): its completion tests are skipped"; fi; }; \
	done

# The headless browser test needs Debian's chromium; installed when missing and apt-get can be
# used as root (else that test skips, saying why).
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get install -y chromium || { apt-get update && apt-get install -y chromium; } \
		|| echo "warning: could not install chromium; the browser test will skip"; \
	fi

run: $(STAMP)
	$(BIN)/pandanode up $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Both checkers read the packages as installed: `pip install -e` puts src/ (whose pandanode/
# links to core/, services/, client/ and the generated protos) on sys.path. mypy is strict;
# pyright (basedpyright, which bundles its Node runtime) runs its basic checks, configured in
# pyproject.toml.
typecheck: $(STAMP)
	$(BIN)/mypy -p pandanode.core -p pandanode.services -p pandanode.client
	$(BIN)/mypy tests
	$(BIN)/mypy bench
	$(BIN)/basedpyright

PROTOS := $(shell find protos -name '*.proto')

# Regenerate the committed Python code of the protos (and its type stubs), and the descriptor
# set with source info (the protos' comments) that reflection serves.
proto: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m grpc_tools.protoc -I protos \
		--python_out=protos --mypy_out=protos --grpc_python_out=protos --mypy_grpc_out=protos \
		--include_source_info --descriptor_set_out=services/runtime/api_descriptors.binpb \
		$(PROTOS)

# The committed generated code must be what `make proto` makes now: regenerate into a temporary
# directory and compare, both ways (a stale file, a missing one, one without its .proto).
proto-check: $(STAMP)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m grpc_tools.protoc -I protos \
		--python_out=$$tmp --mypy_out=$$tmp --grpc_python_out=$$tmp --mypy_grpc_out=$$tmp \
		$(PROTOS) && \
	stale=0 && \
	for f in $$(cd $$tmp && find . -type f | sort); do \
		diff -u "protos/$$f" "$$tmp/$$f" || stale=1; \
	done && \
	for f in $$(cd protos && find . -name '*_pb2*.py*' | sort); do \
		[ -f "$$tmp/$$f" ] || { echo "protos/$$f: no .proto makes it"; stale=1; }; \
	done && \
	if [ $$stale -ne 0 ]; then echo "error: generated code differs from the protos: run make proto"; exit 1; fi && \
	echo "proto-check: the generated code matches the protos"

unit: setup
	$(BIN)/pytest

test: lint typecheck proto-check unit

# Benchmarks, not part of `make test` (tests/bench runs a smoke-sized pass of them): real nodes
# on loopback; writes bench/results/<UTC date-time>.json and PNG charts, prints the table.
bench: setup
	$(BIN)/python -m bench $(ARGS)

# Coverage-guided fuzzing (atheris) of every parser of untrusted input, longer than the few
# seconds per target that `make test` gives it; new inputs and crashes go to .fuzz/.
FUZZ_SECONDS ?= 300

fuzz: $(STAMP)
	$(BIN)/python -m tests.fuzz.run --seconds $(FUZZ_SECONDS) $(ARGS)

# Long runs, not part of `make test`: the tests marked `soak` (replication at scale), then the
# fault suite (tests/faults: kill -9 of every process, nats-server restarts, a full disk,
# SIGSTOP) for SOAK_ROUNDS rounds per case, where `make test` runs one; SOAK_SEED varies the
# random points. Prints faults injected, entries acknowledged, lost and invalid (both 0). One
# test at a time (-n 0): the cases at scale take the whole machine.
SOAK_ROUNDS ?= 20
SOAK_SEED ?= 1

soak: setup
	$(BIN)/pytest -m soak -p no:cacheprovider -n 0 $(ARGS)
	PANDANODE_FAULT_ROUNDS=$(SOAK_ROUNDS) PANDANODE_FAULT_SEED=$(SOAK_SEED) \
		$(BIN)/pytest tests/faults -p no:cacheprovider -n 0 $(ARGS)

# Pin the image's dependencies by version and hash (deploy/Dockerfile installs exactly these).
lock: $(STAMP)
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url \
		--no-emit-find-links --extra node --output-file deploy/requirements.lock pyproject.toml
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe \
		--no-emit-index-url --no-emit-find-links --output-file deploy/build-requirements.lock \
		deploy/build-requirements.in

# Regenerate the commented sample of every setting from services/runtime/settings.py.
config-sample: $(STAMP)
	$(BIN)/pandanode config sample > deploy/config.toml

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) $(NODE_DIR)/node_modules .mypy_cache .pytest_cache .ruff_cache .hypothesis .fuzz
