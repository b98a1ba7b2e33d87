# Two commands do everything on a fresh machine:
#   make all    set up .venv, then reproduce every table on the embedded synthetic MIMIC-IV
#   make test   set up .venv, then run the package, server and notebook tests
# Other parameter files: make all PARAMS=params/mimic-iv.yaml
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PARAMS ?= params/default.yaml
CORES ?= 2
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 2
export PATH := $(abspath $(BIN)):$(PATH)
export MPLBACKEND := Agg
export PYTHONHASHSEED := 0

.PHONY: all setup test test-fast test-notebooks test-slow serve clean-reports help

help:
	@sed -n '1,5p' Makefile

# Re-install only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "[setup] installing pinned dependencies into $(VENV) (first time: a few minutes)"
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (clinops)" >/dev/null
	@touch $@

setup: $(VENV)/.installed

all: setup
	$(BIN)/clinops params $(PARAMS)
	$(BIN)/snakemake --cores $(CORES) --config params=$(PARAMS) --rerun-triggers mtime --printshellcmds --show-failed-logs
	@$(BIN)/python -m clinops.pipeline where $(PARAMS)

test: setup
	$(BIN)/python -m pytest tests -m "not slow" -n $(CORES) --dist loadfile
	$(BIN)/python -m pytest --nbval-lax notebooks -p no:randomly

test-slow: setup
	$(BIN)/python -m pytest tests -m slow

# The model that `make all` registered for PARAMS; TLS: make serve TLS_CERT=cert.pem TLS_KEY=key.pem,
# or make serve SELF_SIGNED=1 (a self-signed certificate under build/serving/tls).
serve: setup
	$(BIN)/python -m serving --registered $$($(BIN)/python -m clinops.pipeline registered $(PARAMS))@champion \
	  --project-root . --state-dir build/serving/$$($(BIN)/python -m clinops.pipeline name $(PARAMS)) \
	  --host $(HOST) --port $(PORT) --workers $(WORKERS) \
	  $(if $(TLS_CERT),--tls-cert $(TLS_CERT) --tls-key $(TLS_KEY)) $(if $(SELF_SIGNED),--self-signed-cert build/serving/tls)

# The audit trail's outside parties on loopback (OpenBao, a witness, SeaweedFS with Object Lock), until
# Ctrl-C; then in another shell: set -a; . build/stack/stack.env; make serve. Without it, make serve
# keeps the audit keys and log local.
.PHONY: stack
stack: setup
	$(BIN)/clinops audit stack --dir build/stack

clean-reports:
	rm -rf build reports/notebooks
