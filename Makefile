# Two set-up commands work on a fresh machine: `make demo` and `make test`. Both create .venv if missing and
# install torch==2.13.0 (a CPU wheel is cached on our machines) first, then the project with all its extras.
# The install is skipped while .venv/.installed is newer than pyproject.toml and setup.py: a second run starts at once.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo
TRAFFIC_DEMO_DIR ?= runs/demo-traffic

.PHONY: install demo test bench clean-demo

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml setup.py | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[all]"
	touch $(STAMP)

install: $(STAMP)

# The toy Gen-neG loop live, then the shipped traffic models on held-out road networks (pretrained/traffic-cpu and its
# Gen-neG student pretrained/traffic-cpu-genneg): the test split's SUMO data are generated on first use, only them.
demo: install
	$(VENV)/bin/genneg run toy --preset demo --seeds 1 --run-dir $(DEMO_DIR) --resume
	$(VENV)/bin/genneg demo traffic --out $(TRAFFIC_DEMO_DIR)
	@echo "toy report:     $(DEMO_DIR)/report.md"
	@echo "traffic report: $(TRAFFIC_DEMO_DIR)/report.md"

# One pytest worker per core (pytest-xdist); a test module stays on one worker, so its module fixtures are built once.
test: install
	$(PY) -m pytest -q -n auto --dist loadscope

# Speed and scale figures (benchmarks/README.md): each script prints a table and writes benchmarks/results/*.json.
# The first run builds what they measure under .cache/bench (a toy model, tiny SUMO scenes); one torch thread each.
BENCH_ENV := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
bench: install
	$(BENCH_ENV) $(PY) benchmarks/sampler_cost.py
	$(BENCH_ENV) $(PY) benchmarks/valid_per_second.py
	$(BENCH_ENV) $(PY) benchmarks/oracle_throughput.py
	$(BENCH_ENV) $(PY) benchmarks/data_throughput.py

clean-demo:
	rm -rf $(DEMO_DIR) $(TRAFFIC_DEMO_DIR)
