# Every target bootstraps .venv itself: `make test` and `make report` work on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
REPORT_TIME_SCALE ?= 1
# process (default: the fast process emulation) or guest (real Linux guests, memory-exact)
ISOLATION ?= process
SERVE_PORT ?= 8081

.PHONY: setup test lint typecheck format serve report bench clean guest-setup

$(STAMP): pyproject.toml perflib/ingest/_k6scan.c
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -m ipykernel install --sys-prefix --name perflib --display-name "perflib (.venv)" >/dev/null
	@scripts/install_prometheus.sh || echo "warning: no Prometheus: the process-source tests will be skipped"
	@touch $(STAMP)

setup: $(STAMP)

# QEMU + busybox + cpio from Debian, the kernel via linux-image-amd64, the initramfs
# (~/.cache/perflib/guest). Needed by --isolation guest; exit 3 = cannot install here.
guest-setup:
	scripts/setup_guest.sh

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# perflib ships py.typed: its annotations (and the service's) are checked ([tool.mypy] in pyproject.toml).
typecheck: setup
	$(BIN)/mypy perflib service

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# pytest suites, then every notebook on its defaults with nbval (in the project's kernel).
NBVAL := --nbval-lax --nbval-kernel-name perflib --nbval-sanitize-with notebooks/sanitize.cfg \
         --nbval-cell-timeout 300

test: lint typecheck
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -q tests
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -q -p no:cacheprovider $(NBVAL) notebooks

serve: setup
	$(BIN)/perflib serve --port $(SERVE_PORT)

report: setup
	$(BIN)/perflib report-job --time-scale $(REPORT_TIME_SCALE) --isolation $(ISOLATION)

bench: setup
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache reports
