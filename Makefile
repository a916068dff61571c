# Everything goes through a local venv (.venv); nothing is installed globally.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# `make run ARGS="--rate 50"` for an open-ended run (Ctrl-C stops it and prints the summary).
ARGS ?= --encounters 3000 --rate 150 --bad-rate 0.04 --summary run-summary.json

# The browser tests drive Debian's Chromium through Playwright (no browser download).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup browser kafka run test test-unit lint bench bench-memory soak clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

browser:
	@command -v chromium >/dev/null 2>&1 || { echo "installing Debian's chromium for the browser tests"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# Apache Kafka (the tests' second broker, `claims broker --kafka`) runs from the jars pom.xml
# pins: Debian's JDK and Maven when missing, then Maven copies the jars into the cache.
kafka: setup
	@missing=""; command -v java >/dev/null 2>&1 || missing="openjdk-17-jre-headless"; \
	  command -v mvn >/dev/null 2>&1 || missing="$$missing maven"; \
	  if [ -n "$$missing" ]; then echo "installing Debian's $$missing for Apache Kafka"; \
	    $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi
	$(BIN)/python -c "from engine.runtime.kafka_cluster import ensure_classpath; from engine.settings import Settings; \
	  print('Kafka jars:', ensure_classpath(Settings().kafka_lib_dir))"

run: setup
	$(BIN)/claims run $(ARGS)

# Two processes; one that runs out of tests takes some of the other's (worksteal): with
# --dist load the tests queued behind a long broker run waited for it while the other
# process sat idle. Grouping by broker (--dist loadgroup) groups nothing under pytest 9.2
# with xdist 3.8 (the group suffix xdist writes to item._nodeid is no longer read).
test: setup browser kafka
	$(BIN)/python -m pytest -n 2 --dist worksteal

# The lint and type gate (.ci/run runs it before the tests; pre-commit runs the same).
lint: setup
	$(BIN)/ruff check engine simulators tests bench
	$(BIN)/mypy
	$(BIN)/python -m engine.wire.generate --check

test-unit: setup
	$(BIN)/python -m pytest tests/unit

# The long crash run (docs/reliability.md): 20,000 encounters, two workers, 14 kills of every
# process spread over the run; it exits non-zero unless the end-to-end audit finds nothing lost
# or twice. SOAK_BROKER=kafka runs it on a loopback Apache Kafka.
SOAK_BROKER ?= tansu
SOAK_ARGS ?= --encounters 20000 --rate 120 --workers 2 --chaos-every 10 \
  --chaos worker:term:4,worker:kill:4,payer:term:2,payer:kill:2,coder:term:1,coder:kill:1
soak: setup
	$(BIN)/claims run $(SOAK_ARGS) --broker $(SOAK_BROKER) --no-live --no-web --summary soak-summary.json

# The speed figures (docs/performance.md): the micro-benchmarks, each stage alone on a
# pre-loaded topic, then `claims load --find-max` on Tansu (one worker, then two) and on one
# Kafka node, each beside the raw aiokafka hop of its own run; bench/report.py prints them
# against the targets. ~25 minutes on 2 cores. `make bench-memory`: RSS over 200,000 encounters.
BENCH_LOAD := --rate 300 --duration 30 --find-max --no-live
bench: setup kafka
	$(BIN)/python bench/codec.py
	$(BIN)/python bench/coding.py
	$(BIN)/python bench/payer.py
	$(BIN)/python bench/loop.py
	$(BIN)/python bench/exactly_once.py
	$(BIN)/python bench/stages.py --brokers tansu,kafka --report bench-stages.json
	$(BIN)/claims load $(BENCH_LOAD) --report load-tansu.json
	$(BIN)/claims load $(BENCH_LOAD) --workers 2 --report load-tansu-2w.json
	$(BIN)/claims load $(BENCH_LOAD) --broker kafka --report load-kafka.json
	$(BIN)/python bench/report.py load-tansu.json load-tansu-2w.json load-kafka.json bench-stages.json

bench-memory: setup
	$(BIN)/claims load --rate 250 --duration 800 --no-live --report load-memory.json
	$(BIN)/python bench/report.py load-memory.json

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache run-summary.json soak-summary.json load-*.json bench-stages.json
