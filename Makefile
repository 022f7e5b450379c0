# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
OUT    ?= out/demo
NPM    ?= npm
# The page (web/, TypeScript + Vite) is built into the package, where `segany serve` serves it.
PAGE   := src/segany/server/static/index.html
PAGE_SOURCES := $(wildcard web/src/*.ts web/src/*.css) web/index.html web/vite.config.ts \
	web/tsconfig.json web/package.json
NODE_DEPS := web/node_modules/.package-lock.json

.PHONY: demo test lint bench clean web serve

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

# npm ci: exactly the versions of web/package-lock.json, from the npm registry.
$(NODE_DEPS): web/package.json web/package-lock.json
	cd web && $(NPM) ci --no-audit --no-fund
	touch $@

$(PAGE): $(NODE_DEPS) $(PAGE_SOURCES)
	cd web && $(NPM) run build

web: $(PAGE)

demo: $(VENV)/.installed-run $(PAGE)
	$(PY) -m segany demo --output $(OUT)
	@echo "web app: $(PY) -m segany serve, then open http://127.0.0.1:8000/"

serve: $(VENV)/.installed-run $(PAGE)
	$(PY) -m segany serve $(SERVE_ARGS)

# Browser tests run when Debian's chromium is installed (.ci/run installs it), else skip.
test: $(VENV)/.installed-dev $(PAGE)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache src/*.egg-info web/node_modules \
		src/segany/server/static
