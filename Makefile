# foveal — developer entry points. `make demo` and `make test` work on a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
# The PyTorch build to install; override on machines that want another one.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test test-slow lint format bench clean

$(PY):
	python3 -m venv $(VENV)

$(VENV)/.core-installed: pyproject.toml | $(PY)
	$(PIP) $(TORCH_SPEC)
	$(PIP) -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.core-installed
	$(PIP) -e '.[dev]'
	# Cross-check references only; --no-deps keeps their outdated pins out of the environment.
	$(PIP) --no-deps 'torchattacks>=3.5' foolbox eagerpy GitPython gitdb smmap
	touch $@

demo: $(VENV)/.core-installed
	$(VENV)/bin/foveal evaluate --out runs/demo
	@echo "report: runs/demo/report.html"

test: $(VENV)/.dev-installed
	$(PY) -m pytest -q -p no:cacheprovider

test-slow: $(VENV)/.dev-installed
	$(PY) -m pytest -q -m slow

lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check foveal tests benchmarks scripts
	$(VENV)/bin/ruff format --check foveal tests benchmarks scripts
	$(VENV)/bin/mypy

format: $(VENV)/.dev-installed
	$(VENV)/bin/ruff format foveal tests benchmarks scripts
	$(VENV)/bin/ruff check --fix foveal tests benchmarks scripts

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
