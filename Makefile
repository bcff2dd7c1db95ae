# Two commands do everything on a fresh machine:
#   make demo   create .venv, install, run the main job on the built-in data
#   make test   create .venv, install, run the test suite (make test-fast: the unit tier only)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast install clean

$(STAMP): requirements.txt requirements-torch.txt requirements-export.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-torch.txt -r requirements-export.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m htsat_jax.main --config configs/demo.py --workdir demo_out

# Two pytest workers (pytest-xdist), one test module at a time each: the tests are mostly XLA
# compiles, which run on one core, so two workers keep both cores of a CI machine busy; modules go
# out in the order tests/conftest.py sorts them (longest first), not by their number of tests.
# TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: $(STAMP)
	$(PYTEST) --durations=15 tests

# The development loop: the unit tier only (see README "Tests").
test-fast: $(STAMP)
	$(PYTEST) -m unit --durations=10 tests

clean:
	rm -rf $(VENV) demo_out .pytest_cache
