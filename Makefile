# The two commands of the README. Both create .venv when it is missing and install everything themselves.
#   make reproduce  -> regenerate the paper's dSprites table (PRESET=paper by default)
#   make test       -> sync/clean checks, every notebook, tests/ (what CI runs)
#   make test-slow  -> the tests marked slow: the committed pretrained report regenerated in full (~7 min)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PRESET ?= paper
TABLES ?= dsprites
OUT ?= results/$(PRESET)
PYTEST_ARGS ?=

.PHONY: install kernel reproduce test test-slow check-sync readme docs notebooks clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# pip takes torch/torchvision from local disk where the machine offers them (capped at 2.14.1 / 0.29.1 here)
install: $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	$(MAKE) --no-print-directory kernel

# the Jupyter kernel papermill runs the table notebooks in; installed inside the venv, nothing global
kernel:
	$(BIN)/python -m ipykernel install --sys-prefix --name mpvae --display-name "Python (mpvae)" > /dev/null

reproduce: install
	$(BIN)/mpvae-tables --preset $(PRESET) --tables $(TABLES) --out $(OUT)

readme:
	$(BIN)/python tools/make_readme.py nbs/index.ipynb README.md

# the docs site (mkdocs.yml: MkDocs + Material + mkdocs-jupyter, glue in tools/make_docs.py), built into _docs/ from the
# notebooks as committed (their stored outputs; nothing is executed); .github/workflows/deploy.yaml runs this same
# target and publishes _docs/ to GitHub Pages (NO_MKDOCS_2_WARNING quiets Material's notice of its end of life in 2027)
docs:
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --quiet

# re-execute every notebook in place (index.ipynb aside), keep its outputs, record the library each ran against in
# nbs/outputs.json (tests/test_outputs.py fails when a notebook's outputs are older than the library); NBS=... for some
# only, e.g. `make notebooks NBS=nbs/03_model.ipynb`, or `make notebooks NBS=--stale` for the out-of-date ones
NBS ?=
notebooks:
	$(BIN)/python tools/run_notebooks.py $(NBS)
	$(BIN)/nbdev-clean

# the library must be what the notebooks export, the notebooks clean, README what index.ipynb says
check-sync:
	$(BIN)/nbdev-export
	$(BIN)/nbdev-clean
	$(MAKE) --no-print-directory readme
	@if git rev-parse --is-inside-work-tree > /dev/null 2>&1; then \
	  drift=$$(git status --porcelain -- mpvae nbs README.md); \
	  if [ -n "$$drift" ]; then echo "nbdev-export/nbdev-clean/readme changed tracked files (commit the result):"; echo "$$drift"; git --no-pager diff --stat -- mpvae nbs README.md; exit 1; fi; \
	  echo "library, notebooks and README in sync"; \
	else echo "not a git checkout: sync check skipped"; fi

test: install check-sync
	$(BIN)/python -m pytest tests -n 2 --dist loadgroup -p no:cacheprovider -ra --durations=15 $(PYTEST_ARGS)

test-slow: install
	MPVAE_SLOW=1 $(BIN)/python -m pytest tests -m slow -n 2 --dist loadgroup -p no:cacheprovider -ra $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
