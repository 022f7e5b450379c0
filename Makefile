# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
OUT    ?= out/demo

.PHONY: demo test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Runtime install (what `make demo` needs); re-run when pyproject.toml changes.
$(VENV)/.installed-run: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

# Development install: test tools and the official package used as a parity oracle.
$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed-run
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.installed-run
	$(PY) -m segany demo --output $(OUT)

test: $(VENV)/.installed-dev
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

# Benchmarks (slow: the official ViT-H encoder alone takes minutes on a small CPU). One at a
# time under a lock, so that benchmarks on a shared machine never overlap.
BENCH_LOCK ?= /tmp/segany-bench.lock
bench: $(VENV)/.installed-dev
	for script in bench_encoder bench_predictor bench_automatic bench_onnx; do \
		echo "== $$script"; flock $(BENCH_LOCK) $(PY) benchmarks/$$script.py || exit 1; done
	flock $(BENCH_LOCK) $(PY) benchmarks/bench_encoder.py --model vit_h --modes fp32,bf16 --repeats 2

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache src/*.egg-info
