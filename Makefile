# The README's two commands: `make demo` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Debian packages some tests drive for real (tests that need one run when it is present;
# CI installs them all with `make system-deps`).
SYSTEM_PACKAGES := postgresql chromium

.PHONY: demo test lint typecheck unit ui bench soak clean install system-deps screenshots

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/meta-pipeline demo

# The demo's world (simulator, GCS emulator, accounts) with `dagster dev`: UI at http://127.0.0.1:3000
ui: $(STAMP)
	$(BIN)/meta-pipeline ui

lint: $(STAMP)
	$(BIN)/ruff check meta_pipeline meta_pipeline_tests benchmarks
	$(BIN)/ruff format --check meta_pipeline meta_pipeline_tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy meta_pipeline

unit: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

test: lint typecheck unit

# The README's screenshots, taken by the browser test from real materialized partitions.
screenshots: $(STAMP)
	SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(BIN)/python -m pytest -q -p no:cacheprovider meta_pipeline_tests/browser

bench: $(STAMP)
	$(BIN)/python -c 'import matplotlib' 2>/dev/null || $(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks

# Kill-anywhere property test, long profile (hundreds of kill-and-fault cases; SOAK_EXAMPLES
# to change). Figures: cases, faults injected, records compared, lost, duplicated.
SOAK_EXAMPLES ?= 300
SOAK_REPORT := .soak/report.jsonl
soak: $(STAMP)
	@mkdir -p .soak && rm -f $(SOAK_REPORT)
	META_HYPOTHESIS_PROFILE=soak META_SOAK_EXAMPLES=$(SOAK_EXAMPLES) \
		META_PROMISES_REPORT=$(CURDIR)/$(SOAK_REPORT) \
		$(BIN)/python -m pytest -q -p no:cacheprovider \
		meta_pipeline_tests/promises/test_kill_anywhere.py; \
	status=$$?; $(BIN)/python -m meta_pipeline_tests.promises.soak_summary $(SOAK_REPORT); \
	exit $$status

system-deps:
	@if [ -n "$(strip $(SYSTEM_PACKAGES))" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES); \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .demo
