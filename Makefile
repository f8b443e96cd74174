# Two commands on a fresh machine: `make bench` (the default benchmark: a sweep on the fake
# target under AWS-like latencies, checked over real HTTP on an embedded moto server, and a
# recommendation) and `make test`. Both create the virtual environment on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install bench test lint micro

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# the plot extra: `make bench` draws plot.png (matplotlib)
	$(PY) -m pip install --quiet -e ".[plot]" --group dev
	# fauxqs (npm) for the fast-SQS tests and bench target; skipped where Node is missing
	$(PY) -c "from asyncloop.testing import ensure_fauxqs, node_available; node_available() and ensure_fauxqs()"
	# bbc/sqs-consumer (npm, pinned in asyncloop/_bench/node) for the bench's node-sqs-consumer baseline
	$(PY) -c "from asyncloop.testing import node_available; from asyncloop._bench._node_baseline import ensure_node_baseline; node_available() and ensure_node_baseline()"
	touch $(STAMP)

install: $(STAMP)

bench: $(STAMP)
	$(VENV)/bin/asyncloop bench

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check asyncloop bench tests
	$(VENV)/bin/ruff format --check asyncloop bench tests
	$(VENV)/bin/mypy --strict asyncloop

micro: $(STAMP)
	$(PY) -m pytest bench/micro --benchmark-enable -p no:cacheprovider
