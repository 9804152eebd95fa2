# One command for the main job, one for the tests; each creates .venv when it is missing.
#   make demo   set up and run `featgap demo` (standard vs PGD-AT on the bundled MNIST digits)
#   make test   set up and run the whole test suite
#   make screenshots  regenerate docs/images/*.png: each widget view as JupyterLab renders it
#                (headless /usr/bin/chromium; uses runs/demo when it exists, else trains tiny runs)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.featgap-installed

.PHONY: setup demo test screenshots clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/featgap demo

test: $(STAMP)
	FEATGAP_PROGRESS=0 $(BIN)/python -m pytest -q -ra tests

screenshots: $(STAMP)
	FEATGAP_PROGRESS=0 $(BIN)/python tests/jupyter_browser.py --out docs/images $(if $(wildcard runs/demo/afd/eval.json),--runs runs/demo)

clean:
	rm -rf runs/demo .pytest_cache
