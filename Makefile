# One command for the main job, one for the tests; each creates .venv when it is missing.
#   make demo   set up and run `featgap demo` (standard vs PGD-AT on the bundled MNIST digits)
#   make test   set up and run the whole test suite
#   make lab    set up and open the tutorials: JupyterLab on 127.0.0.1, in notebooks/
#               (01 … 05 in order; their runs go to notebooks/runs/, shared by all five)
#   make screenshots  regenerate docs/images/*.png: each widget view as JupyterLab renders it
#                (headless /usr/bin/chromium; uses runs/demo when it exists, else trains tiny runs)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.featgap-installed

.PHONY: setup demo test lab screenshots clean

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

# --allow-root only when run as root (e.g. in a container): Jupyter refuses root without it.
lab: $(STAMP)
	$(BIN)/jupyter lab --ip 127.0.0.1 --notebook-dir notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

screenshots: $(STAMP)
	FEATGAP_PROGRESS=0 $(BIN)/python tests/jupyter_browser.py --out docs/images $(if $(wildcard runs/demo/afd/eval*.json),--runs runs/demo)

clean:
	rm -rf runs/demo .pytest_cache
