# Every model version in functions/*/ is picked up by a loop: adding one needs no edit here.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME ?= process
PORTS ?= svc=5001 lin_svc=5002
POINT ?= 5.8,3.4
URLS ?=
IMAGE ?= iris
BASE_IMAGE ?= python:3.11-slim
PYTEST_ARGS ?=
# pytest-xdist workers for `make test` (0: one process, as plain pytest). Each test file runs whole in one worker
# (--dist loadfile): a file's local Cloud Run and its module fixtures are made once; the tests marked `exclusive`
# run after, alone (tests/suite.py). See docs/development.md.
TEST_WORKERS ?= 3
BENCH_ARGS ?=
# Docker 23+ CLIs build with BuildKit only through the buildx plugin; Debian's docker.io
# CLI (/usr/bin/docker, 20.10) has BuildKit built in. Use whichever can.
# Decided once per make run (":="), not at every recipe that exports it.
ifndef DOCKER
DOCKER := $(shell docker buildx version >/dev/null 2>&1 || ! test -x /usr/bin/docker && echo docker || echo /usr/bin/docker)
endif
# A CA bundle for pip inside the build (a TLS-intercepting proxy's CA), handed in as a BuildKit secret.
PIP_CA ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)
export DOCKER IMAGE

# Imported models (make import-model) hold their own artifacts: the training notebook makes the others'.
IMPORTED := $(patsubst functions/%/model.json,%,$(shell grep -l '"source": {' functions/*/model.json 2>/dev/null))
MODELS := $(filter-out $(IMPORTED),$(patsubst functions/%/main.py,%,$(wildcard functions/*/main.py)))
ARTIFACTS := $(foreach m,$(MODELS),functions/$(m)/model.joblib functions/$(m)/model.json)
TRAINING := notebooks/pickle_models.ipynb notebooks/catalogue.py shared/artifact.py shared/linear.py

.PHONY: help venv models retrain import-model examples up demo compare status stop emulator emulator-token emulator-status rollout rollout-status rollback promote traffic console shadow outcomes outcomes-sink feedback-key sign-feedback labelled-load report test images base-image mlserver bench bench-outcomes clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'
	@echo "  make's own: RUNTIME=$(RUNTIME) PORTS=\"$(PORTS)\" POINT=\"$(POINT)\" URLS=\"$(URLS)\" BASE_IMAGE=$(BASE_IMAGE)"
	@echo "  the tools' settings (docs/settings.md; set them on the command line or in the environment):"
	@$(PYTHON) -m iris_tools.environment --make

