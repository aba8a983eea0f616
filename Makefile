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
# on real workers and timeouts: the suite keeps about one of 2 cores busy with 3 processes, and
# 4 take it from 14 to 11-13 minutes; the harness hands out the costliest files first
# (tests/harness/plugin.py), xdist's own reorder (most tests first) would end on them
PYTEST_WORKERS ?= 4

.PHONY: install browser demo test test-unit test-integration bench worker flower ui lint clean deploy-render

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "canvasflow needs Python 3.11 or newer")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

demo: install
	$(BIN)/canvasflow demo

# the console's browser test drives Debian's Chromium through Playwright (a downloaded browser
# build cannot run here): installed with apt-get when missing (as root, or with password-less sudo)
CHROMIUM := /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else \
	    echo "make test: the console's browser test needs $(CHROMIUM): run 'sudo apt-get install -y chromium', then make test again" >&2; \
	    exit 1; fi; \
	  echo "installing Debian's chromium for the browser test (apt-get)"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: install browser
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

test-unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: install
	$(BIN)/python -m pytest tests/integration tests/faults $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m tests.benchmarks.run

# a fleet for CAP (named $(CAP)@<host>) that also takes the control queues; the demo's steps with CAP=demo
worker: install
	$(BIN)/canvasflow worker --capability $(CAP) --control $(if $(filter demo,$(CAP)),--demo)

# Flower on 127.0.0.1:5555 with persistent state (CANVASFLOW_FLOWER_DB); basic auth from
# CANVASFLOW_FLOWER_BASIC_AUTH=user:password (required beyond localhost: FLOWER_HOST=0.0.0.0)
FLOWER_HOST ?= 127.0.0.1
flower: install
	$(BIN)/canvasflow flower --host $(FLOWER_HOST)

# the web console on http://127.0.0.1:8077 (docs/console.md); UI_HOST=0.0.0.0 needs CANVASFLOW_UI_* credentials
UI_HOST ?= 127.0.0.1
ui: install
	$(BIN)/canvasflow ui --host $(UI_HOST)

# deploy/k8s from the demo's steps and deploy/engines.toml (tests/integration/test_deploy_manifests.py
# fails when the committed files differ); the session's other CANVASFLOW_* variables are left out
deploy-render: install
	env $$(env | sed -n 's/^\(CANVASFLOW_[A-Z_]*\)=.*/-u \1/p') CANVASFLOW_ENGINES=deploy/engines.toml \
		$(BIN)/canvasflow --workflows canvasflow.workflows.demo deploy render

lint: install
	$(BIN)/ruff check canvasflow config workers workflows compensation tests
	$(BIN)/python -m tests.typing.check_package

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache canvasflow.db canvasflow.db-*
