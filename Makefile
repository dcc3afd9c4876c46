# make demo : installs (first time ~15 min: mmcv compiles), then trains + evaluates + draws the quick toy job on CPU
# make demo-long : the 24-epoch toy Mask R-CNN job; make demo-seg : toy UPerNet
# make test : installs, then runs the test suite
# make docs : builds the documentation site into site/ (mkdocs-material; warnings are errors) with its own small
#   environment, .venv-docs (requirements/docs.txt alone: no torch, no mmcv; made the first time, in about a minute)
# DAVIT_VENV=/path overrides where the environment lives (default .venv).
# make wheelhouse WHEELHOUSE=DIR : collects the environment's packages into DIR (connected machine; docs/install.md,
#   "Offline install"); make env/test/demo WHEELHOUSE=DIR then install from DIR alone, with no network.
DAVIT_VENV ?= $(CURDIR)/.venv
export DAVIT_VENV
WHEELHOUSE ?=
export WHEELHOUSE
# the target's Python (X.Y), torch (X.Y.Z), cuda|cpu, the index for a cpu torch, its glibc (X.Y); empty: defaults
WH_PYTHON ?=
WH_TORCH ?=
WH_VARIANT ?=
WH_TORCH_INDEX ?=
WH_GLIBC ?=
PY := $(DAVIT_VENV)/bin/python
PYTEST_ARGS ?=
# test processes (pytest-xdist; whole files per process, so that a file's trained fixtures are made once); 0: one
TEST_JOBS ?= auto

.PHONY: env demo demo-det demo-long demo-seg test test-fast docs flops benchmark clean-env wheelhouse gpu-check

env:
	@bash tools/setup_env.sh

wheelhouse:
	@bash tools/make_wheelhouse.sh "$(WHEELHOUSE)" $(if $(WH_PYTHON),--python "$(WH_PYTHON)") \
	  $(if $(WH_TORCH),--torch "$(WH_TORCH)") $(if $(WH_VARIANT),--variant "$(WH_VARIANT)") \
	  $(if $(WH_TORCH_INDEX),--torch-index "$(WH_TORCH_INDEX)") $(if $(WH_GLIBC),--glibc "$(WH_GLIBC)")

demo: env
	@bash tools/demo.sh

demo-det: env
	@bash tools/demo.sh det

demo-long: env
	@bash tools/demo.sh det-long

demo-seg: env
	@bash tools/demo.sh seg

test: env
	$(PY) -m pytest tests -n $(TEST_JOBS) --dist loadfile $(PYTEST_ARGS)

# the suite without the multi-process and end-to-end training runs
test-fast: env
	$(PY) -m pytest tests -m "not slow" -n $(TEST_JOBS) --dist loadfile $(PYTEST_ARGS)

# The site needs mkdocs and its plugins only, so it does not wait for make env (torch + compiling mmcv). DOCS_VENV=/path
# overrides where that environment lives; it is remade when requirements/docs.txt changes.
# NO_MKDOCS_2_WARNING: mkdocs-material's end-of-life banner, printed on every build
DOCS_VENV ?= $(CURDIR)/.venv-docs
docs: $(DOCS_VENV)/.mmdavit-docs-stamp
	NO_MKDOCS_2_WARNING=1 $(DOCS_VENV)/bin/python -m mkdocs build --strict --site-dir site

$(DOCS_VENV)/.mmdavit-docs-stamp: requirements/docs.txt
	$(or $(PYTHON),python3) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/python -m pip install --disable-pip-version-check --progress-bar off \
	  $(if $(WHEELHOUSE),--no-index --find-links $(WHEELHOUSE)) -r requirements/docs.txt
	touch $@

benchmark: env
	$(PY) tools/benchmark.py

# make gpu-check OUT=DIR: the GPU check into a new or empty DIR (docs/install.md, "The GPU check"). Not after env: on a
# GPU image without network the environment comes from GPU_CHECK_KIT, and the script says what is missing.
gpu-check:
	@bash tools/gpu_check.sh "$(OUT)"

clean-env:
	rm -rf $(DAVIT_VENV)
