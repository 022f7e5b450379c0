# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
OUT    ?= out/demo
NPM    ?= npm
NODE   ?= node
# The page (web/, TypeScript + Vite) is built into the package, where `segany serve` serves it.
PAGE   := src/segany/server/static/index.html
PAGE_SOURCES := $(wildcard web/src/*.ts web/src/*.css) web/index.html web/annotate.html web/video.html web/vite.config.ts \
	web/tsconfig.json web/package.json
NODE_DEPS := web/node_modules/.package-lock.json
# Node.js >= 18 and npm build the page (Debian 12's `apt-get install nodejs npm` will do; .ci/run
# installs them). Without them `make demo` and `make test` go on without the page, saying so:
# `segany serve` then shows how to build it and the browser tests skip.
HAVE_NODE := $(shell command -v $(NPM) >/dev/null 2>&1 && \
	$(NODE) -e 'process.exit(Number(process.versions.node.split(".")[0] < 18))' >/dev/null 2>&1 && echo yes)
ifeq ($(HAVE_NODE),yes)
PAGE_OR_NOTE := $(PAGE)
else
PAGE_OR_NOTE := no-node-note
endif
NO_NODE := Node.js >= 18 and npm are needed to build the web page (web/): apt-get install nodejs npm
# The data engine's tests also run on PostgreSQL: each session starts a throwaway server from
# Debian's binaries (apt-get install postgresql; .ci/run installs it, no service needed).
HAVE_POSTGRES := $(shell { command -v initdb || ls /usr/lib/postgresql/*/bin/initdb; } >/dev/null 2>&1 && echo yes)

# Label Studio, for the ML backend's end-to-end test (`segany serve --label-studio`), in a
# virtual environment of its own: its pinned dependencies never meet the project's. Without it
# (no network, say) that test skips; in CI it fails instead (.ci/run).
LS_VENV := .venv-label-studio
LS_BIN  := $(LS_VENV)/bin/label-studio
LS_DATA := $(LS_VENV)/migrated-data
LABEL_STUDIO_VERSION ?= 1.23.2
LS_OFFLINE := LATEST_VERSION_CHECK=false COLLECT_ANALYTICS=false SENTRY_DSN= FRONTEND_SENTRY_DSN=

.PHONY: demo test lint bench clean web serve no-node-note check-node label-studio-or-note

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Runtime install (what `make demo` needs); re-run when pyproject.toml changes.
$(VENV)/.installed-run: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[web]'
	touch $@

# Development install: test tools and the official package used as a parity oracle.
$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed-run
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# npm ci: exactly the versions of web/package-lock.json, from the npm registry; no install
# scripts (none is needed: esbuild's binary comes as a platform package).
$(NODE_DEPS): web/package.json web/package-lock.json | check-node
	cd web && $(NPM) ci --ignore-scripts --no-audit --no-fund
	touch $@

$(PAGE): $(NODE_DEPS) $(PAGE_SOURCES) | check-node
	cd web && $(NPM) run build

check-node:
	@test "$(HAVE_NODE)" = yes || { echo "error: $(NO_NODE)" >&2; exit 1; }

no-node-note:
	@echo "note: not building the web page: $(NO_NODE)."
	@echo "note: segany serve will show how to build it; the browser tests will be skipped."

web: $(PAGE)

$(LS_BIN):
	rm -rf $(LS_VENV)
	$(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install --quiet label-studio==$(LABEL_STUDIO_VERSION) \
		|| { rm -rf $(LS_VENV); exit 1; }

# Label Studio's database, migrated once here (any command migrates first; `user` then only
# looks a name up): each test server starts from a copy instead of spending ~30 s migrating.
$(LS_DATA): | $(LS_BIN)
	rm -rf $@.partial
	LABEL_STUDIO_BASE_DATA_DIR=$@.partial $(LS_OFFLINE) \
		$(LS_BIN) user --username nobody --data-dir $@.partial >/dev/null
	rm -f $@.partial/.env  # its secret key: each copy makes its own
	mv $@.partial $@

label-studio-or-note:
	@$(MAKE) --no-print-directory $(LS_DATA) || echo "note: Label Studio did not install" \
		"($(LS_BIN)): the Label Studio tests will be skipped (in CI they fail)."

demo: $(VENV)/.installed-run $(PAGE_OR_NOTE)
	$(PY) -m segany demo --output $(OUT)
	@echo "web app: $(PY) -m segany serve, then open http://127.0.0.1:8000/"

serve: $(VENV)/.installed-run $(PAGE)
	$(PY) -m segany serve $(SERVE_ARGS)

# Browser tests run when Debian's chromium is installed (.ci/run installs it), else skip; so do
# the PostgreSQL variants of the engine's tests without PostgreSQL (in CI they fail instead).
test: $(VENV)/.installed-dev $(PAGE_OR_NOTE) label-studio-or-note
	@test "$(HAVE_POSTGRES)" = yes || echo "note: no PostgreSQL server binaries" \
		"(apt-get install postgresql): the engine's PostgreSQL tests will be skipped."
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

# Benchmarks (slow: the official ViT-H encoder alone takes minutes on a small CPU). One at a
# time under a lock, so that benchmarks on a shared machine never overlap.
BENCH_LOCK ?= /tmp/segany-bench.lock
bench: $(VENV)/.installed-dev
	for script in bench_encoder bench_attention bench_predictor bench_batched_call bench_automatic bench_engine_auto bench_engine_store bench_ray bench_onnx bench_video bench_hq bench_mobile bench_hf; do \
		echo "== $$script"; flock $(BENCH_LOCK) $(PY) benchmarks/$$script.py || exit 1; done
	flock $(BENCH_LOCK) $(PY) benchmarks/bench_encoder.py --model vit_h --modes fp32,bf16 --repeats 2
	flock $(BENCH_LOCK) $(PY) benchmarks/bench_floor.py

clean:
	rm -rf $(VENV) $(LS_VENV) out .pytest_cache .ruff_cache src/*.egg-info web/node_modules \
		src/segany/server/static
