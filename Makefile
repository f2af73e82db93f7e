# mlops_kit: two commands for users (README quick start), a few extras for developers.
#   make repro   run the whole pipeline (dvc repro) on the embedded sample fleet
#   make test    notebooks (nbdev_test), pytest, then check notebooks and modules agree
# Both bootstrap .venv from the pinned requirements.lock on first use.

PY      ?= python3.11
VENV    := .venv
BIN     := $(abspath $(VENV))/bin
STAMP   := $(VENV)/.installed
UV_VER  := 0.9.30
# no network but the package registries: keep every tool quiet
export MLFLOW_DISABLE_TELEMETRY=true
export DO_NOT_TRACK=true
export DVC_NO_ANALYTICS=1
export PATH := $(BIN):$(PATH)

.PHONY: format repro test test-deps-chromium test-deps-postgres team-server bench lab serve ui lock readme clean-outputs help ct
help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): requirements.lock setup.py settings.ini
	@test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q uv==$(UV_VER)
	$(VENV)/bin/uv pip sync -q --compile-bytecode --python $(VENV)/bin/python requirements.lock
	$(VENV)/bin/uv pip install -q --python $(VENV)/bin/python --no-deps -e .
	$(VENV)/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

repro: $(STAMP)  ## check params.yaml and say what it will read, run the pipeline (dvc repro), then show where the outputs are
	@mlops-kit params >/dev/null
	dvc repro
	@mlops-kit outputs

ct: $(STAMP)  ## continuous training, e.g. nightly from cron: dvc repro (the monitor stage judges drift), then mlops-kit retrain if it says so
	dvc repro
	mlops-kit retrain

test: $(STAMP) test-deps-chromium test-deps-postgres  ## nbdev_test, pytest, and a check that nbdev_export/nbdev_clean change nothing
	nbdev_test --n_workers 2
	pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=25 tests
	@before=$$(find mlops_kit nbs -name '*.py' -o -name '*.ipynb' | sort | xargs sha1sum | sha1sum); \
	nbdev_export && nbdev_clean >/dev/null; \
	after=$$(find mlops_kit nbs -name '*.py' -o -name '*.ipynb' | sort | xargs sha1sum | sha1sum); \
	if [ "$$before" != "$$after" ]; then echo "nbdev_export/nbdev_clean changed files: notebooks and mlops_kit/ disagree (git status shows which)"; exit 1; fi; \
	echo "export check: notebooks and mlops_kit/ agree"
	@cp README.md .README.before && $(MAKE) -s readme >/dev/null 2>&1; \
	if ! cmp -s README.md .README.before; then mv .README.before README.md; echo "README.md is stale: run make readme and commit it"; exit 1; fi; \
	rm -f .README.before; echo "readme check: README.md matches nbs/index.ipynb"

# the dashboard's acceptance test loads it in Debian's headless Chromium (tests/test_report.py fails, not skips, without it)
test-deps-chromium:  ## install Debian's chromium + chromium-driver for the dashboard test (needs root/apt)
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)

# tests/test_team.py runs the team mode against a real PostgreSQL: Debian's packages, installed once (pg_ctl lives in
# /usr/lib/postgresql/<version>/bin, not on PATH; the test starts its own throwaway cluster on loopback).
test-deps-postgres:  ## install PostgreSQL from the distribution's packages if missing (tests/test_team.py needs it)
	@if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then echo "postgresql: $$(ls -d /usr/lib/postgresql/*/bin | head -1)"; \
	else echo "installing postgresql (apt-get)"; SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql >/dev/null; fi

# Team mode: one MLflow tracking server on PostgreSQL with proxied shared artifacts (see nbs/19_team.ipynb).
# The database URI (it holds the password) comes from the environment, never from the command line:
#   export MLFLOW_BACKEND_STORE_URI=postgresql://mlflow:PASSWORD@127.0.0.1:5432/mlflow
#   export MLFLOW_AUTH_DATABASE_URI=postgresql://mlflow:PASSWORD@127.0.0.1:5432/mlflow_auth   # users and permissions (basic-auth)
#   export MLFLOW_AUTH_ADMIN_PASSWORD=...                                                     # the admin's password, first start
#   export MLFLOW_ARTIFACTS_DESTINATION=/srv/mlops/mlartifacts
#   make team-server HOST=0.0.0.0 PORT=5000 ALLOWED_HOSTS=mlflow.internal:5000
HOST ?= 127.0.0.1
PORT ?= 5000
ALLOWED_HOSTS ?=
team-server: $(STAMP)  ## run the team's MLflow tracking server with basic-auth users (PostgreSQL URIs from env MLFLOW_BACKEND_STORE_URI and MLFLOW_AUTH_DATABASE_URI, shared artifacts from env MLFLOW_ARTIFACTS_DESTINATION)
	mlops-kit team server --host $(HOST) --port $(PORT) $(if $(ALLOWED_HOSTS),--allowed-hosts $(ALLOWED_HOSTS))

bench: $(STAMP)  ## benchmark the kit's AutoML against Prophet/AutoETS/ExponentialSmoothing (adds requirements-bench.lock to .venv; needs make repro first)
	$(VENV)/bin/uv pip install -q --python $(VENV)/bin/python -r requirements-bench.lock
	mlops-kit bench models

lab: $(STAMP)  ## JupyterLab on 127.0.0.1
	jupyter lab --ip 127.0.0.1 --no-browser

serve: $(STAMP)  ## serve the champion over REST on 127.0.0.1:5001 (POST /invocations; needs make repro first; team mode: the server's champion); verified against the digest recorded at registration before it loads
	mlops-kit serve --host 127.0.0.1 --port 5001

ui: $(STAMP)  ## MLflow UI on 127.0.0.1:5000 over the embedded store
	mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///mlflow.db

format: $(STAMP)  ## put the library notebooks' code in the format ruff.toml sets (one statement a line, at most 120 characters a line), then nbdev_export
	ruff format --no-cache nbs/[0-9]*.ipynb
	nbdev_clean --fname nbs >/dev/null && nbdev_export

lock: $(STAMP)  ## re-resolve requirements.in into requirements.lock (a deliberate upgrade: commit it)
	uv pip compile -q --python-version 3.11 requirements.in -o requirements.lock --no-header --annotation-style line
	uv pip compile -q --python-version 3.11 requirements-bench.in -c requirements.lock -o requirements-bench.lock --no-header --annotation-style line

# nbdev_readme needs quarto, and quarto-cli on PyPI is an sdist that downloads its binary at install time
# (impossible offline), so README.md is rendered by nbconvert, executing index.ipynb so its outputs are real.
readme: $(STAMP)  ## regenerate README.md from nbs/index.ipynb
	jupyter nbconvert --to markdown --execute --log-level ERROR nbs/index.ipynb --output-dir . --output README

clean-outputs:  ## delete pipeline outputs (data/, reports/, metrics/ stay DVC-reproducible)
	rm -rf data reports metrics
