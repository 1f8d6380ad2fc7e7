# The commands of the README. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo demo-containers demo-containers-replicas test test-examples bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m demo

# The compose mesh in real containers (podman): see compose/README.md
demo-containers: $(STAMP)
	sh scripts/ensure-container-deps.sh
	$(PY) -m demo.containers

# The same with two meshplane replicas on PostgreSQL; kills one under traffic (compose/README.md)
demo-containers-replicas: $(STAMP)
	sh scripts/ensure-container-deps.sh
	$(PY) -m demo.containers.replicas

test: $(STAMP)
	sh scripts/ensure-test-deps.sh
	sh scripts/ensure-container-deps.sh
	$(PY) -m ruff check --quiet .
	$(PY) -m mypy
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The public App Mesh examples, a check apart from `test` (examples_check/README.md): they are
# not in the repository; put them in ../shared/examples/appmesh or set MESHPLANE_APPMESH_EXAMPLES
test-examples: $(STAMP)
	$(PY) -m pytest -q examples_check $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
