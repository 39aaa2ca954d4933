# The two commands people need: `make demo` (set up, start Kafka, run the pipeline on the shipped
# sample, show predictions and alerts) and `make test` (the whole test suite on a real broker).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
LIVELEARN := scripts/livelearn

.PHONY: env demo test kafka-up kafka-down lint bench

env:
	@bash scripts/bootstrap.sh

demo:
	@$(LIVELEARN) demo

test:
	@venv="$$(bash scripts/bootstrap.sh)"; PYTHONPATH="$(CURDIR)" "$$venv/bin/python" -m pytest -p no:cacheprovider

kafka-up:
	@$(LIVELEARN) kafka up

kafka-down:
	@$(LIVELEARN) kafka down

lint:
	@venv="$$(bash scripts/bootstrap.sh)"; "$$venv/bin/ruff" check streams agents schemas connectors cli bench tests

bench:
	@venv="$$(bash scripts/bootstrap.sh)"; for b in features learning drift_eval drift_quiet pipeline latency scaling; do PYTHONPATH="$(CURDIR)" "$$venv/bin/python" "bench/$$b.py"; done
