# Two commands do everything on a fresh machine:
#   make all    set up .venv, then reproduce every table on the embedded synthetic MIMIC-IV
#   make test   set up .venv, then run the package, server and notebook tests
# Other parameter files: make all PARAMS=params/mimic-iv.yaml   (quick CI scale: PARAMS=params/quick.yaml)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PARAMS ?= params/default.yaml
CORES ?= 2
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 2
PROMETHEUS_PORT ?= 9090
STACK_TASK ?= mortality
export PATH := $(abspath $(BIN)):$(PATH)
export MPLBACKEND := Agg
export PYTHONHASHSEED := 0

.PHONY: all setup test test-fast test-notebooks test-slow serve stack sbom clean-reports help

help:
	@sed -n '1,5p' Makefile

# Re-install only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "[setup] installing pinned dependencies into $(VENV) (first time: a few minutes)"
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[workflow,engines,test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (clinops)" >/dev/null
	@touch $@

setup: $(VENV)/.installed

# make all: validate the parameter file (and an own cohort's table) before anything runs, run the
# workflow, then the reproduction check (fails on a table that differs from the committed copy;
# ALLOW_DIFF=1 reports without failing). A failing step ends with its one-line cause.
all: setup
	@$(BIN)/clinops params $(PARAMS)
	@rm -f "$$($(BIN)/clinops pipeline build-dir $(PARAMS))/logs/FAILED"
	@$(BIN)/snakemake --cores $(CORES) --config params=$(PARAMS) --rerun-triggers mtime --show-failed-logs \
	  || { cat "$$($(BIN)/clinops pipeline build-dir $(PARAMS))/logs/FAILED" >&2 2>/dev/null; exit 1; }
	@$(BIN)/clinops reproduce --check $(PARAMS) $(if $(ALLOW_DIFF),|| true)
	@$(MAKE) --no-print-directory sbom
	@$(BIN)/clinops pipeline where $(PARAMS)

# CycloneDX SBOM of the serving runtime dependencies (what `pip install .` and the image install).
sbom: setup
	$(BIN)/clinops ops sbom reports/serving/sbom.cdx.json

test: setup
	$(BIN)/python -m pytest tests -m "not slow" -n $(CORES) --dist loadfile
	$(BIN)/python -m pytest --doctest-modules clinops serving -p no:cacheprovider
	CLINOPS_PARAMS_FILE=tests/fixtures/nbval.yaml $(BIN)/python -m pytest --nbval-lax notebooks -p no:randomly

test-slow: setup
	$(BIN)/python -m pytest tests -m slow

# The model that `make all` registered for PARAMS; TLS: make serve TLS_CERT=cert.pem TLS_KEY=key.pem,
# or make serve SELF_SIGNED=1 (a self-signed certificate under build/serving/tls). Credentials:
# make serve TOKENS=tokens.yaml CONSENT=consent.yaml, or make serve DEMO=1 for the published demo
# tokens and consent seed (loopback only; the server refuses to start otherwise).
SERVE_ARGS = --registered $$($(BIN)/clinops pipeline registered $(PARAMS))@champion \
	  --project-root . --state-dir build/serving/$$($(BIN)/clinops pipeline name $(PARAMS)) \
	  --host $(HOST) --port $(PORT) --workers $(WORKERS) \
	  $(if $(TLS_CERT),--tls-cert $(TLS_CERT) --tls-key $(TLS_KEY)) $(if $(SELF_SIGNED),--self-signed-cert build/serving/tls) \
	  $(if $(DEMO),--demo) $(if $(TOKENS),--tokens $(TOKENS)) $(if $(CONSENT),--consent $(CONSENT))
serve: setup
	$(BIN)/clinops serve $(SERVE_ARGS)

# One command for the whole demo stack: the audit trail's outside parties on loopback (OpenBao
# holding the keys, a witness cosigning checkpoints, SeaweedFS with S3 Object Lock), then the server
# as `make serve` starts it, connected to them, and a Prometheus (Debian package `prometheus`)
# scraping every worker with the rules of serving/ops. Prints the URLs; Ctrl-C stops everything.
# STACK_TASK: the served model's task (the per-task alert rules select it). AUDIT_STACK=0: server
# and Prometheus only, audit keys and log local. `make serve` alone needs none of this.
# The stack's server keeps its state in build/stack/serving, new at every start: the dev OpenBao
# holds the signing and key-encryption keys in memory only, so a trail from an earlier stack could
# not be verified against them and is refused.
AUDIT_STACK ?= 1
stack: setup
	@rm -rf build/stack
	@set -e; \
	if [ "$(AUDIT_STACK)" = 1 ]; then \
	  $(BIN)/clinops audit stack --dir build/stack/audit & audit=$$!; \
	  trap 'kill $$audit 2>/dev/null; wait $$audit 2>/dev/null' EXIT INT TERM; \
	  for i in $$(seq 240); do [ -f build/stack/audit/stack.env ] && break; \
	    kill -0 $$audit 2>/dev/null || { echo "make stack: the audit parties did not start" >&2; exit 1; }; sleep 0.5; done; \
	  set -a; . build/stack/audit/stack.env; set +a; \
	fi; \
	$(BIN)/clinops ops stack --target $(HOST):$(PORT) --task $(STACK_TASK) \
	  --prometheus-port $(PROMETHEUS_PORT) --dir build/stack \
	  $(if $(TLS_CERT),--tls-ca $(TLS_CERT)) $(if $(SELF_SIGNED),--tls-ca build/serving/tls/cert.pem) \
	  -- $(BIN)/python -m serving $(SERVE_ARGS) --state-dir build/stack/serving

clean-reports:
	rm -rf build reports/notebooks
