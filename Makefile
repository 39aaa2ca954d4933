# The two commands people need: `make demo` (set up, start Kafka, run the pipeline on the shipped
# sample, show predictions and alerts) and `make test` (the whole test suite on a real broker).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
LIVELEARN := scripts/livelearn

.PHONY: help env demo test test-unit test-integration kafka-up kafka-down lint typecheck bench
PYTEST = venv="$$(bash scripts/bootstrap.sh)"; PYTHONPATH="$(CURDIR)" "$$venv/bin/python" -m pytest -p no:cacheprovider

help:
	@echo "make demo              set up, start Kafka and a worker, replay the shipped sample, show skill and alerts"
	@echo "make test              the whole suite (unit, doctests, agents, integration on a real local broker)"
	@echo "make test-unit         unit tests, doctests and the agent tier (no broker)"
	@echo "make test-integration  integration tests against the real local broker"
	@echo "make lint              ruff over every package"
	@echo "make typecheck         mypy over streams/, schemas/, the settings and the file readers"
	@echo "make bench             the benchmarks (RESULT lines)"
	@echo "make env               create the environment and print its path"
	@echo "make kafka-up|kafka-down  the local KRaft broker"

env:
	@bash scripts/bootstrap.sh

demo:
	@$(LIVELEARN) demo

test:
	@bash scripts/test.sh

test-unit:
	@$(PYTEST) -m "not integration"

test-integration:
	@$(PYTEST) -m integration tests/integration

kafka-up:
	@$(LIVELEARN) kafka up

kafka-down:
	@$(LIVELEARN) kafka down

lint:
	@venv="$$(bash scripts/bootstrap.sh)"; "$$venv/bin/ruff" check streams agents schemas connectors cli bench tests

typecheck:
	@venv="$$(bash scripts/bootstrap.sh)"; PYTHONPATH="$(CURDIR)" "$$venv/bin/mypy" --cache-dir "$$(dirname "$$(dirname "$$venv")")/mypy/$$(basename "$$venv")" --ignore-missing-imports streams schemas agents/sections.py agents/settings.py connectors/recorded.py connectors/replay.py connectors/text_lines.py  # also in tests/unit/test_static.py

bench:
	@venv="$$(bash scripts/bootstrap.sh)"; for b in features learning core skill experts drift_eval drift_cost_instructions drift_quiet drift_real pipeline latency worker_profile scaling input_fetch_wait; do PYTHONPATH="$(CURDIR)" "$$venv/bin/python" "bench/$$b.py"; done
