# make demo : installs (first time ~15 min: mmcv compiles), then trains + evaluates + draws the quick toy job on CPU
# make demo-long : the 24-epoch toy Mask R-CNN job; make demo-seg : toy UPerNet
# make test : installs, then runs the test suite
# DAVIT_VENV=/path overrides where the environment lives (default .venv).
DAVIT_VENV ?= $(CURDIR)/.venv
export DAVIT_VENV
PY := $(DAVIT_VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: env demo demo-det demo-long demo-seg test test-fast flops benchmark clean-env

env:
	@bash tools/setup_env.sh

demo: env
	@bash tools/demo.sh

demo-det: env
	@bash tools/demo.sh det

demo-long: env
	@bash tools/demo.sh det-long

demo-seg: env
	@bash tools/demo.sh seg

test: env
	$(PY) -m pytest tests $(PYTEST_ARGS)

# the suite without the multi-process and end-to-end training runs
test-fast: env
	$(PY) -m pytest tests -m "not slow" $(PYTEST_ARGS)

benchmark: env
	$(PY) tools/benchmark.py

clean-env:
	rm -rf $(DAVIT_VENV)
