# Two entry points for a fresh machine with Python 3.11 and pip:
#   make demo   creates .venv, installs vaekit and trains on the embedded digits data set
#   make test   creates .venv, installs vaekit with its test tools, and runs lint + tests
# Demos on other kinds of data (each installs the Debian package it needs when it can):
#   make words-demo   a text VAE on the word list of Debian's wamerican
#   make audio-demo   a VAE of spoken digits synthesized with Debian's espeak-ng
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN ?= runs/demo
WORDS_RUN ?= runs/words
WORDS ?= /usr/share/dict/words
AUDIO_RUN ?= runs/spoken-digits
SPOKEN ?= data/spoken-digits

.PHONY: demo words-demo audio-demo test lint format clean install

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

words-demo: export OMP_NUM_THREADS ?= 1
words-demo: $(BIN)/.installed
	sh scripts/apt-need.sh wamerican $(WORDS)
	$(BIN)/vaekit train --config configs/words.toml --data $(WORDS) --out $(WORDS_RUN) \
		--overwrite --quiet -k 10
	$(BIN)/vaekit evaluate $(WORDS_RUN) -k 20 --quiet
	$(BIN)/vaekit sample $(WORDS_RUN) -n 20
	$(BIN)/vaekit interpolate $(WORDS_RUN) --from house --to garden
	@echo "words demo run in $(WORDS_RUN)/ (samples.txt, interpolation.txt, eval.json)"

audio-demo: export OMP_NUM_THREADS ?= 1
audio-demo: $(BIN)/.installed
	sh scripts/apt-need.sh espeak-ng /usr/bin/espeak-ng
	$(BIN)/python scripts/spoken_digits.py $(SPOKEN)
	$(BIN)/vaekit train --data $(SPOKEN) --out $(AUDIO_RUN) --overwrite --quiet -k 100
	$(BIN)/vaekit evaluate $(AUDIO_RUN) -k 1000 --quiet
	$(BIN)/vaekit sample $(AUDIO_RUN) -n 10
	$(BIN)/vaekit reconstruct $(AUDIO_RUN) -n 5
	$(BIN)/vaekit interpolate $(AUDIO_RUN) --steps 6 \
		--from $(SPOKEN)/zero/en-us-p50-s130.wav --to $(SPOKEN)/nine/en-gb-f3-p50-s130.wav
	$(BIN)/vaekit latents $(AUDIO_RUN)
	@echo "audio demo run in $(AUDIO_RUN)/: WAV files in samples/, reconstructions/, interpolation/"

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: lint
	$(BIN)/python -m pytest

format: $(BIN)/.installed
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) runs data/spoken-digits .pytest_cache .ruff_cache
