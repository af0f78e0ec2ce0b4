# Two commands for a fresh machine: `make run` (demo console) and `make test` (the whole suite).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.DEFAULT_GOAL := help
.PHONY: help setup run test lint bench stop

help:
	@echo "make run    install what is missing, then serve the demo console on http://127.0.0.1:8000/admin/"
	@echo "make test   install what is missing, then run the test suite (SQLite, then a PostgreSQL-metadata pass)"
	@echo "make setup  install only (Debian packages, .venv, Python dependencies); idempotent"
	@echo "make lint   Django system checks and a migrations check"
	@echo "make bench  logical backup benchmark (bench/logical_backup.py)"
	@echo "make stop   stop the demo sandbox PostgreSQL cluster"

setup:
	@scripts/setup.sh

run: setup
	@scripts/run.sh

# Twice: the whole suite on SQLite metadata (the embedded default), then the `pgmeta` subset (models, jobs, leases,
# API lists, tests/test_prod_*.py) with the metadata database on a PostgreSQL cluster the fixtures start.
test: setup
	$(VENV)/bin/pytest $(PYTEST_ARGS)
	$(VENV)/bin/pytest --pg-metadata -m pgmeta $(PYTEST_ARGS)

lint: setup
	DEBUG=1 DATABASE_URL=sqlite:///:memory: $(PY) manage.py check
	DEBUG=1 DATABASE_URL=sqlite:///:memory: $(PY) manage.py makemigrations --check --dry-run
	@if [ -x $(VENV)/bin/ruff ]; then $(VENV)/bin/ruff check .; else echo "(ruff not installed in .venv; skipped)"; fi

bench: setup
	$(PY) bench/logical_backup.py

stop:
	@if [ -x $(PY) ]; then DEBUG=1 $(PY) manage.py demo --stop; fi
