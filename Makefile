# citeqa: `make serve` runs the service on seeds/, `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
CITEQA := $(VENV)/bin/citeqa
INDEX_DIR ?= index
CORPUS ?= seeds
HOST ?= 127.0.0.1
PORT ?= 8000
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install index serve test test-fast lint typecheck bench bench-scale audit openapi clean browser-deps train

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# The lock pins every package; torch==2.13.0 is the CPU build (never the CUDA one).
	$(PIP) install --quiet -c requirements.lock -e '.[dev,eval,ray]'
	touch $@

# Rebuilt only when a document changed; citeqa itself re-embeds only new text.
$(INDEX_DIR)/CURRENT: $(VENV)/.installed $(shell find $(CORPUS) -type f 2>/dev/null)
	$(CITEQA) index $(CORPUS) --index-dir $(INDEX_DIR)
	@touch $@

index: $(INDEX_DIR)/CURRENT

serve: index
	$(CITEQA) serve --host $(HOST) --port $(PORT) --index-dir $(INDEX_DIR)

# Debian's Chromium for the browser tests (Playwright cannot download browsers here).
browser-deps:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "install Debian's chromium (sudo apt-get install -y chromium)"; exit 1; fi; }

test: install browser-deps
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not integration"

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

bench: install index
	$(PY) bench/run_all.py

# Indexes 20,000 chunks of Debian's Python and PostgreSQL manuals
# (apt-get install python3.11-doc postgresql-doc-15): about an hour here.
bench-scale: install
	$(PY) bench/run_all.py --scale --scale-chunks 20000

# The learned answer stage (src/citeqa/models/selector, MODEL_CARD.md there): about
# 40 minutes on two cores. Trains on TRAIN_CORPUS less the HOLDOUT articles, then
# evaluates on the HOLDOUT articles indexed together.
TRAIN_CORPUS ?= ../shared/data/squad2-train10
HOLDOUT ?= Spectre__2015_film,To_Kill_a_Mockingbird
TRAIN_WORK ?= build/train
SELECTOR_DIR ?= src/citeqa/models/selector
train: install
	$(CITEQA) index $(TRAIN_CORPUS)/docs --index-dir $(TRAIN_WORK)/index
	$(PY) train/mine.py $(TRAIN_CORPUS) $(TRAIN_WORK)/index $(TRAIN_WORK)/pairs.jsonl
	$(PY) train/train_selector.py fit $(TRAIN_WORK)/pairs.jsonl $(TRAIN_WORK)/fit \
	  --holdout $(HOLDOUT) --negatives 4 --synthetic-share 0.3
	$(PY) train/train_selector.py export $(TRAIN_WORK)/fit $(SELECTOR_DIR)
	$(PY) train/holdout.py $(TRAIN_CORPUS) $(HOLDOUT) $(TRAIN_WORK)/holdout
	$(CITEQA) index $(TRAIN_WORK)/holdout/docs --index-dir $(TRAIN_WORK)/holdout-index
	$(CITEQA) eval $(TRAIN_WORK)/holdout/questions.jsonl --index-dir $(TRAIN_WORK)/holdout-index \
	  --modes hybrid --json $(TRAIN_WORK)/holdout-eval.json

audit: install
	$(PY) .ci/audit.py

openapi: install
	$(PY) -m citeqa.server.openapi > api/openapi.json

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