# Two steps, so that a newcomer's first `make up` installs only what serving and the local tools need
# (requirements-tools.txt); the tests' clients (requirements-dev.txt) come with `make test`.
$(VENV)/.installed: requirements.txt requirements-job.txt requirements-tools.txt pyproject.toml $(wildcard iris_tools/*/__init__.py)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r requirements-tools.txt
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.installed
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed ## create .venv with the pinned runtime and the local tools

$(ARTIFACTS) &: $(TRAINING) | $(VENV)/.installed
	$(PY) notebooks/run_notebook.py notebooks/pickle_models.ipynb

models: $(ARTIFACTS) ## train the model versions whose artifacts are missing or stale

retrain: | $(VENV)/.installed ## train every model version again
	$(PY) notebooks/run_notebook.py notebooks/pickle_models.ipynb

RUNTIME_NEEDS := models $(if $(filter docker,$(RUNTIME)),images)

demo: $(RUNTIME_NEEDS) ## run every version side by side (svc :5001, lin_svc :5002), compare them, serve until Ctrl-C
	$(PY) -m iris_tools.local demo --runtime $(RUNTIME) --ports "$(PORTS)" --point $(POINT)

up: $(RUNTIME_NEEDS) ## like demo, but return once they are up (stop them with make stop)
	$(PY) -m iris_tools.local up --runtime $(RUNTIME) --ports "$(PORTS)" --point $(POINT)

compare: | $(VENV)/.installed ## ask every running version for POINT (or URLS="name=url ...") side by side
	$(PY) -m iris_tools.local compare $(POINT) $(foreach u,$(URLS),--url $(u))

status: | $(VENV)/.installed ## list the running versions
	$(PY) -m iris_tools.local status

stop: | $(VENV)/.installed ## stop every running version (processes and containers) and the local Cloud Run
	$(PY) -m iris_tools.local stop
	$(PY) -m iris_tools.cloudrun stop

emulator: models $(if $(filter docker,$(RUNTIME)),images) ## start the local Cloud Run; then export CLOUDSDK_CONFIG=.run/gcloud for gcloud
	RUNTIME=$(RUNTIME) $(PY) -m iris_tools.cloudrun start

emulator-token: | $(VENV)/.installed ## print the bearer token that private local services take: curl -H "Authorization: Bearer $$(make -s emulator-token)"
	@$(PY) -m iris_tools.cloudrun token

emulator-status: | $(VENV)/.installed ## each local Cloud Run service's traffic split, tags and per-revision figures
	$(PY) -m iris_tools.cloudrun status

# Traffic migration: the same commands on Cloud Run (TARGET=cloudrun, your gcloud configuration, the default) and
# on the local Cloud Run (TARGET=local). Every setting is declared once, in iris_tools/environment.py: variables
# given on make's command line or in the environment reach the tools as they are (docs/settings.md lists them).

rollout: | $(VENV)/.installed ## move SERVICE to MODEL=<name> (or REVISION=) in gated steps; rolls back on a breach (DETACH=1: as a Cloud Run job)
	$(PY) -m iris_tools.rollout rollout

rollout-status: | $(VENV)/.installed ## where a rollout is (foreground or DETACH=1): step, traffic, the job's executions
	$(PY) -m iris_tools.rollout status

rollback: | $(VENV)/.installed ## send 100% back to the revision before (aborts a running rollout); never to one rolled back
	$(PY) -m iris_tools.rollout rollback

promote: | $(VENV)/.installed ## let a rollout waiting at a pause step (STEPS="5 25 pause 50 100") go on
	$(PY) -m iris_tools.rollout promote

shadow: | $(VENV)/.installed ## replay the stable revision's recent inputs to MODEL=<name> at 0%: agreement, .run/report/shadow.json
	$(PY) -m iris_tools.rollout shadow

outcomes: | $(VENV)/.installed ## per revision: accuracy on the labels that came back (LABELS=feedback or a CSV), recall, mix
	$(PY) -m iris_tools.quality outcomes

outcomes-sink: | $(VENV)/.installed ## on Cloud Run: a log sink routing SERVICE's predictions and labels to BigQuery (OUTCOMES_TABLE)
	$(PY) -m iris_tools.quality sink

feedback-key: | $(VENV)/.installed ## the key labels are signed with: made once in .run/feedback-key, printed with the deploy flag (ROTATE=1: a new one)
	$(PY) -m iris_tools.quality feedback-key $(if $(ROTATE),--rotate)

sign-feedback: | $(VENV)/.installed ## the X-Feedback-Signature for BODY='{"id": "<X-Answer-Id>", "label": "setosa"}', and its curl
	$(PY) -m iris_tools.quality sign

labelled-load: | $(VENV)/.installed ## iris points with jitter to LOAD_URL, their true labels posted to /feedback after LABEL_DELAY_S
	$(PY) -m iris_tools.quality load

CSV ?=
report: | $(VENV)/.installed ## compare the running versions (or URLS=) on iris, a grid (and CSV=): .run/report/
	$(PY) -m iris_tools.report $(foreach u,$(URLS),--url $(u)) $(if $(CSV),--csv $(CSV))

traffic: | $(VENV)/.installed ## show the service's traffic, tags and live figures; SPLIT="svc=90 lin_svc=10" sets it
	$(PY) -m iris_tools.rollout traffic

console: | $(VENV)/.installed ## a page on 127.0.0.1 (CONSOLE_PORT, default 5080) to watch the split, figures and rollout, and stop it
	$(PY) -m iris_tools.console

FILE ?=
NAME ?=
FEATURES ?=
TYPES ?=
REPLACE ?=
import-model: | $(VENV)/.installed ## FILE=model.joblib|.skops NAME=<name>: a fitted estimator or Pipeline, checked, as functions/<NAME>/ (FEATURES=, TYPES=, REPLACE=1)
	$(PY) -m iris_tools.model_import "$(FILE)" "$(NAME)" --features "$(FEATURES)" --types "$(TYPES)" $(if $(REPLACE),--replace)

examples: | $(VENV)/.installed ## the worked examples: notebooks/bring_your_own.ipynb trains them, then import-model serves them (diabetes, telco)
	$(PY) notebooks/run_notebook.py notebooks/bring_your_own.ipynb
	$(PY) -m iris_tools.model_import notebooks/trained/diabetes.joblib diabetes --replace
	$(PY) -m iris_tools.model_import notebooks/trained/telco.joblib telco --replace

images: models ## build one image per model version: $(IMAGE):<name>, from build/Dockerfile
	BASE_IMAGE=$(BASE_IMAGE) PIP_CA=$(PIP_CA) build/build_images.sh

base-image: ## build iris-base:bookworm offline with debootstrap (no registry needed; root)
	build/offline_base_image.sh iris-base:bookworm

MLSERVER_VENV := .bench/mlserver-venv
$(MLSERVER_VENV)/bin/mlserver: iris_tools/bench/mlserver-requirements.txt
	$(PYTHON) -m venv $(MLSERVER_VENV)
	$(MLSERVER_VENV)/bin/pip install --quiet -r $<
	touch $@

mlserver: $(MLSERVER_VENV)/bin/mlserver ## install MLServer, the benchmark's baseline, into .bench/mlserver-venv

bench: models mlserver ## benchmark every target side by side (wrk); writes .bench/results.json and docs/benchmarks.md
	$(PY) -m iris_tools.bench --docs docs/benchmarks.md $(BENCH_ARGS)

bench-outcomes: | $(VENV)/.installed ## what judging by answers costs: make outcomes and a rollout's look over 1,000,000 labelled predictions
	$(PY) -m iris_tools.bench.outcome_costs --docs docs/outcomes-benchmark.md $(BENCH_ARGS)

test: models $(VENV)/.dev-installed ## run the whole test suite (TEST_WORKERS in parallel); the 30 slowest tests last
	TEST_WORKERS=$(TEST_WORKERS) $(PY) tests/suite.py $(PYTEST_ARGS)

clean: stop ## stop everything and remove the venv and trained artifacts
	rm -rf $(VENV) $(ARTIFACTS) $(wildcard functions/*/model.rule.json) .run
