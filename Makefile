# canvasflow: `make demo` runs the main job end to end, `make test` passes the tests.
# Both install what is missing first (a virtualenv in .venv).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CAP    ?= demo
PYTEST_ARGS ?=
# test modules run in parallel, whole files per process (each process is its own harness
# session: its own Redis database, key prefix, journal and RabbitMQ vhost); most tests wait
# on real workers and timeouts, so 3 processes fit 2 cores
PYTEST_WORKERS ?= 3

.PHONY: install demo test test-unit test-integration bench worker flower lint clean deploy-render

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "canvasflow needs Python 3.11 or newer")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

demo: install
	$(BIN)/canvasflow demo

test: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: install
	$(BIN)/python -m pytest tests/integration tests/faults $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m tests.benchmarks.run

# a fleet for CAP (named $(CAP)@<host>) that also takes the control queues; the demo's steps with CAP=demo
worker: install
	$(BIN)/canvasflow worker --capability $(CAP) --control $(if $(filter demo,$(CAP)),--demo)

flower: install
	FLOWER_UNAUTHENTICATED_API=true $(BIN)/celery -A canvasflow.app flower --address=127.0.0.1 --port=5555

# deploy/k8s from the demo's steps and deploy/engines.toml (tests/integration/test_deploy_manifests.py
# fails when the committed files differ); the session's other CANVASFLOW_* variables are left out
deploy-render: install
	env $$(env | sed -n 's/^\(CANVASFLOW_[A-Z_]*\)=.*/-u \1/p') CANVASFLOW_ENGINES=deploy/engines.toml \
		$(BIN)/canvasflow --workflows canvasflow.workflows.demo deploy render

lint: install
	$(BIN)/ruff check canvasflow config workers workflows compensation tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache canvasflow.db canvasflow.db-*
