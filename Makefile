# The two commands of the README: `make demo` and `make test`. Everything else is a step they use.
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
OUT    ?= out

export OPENBLAS_NUM_THREADS := 1
export RAY_DEDUP_LOGS := 1

.PHONY: setup demo test lint pytest bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	# neural CF's optional extra: this exact version is the CPU wheel (others pull gigabytes of CUDA)
	$(BIN)/pip install -q torch==2.13.0
	touch $@

demo: setup
	$(BIN)/wayfinder pipeline --source movielens:data/ml-latest-small --out $(OUT)

test: setup lint pytest

lint: setup
	$(BIN)/ruff check recsys jobs serving tests benchmarks
	$(BIN)/ruff format --check recsys jobs serving tests benchmarks
	$(BIN)/mypy recsys jobs serving

pytest: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python -m benchmarks.preprocess

clean:
	rm -rf $(OUT) .pytest_cache .mypy_cache .ruff_cache
