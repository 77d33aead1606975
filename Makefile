# Two entry points for a fresh machine with Python 3.11 and pip:
#   make demo   creates .venv, installs vaekit and trains on the embedded digits data set
#   make test   creates .venv, installs vaekit with its test tools, and runs lint + tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN ?= runs/demo

.PHONY: demo test lint format clean install

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $@

install: $(BIN)/.installed

# The demo's model is tiny: one thread per process is fastest and avoids oversubscribed cores.
demo: export OMP_NUM_THREADS ?= 1
demo: $(BIN)/.installed
	$(BIN)/vaekit train --config configs/digits.toml --out $(RUN) --overwrite --quiet
	$(BIN)/vaekit evaluate $(RUN) -k 5000 --quiet
	$(BIN)/vaekit sample $(RUN) -n 64
	$(BIN)/vaekit reconstruct $(RUN) -n 20
	$(BIN)/vaekit manifold $(RUN) -n 15
	$(BIN)/vaekit latents $(RUN)
	@echo "demo run in $(RUN)/; pictures in $(RUN)/figures/ (samples, reconstructions, manifold, latents)"

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: lint
	$(BIN)/python -m pytest

format: $(BIN)/.installed
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
