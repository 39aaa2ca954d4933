# The two commands people need: `make demo` (set up, start Kafka, run the pipeline on the shipped
# sample, show predictions and alerts) and `make test` (the whole test suite on a real broker).
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c

VENV = $(shell bash scripts/bootstrap.sh)

.PHONY: env demo test kafka-up kafka-down lint bench

env:
	@echo "environment: $(VENV)"

demo:
	@venv="$(VENV)"; "$$venv/bin/livelearn" demo

test:
	@venv="$(VENV)"; cd "$(CURDIR)"; "$$venv/bin/python" -m pytest -p no:cacheprovider

kafka-up:
	@venv="$(VENV)"; "$$venv/bin/livelearn" kafka up

kafka-down:
	@venv="$(VENV)"; "$$venv/bin/livelearn" kafka down

lint:
	@venv="$(VENV)"; "$$venv/bin/ruff" check streams agents schemas connectors cli bench tests

bench:
	@venv="$(VENV)"; for b in bench/*.py; do "$$venv/bin/python" "$$b"; done
