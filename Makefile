# mad: `make run` installs into .venv and runs every stage built so far; `make test` tests it all.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA   ?= data
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
HASH   := $(shell cat pyproject.toml | sha1sum | cut -c1-10)

.PHONY: run install install-test system-deps test test-fast lint bench docs clean spark spark-jars

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-$(HASH): $(BIN)/python pyproject.toml
	$(PIP) install -e .
	rm -f $(VENV)/.installed-*; touch $@

$(VENV)/.test-installed-$(HASH): $(VENV)/.installed-$(HASH)
	$(PIP) install -e '.[test]'
	rm -f $(VENV)/.test-installed-*; touch $@

install: $(VENV)/.installed-$(HASH)

install-test: $(VENV)/.test-installed-$(HASH)

## run: every stage wired together and supervised by `mad up`: on the first start, 3 h of
##      labelled traffic (with incidents) posted once through the ingest API (labels in
##      $(DATA)/backfill/labels.json), then the live simulator (:8000) -> ingest API (:8010)
##      -> stream -> raw writer -> $(DATA)/lake -> ETL every 30 s -> md-transformed-*,
##      md-aggregates -> detection every 30 s -> md-anomalies, incidents, $(DATA)/alerts.jsonl;
##      the dashboard on :8020, GET /health on :8030; Ctrl-C stops it all cleanly
run: install
	MAD_DATA_DIR=$(DATA) MAD_WRITER__FLUSH_INTERVAL_S=30 MAD_ETL__WATCH_INTERVAL_S=30 MAD_DETECT__WATCH_INTERVAL_S=30 \
		$(BIN)/mad up --rate 50

## spark: PySpark into .venv, for `mad etl run --engine spark` (`make test` installs it too)
spark: install
	$(PIP) install -e '.[spark]'

## spark-jars: hadoop-aws 3.3.1 + aws-java-sdk-bundle 1.11.901 for Spark on S3 (s3a://), taken
##      from the sagemaker-pyspark wheel on PyPI (no Maven needed); put their paths in
##      etl.engine.spark.jars. A real cluster supplies jars matching its own Hadoop.
SPARK_JARS := $(VENV)/spark-jars
SPARK_JAR_FILES := $(SPARK_JARS)/hadoop-aws-3.3.1.jar $(SPARK_JARS)/aws-java-sdk-bundle-1.11.901.jar
spark-jars: $(SPARK_JAR_FILES)
$(SPARK_JAR_FILES) &: | $(VENV)/.installed-$(HASH)
	@mkdir -p $(SPARK_JARS)/dl
	$(PIP) download --no-deps --dest $(SPARK_JARS)/dl sagemaker-pyspark==1.4.5
	cd $(SPARK_JARS) && tar -xzf dl/sagemaker_pyspark-1.4.5.tar.gz --wildcards --strip-components=3 \
		'*/jars/hadoop-aws-3.3.1.jar' '*/jars/aws-java-sdk-bundle-1.11.901.jar'
	rm -rf $(SPARK_JARS)/dl
	@ls $(SPARK_JARS)/*.jar

lint: install-test
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/mypy

## system-deps: Prometheus' promtool (Debian package prometheus) lints /metrics in the tests.
## Debian's redis-server is the hot store the tests start on a free port (`store.hot: redis`).
## Debian's chromium drives the dashboard's browser tests (never `playwright install`).
## PostgreSQL 15 (tests start it on a free port) and Java come with the machine image.
system-deps:
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends prometheus >/dev/null; \
	  else echo "promtool missing: run 'sudo apt-get install prometheus' (its test is skipped)"; fi; }
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends redis-server >/dev/null; \
	  else echo "redis-server missing: run 'sudo apt-get install redis-server' (its tests are skipped)"; fi; }
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends chromium >/dev/null; \
	  else echo "chromium missing: run 'sudo apt-get install chromium' (the browser tests are skipped)"; fi; }

## test: lint, type-check and every test suite (slow ones too; `-m "not slow"` in test-fast)
test: lint system-deps spark-jars
	$(BIN)/pytest -q

test-fast: install-test
	$(BIN)/pytest -q -m "not slow"

## bench: every headline figure, ours beside its peer (bench_etl runs PySpark on ~1 GB: long)
bench: install-test
	$(PIP) install -e '.[test,bench]'
	$(BIN)/python benchmarks/bench_generate.py
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_detect.py
	$(BIN)/python benchmarks/bench_etl.py
	$(BIN)/python benchmarks/bench_quality.py
	$(BIN)/python benchmarks/bench_query.py --s3

docs: install
	$(BIN)/mad catalog --format markdown > docs/catalog.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(DATA)
