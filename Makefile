# The two commands of the README: `make demo` and `make test`. Both create .venv and install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EVENTS ?= 20000

.PHONY: demo demo-real test browser clean bench

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 11), "motpipe needs Python 3.11+"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## demo: generate sample data, run the pipeline and its quality checks, build the DuckDB views and the report
demo: $(STAMP)
	rm -rf demo
	$(BIN)/motpipe sample --events $(EVENTS) --out demo/input --cross-channel-share 0.3
	$(BIN)/motpipe run -t 'demo/input/touchpoints/*' -f 'demo/input/feedback/*' --out demo/out
	$(BIN)/motpipe views --out demo/out
	$(BIN)/motpipe query --db demo/out/motpipe.duckdb "select outcome, rank, dimension, round(share, 3) as share, round(share_low, 3) as low, round(share_high, 3) as high from key_drivers order by outcome, rank"
	$(BIN)/motpipe cases --out demo/out --limit 5
	$(BIN)/motpipe report --out demo/out

## demo-real: the pipeline on the real public logs in ../shared/data/events with the example playbooks
demo-real: $(STAMP)
	$(BIN)/motpipe run -t ../shared/data/events/servicenow_incident.jsonl.gz --playbook examples/playbooks/it_service_desk.yaml --out demo/real/servicenow
	$(BIN)/motpipe run -t ../shared/data/events/wabo_receipt.jsonl.gz --playbook examples/playbooks/permit_office.yaml --timezone Europe/Amsterdam --out demo/real/wabo

## test: the whole test suite (pytest's exit code 5, "no tests ran", fails the target)
test: $(STAMP) browser
	$(BIN)/python -m pytest

## bench: motpipe run (with its checkpoint, and --no-check) vs the DuckDB SQL baseline on N generated events of both
## input shapes (results in benchmarks/results/; docs/performance.md)
N ?= 1000000
RUNS ?= motpipe-check,motpipe,baseline
SHAPES ?= mixed,production
bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench --events $(N) --runs $(RUNS) --shapes $(SHAPES)

## browser: Debian's chromium for the Data Docs and report tests (they skip, saying why, where it can't be installed)
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium could not be installed: the browser tests will be skipped"

clean:
	rm -rf $(VENV) demo *.egg-info
