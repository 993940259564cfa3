# LM Book: two commands do everything on a fresh machine.
#   make test   creates .venv if missing, installs, runs every test (unit, notebooks, book, assignments)
#   make book   creates .venv if missing, installs, builds the HTML book into _build/html (offline)
# Also: make lab, make assignments, make notebooks (re-run chapters, save outputs), make bench, make models.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Datasets: the offline mirror beside the checkout, unless the caller chose another folder.
ifeq ($(origin LMBOOK_DATA_DIR), undefined)
ifneq ($(wildcard ../shared/data),)
export LMBOOK_DATA_DIR := $(abspath ../shared/data)
endif
endif

# On a GPU machine torch is already installed: reuse it rather than pull another build.
TORCH_PRESENT := $(shell $(PYTHON) -c "import torch" >/dev/null 2>&1 && echo yes)
ifeq ($(TORCH_PRESENT),yes)
VENV_FLAGS := --system-site-packages
REQS_CMD   := grep -v '^torch==' requirements.txt > $(VENV)/requirements.txt
else
VENV_FLAGS :=
REQS_CMD   := cp requirements.txt $(VENV)/requirements.txt
endif

MATHJAX := vendor/mathjax/tex-mml-chtml.js
PROFILE ?= cpu

.PHONY: test book lab assignments notebooks bench models venv clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(REQS_CMD)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r $(VENV)/requirements.txt
	$(BIN)/python -m pip install --quiet --no-build-isolation --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

# MathJax 3 from npm, served by the book itself: math renders with no network at read time.
$(MATHJAX):
	rm -rf vendor/mathjax vendor/npm && mkdir -p vendor/npm
	cd vendor/npm && npm install --silent --no-audit --no-fund --prefix . mathjax@3 >/dev/null
	cp -r vendor/npm/node_modules/mathjax/es5 vendor/mathjax && rm -rf vendor/npm
	@test -f $(MATHJAX)

# Two test processes on a 2-core machine: each kernel and test gets one thread, since two processes
# with two threads each on two cores run many times slower, not twice. The scheduler in
# tests/conftest.py keeps each test file and each chapter notebook on one worker and spreads the
# per-chapter assignment tests over both; --no-loadscope-reorder keeps the order conftest.py gives
# the work (the longest first), where xdist would start with the units that hold the most tests.
test: $(STAMP) $(MATHJAX)
	LMBOOK_PROFILE=test OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadscope --no-loadscope-reorder \
		--nbval-lax --nbval-current-env -p no:cacheprovider --durations=15 tests chapters

book: $(STAMP) $(MATHJAX)
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "The book is in _build/html/index.html: open that file in a browser."
	@echo "If the browser restricts file:// pages (search, say), serve the book instead:"
	@echo "    $(PYTHON) -m http.server -d _build/html 8000    and open http://localhost:8000"

lab: $(STAMP)
	$(BIN)/jupyter lab chapters

assignments: $(STAMP)
	$(BIN)/python tools/assignments.py build

# Re-execute every chapter in a fresh kernel at the reader's profile and save the outputs.
notebooks: $(STAMP)
	LMBOOK_PROFILE=$(PROFILE) $(BIN)/python tools/notebooks.py execute chapters/*.py

# The book's trained models (runs/<name>/), each re-made by one command on the CPU (see README).
models: $(STAMP)
	$(BIN)/python -m lmbook.trainer --config configs/shakespeare_char.json
	$(BIN)/python -m lmbook.trainer --config configs/tang_poems_char.json

bench: $(STAMP)
	@for f in bench/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf _build vendor
