# gradum: two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.gradum-installed

export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test lint format bench clean

install: $(STAMP)

# torch first, pinned to the CPU build where one is on disk, so the range in
# pyproject.toml never pulls a multi-GB CUDA build; any torch in >=2.3,<2.15 works.
# The rest is constrained to the Dataflow images' pins (infra/dataflow/requirements.txt, less
# pip-forbidden extras): tests run what the images ship, not whatever was released last night.
CONSTRAINTS := $(VENV)/constraints.txt

$(STAMP): pyproject.toml infra/dataflow/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "torch==2.13.0" || $(PY) -m pip install -q "torch>=2.3,<2.15"
	sed -e 's/\[[^]]*\]//' -e '/^torch==/d' infra/dataflow/requirements.txt > $(CONSTRAINTS)
	$(PY) -m pip install -q -e ".[all]" -c $(CONSTRAINTS)
	touch $(STAMP)

demo: install
	$(VENV)/bin/gradum demo

# The suite runs on TEST_WORKERS processes (pytest-xdist), one test file per process at a
# time (module fixtures start servers and run jobs once); TEST_WORKERS=0 runs it in one.
TEST_WORKERS ?= 2

test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install
	$(PY) benchmarks/scorers.py
	$(PY) benchmarks/lm_memory.py
	$(PY) benchmarks/embedding.py
	$(PY) benchmarks/shards.py
	$(PY) benchmarks/sampler.py
	$(PY) benchmarks/pipeline.py
	$(PY) benchmarks/efficacy.py

clean:
	rm -rf $(VENV) gradum-demo-out .pytest_cache
