# recqa: the two front-door commands. Each installs what it needs into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WAREHOUSE ?= ./warehouse
REPORTS ?= ./reports
HOST ?= 127.0.0.1
PORT ?= 3000
STAMP := $(VENV)/.recqa-installed
TRIALS ?= 30
# what the last `make build` published, with a sha256 of everything it depends on (cli/build_stamp.py)
BUILD_STAMP := $(REPORTS)/.build-stamp.json
BUILD_SETTINGS := --warehouse $(WAREHOUSE) --setting TRIALS=$(TRIALS) --setting REPORTS=$(REPORTS)
# bash, so a failing build inside a pipe (`| tee`) stops the recipe
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

export HF_HUB_OFFLINE ?= 1
export BENTOML_DO_NOT_TRACK ?= True
export LANCEDB_LOG ?= error
export LANCE_LOG ?= error

.PHONY: install run build serve test clean browser

install: $(STAMP)

# torch first and pinned: on the target machine 2.13.0 is a local CPU wheel, and a plain
# resolve could pull a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,airflow]'
	touch $@

# Tune ALS on a validation split of the training part, build candidates with the tuned
# configuration, evaluate exactly those candidates (the gates stop a worse one here), then
# publish them by id: what the gate judged is what is served.
build: install
	mkdir -p $(REPORTS)
	$(BIN)/recqa tune recs --out $(REPORTS)/tuned-recs.json --trials $(TRIALS)
	recs=$$($(BIN)/recqa build-recs --warehouse $(WAREHOUSE) --config $(REPORTS)/tuned-recs.json | tee /dev/stderr | sed -n 's/^candidate //p'); \
	qa=$$($(BIN)/recqa build-qa --warehouse $(WAREHOUSE) | tee /dev/stderr | sed -n 's/^candidate //p'); \
	$(BIN)/recqa evaluate recs --warehouse $(WAREHOUSE) --candidate "$$recs" --out $(REPORTS)/recs; \
	$(BIN)/recqa evaluate qa --warehouse $(WAREHOUSE) --candidate "$$qa" --out $(REPORTS)/qa; \
	$(BIN)/recqa publish --warehouse $(WAREHOUSE) --candidate "$$recs" --candidate "$$qa"
	$(BIN)/python -m cli.build_stamp write --stamp $(BUILD_STAMP) $(BUILD_SETTINGS)
	@echo "Evaluation reports: $(REPORTS)/recs/report.html and $(REPORTS)/qa/report.html"

# The port first, with the system Python: a busy port fails here, not after the build.
serve: install
	@$(PYTHON) -m cli.ports --host $(HOST) --port $(PORT) --make-target $(or $(PORT_TARGET),serve)
	@echo
	@echo "Serving on http://$(HOST):$(PORT) (Ctrl-C stops). Try, from another shell:"
	@echo "  curl -s -X POST http://$(HOST):$(PORT)/recommend -H 'Content-Type: application/json' -d '{\"user_id\": \"0003000098E85347\", \"k\": 5}'"
	@echo "  curl -s -X POST http://$(HOST):$(PORT)/similar_items -H 'Content-Type: application/json' -d '{\"item_id\": \"DAF-00502\", \"k\": 5}'"
	@echo "  curl -s -X POST http://$(HOST):$(PORT)/answer -H 'Content-Type: application/json' -d '{\"question\": \"How do I cross out text on github?\", \"k\": 3}'"
	@echo "  curl -s http://$(HOST):$(PORT)/healthz"
	@echo
	$(BIN)/recqa serve --warehouse $(WAREHOUSE) --host $(HOST) --port $(PORT)

# The port is checked before installing or building; the build is skipped when the last one
# published from the same data, code and settings and is still the published release.
run:
	@$(PYTHON) -m cli.ports --host $(HOST) --port $(PORT) --make-target run
	@$(MAKE) --no-print-directory install
	@$(BIN)/python -m cli.build_stamp check --stamp $(BUILD_STAMP) $(BUILD_SETTINGS) || $(MAKE) --no-print-directory build
	@$(MAKE) --no-print-directory serve PORT_TARGET=run

# The docs page's browser test drives Debian's Chromium (playwright downloads no browser).
browser:
	@command -v chromium >/dev/null || { \
	    if [ "$$(id -u)" = 0 ]; then apt=apt-get; else apt="sudo apt-get"; fi; \
	    $$apt update -qq && DEBIAN_FRONTEND=noninteractive $$apt install -y -qq chromium; }

test: install browser
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(WAREHOUSE) $(REPORTS) .pytest_cache
