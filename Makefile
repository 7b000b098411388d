# LiftGuard: `make demo` runs the main job, `make test` the tests.
# Each target creates and fills its own virtual environment when missing.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.liftguard-installed
LEGACY_VENV ?= .venv-legacy
LEGACY_STAMP := $(LEGACY_VENV)/.liftguard-installed
RUN ?= runs/demo

.PHONY: demo test test-legacy bench hil hil-bench venv clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[hub,train,test]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m quantize demo --out $(RUN)

# The legacy runtime (tflite-runtime 2.14, numpy<2) gets its own venv; its
# golden-vector self-test adds about a minute, so it is part of `make test`.
test: $(STAMP) $(LEGACY_STAMP)
	LIFTGUARD_LEGACY_PYTHON=$(CURDIR)/$(LEGACY_VENV)/bin/python $(PY) -m pytest -q tests hil_tests -m 'not slow'

$(LEGACY_STAMP): pyproject.toml
	@test -x $(LEGACY_VENV)/bin/python || $(PYTHON) -m venv $(LEGACY_VENV)
	$(LEGACY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LEGACY_VENV)/bin/python -m pip install --quiet -e '.[legacy]' pytest
	@touch $(LEGACY_STAMP)

test-legacy: $(LEGACY_STAMP) $(STAMP)
	$(PY) -m pytest -q tests/legacy_runtime -m 'not slow' --legacy-python $(LEGACY_VENV)/bin/python

# With a demo run present, the hub benchmarks use its real (proposed-model) bundle.
bench: $(STAMP)
	@if [ -f $(RUN)/bundle/liftguard.lgb ]; then \
	  export LIFTGUARD_BENCH_BUNDLE=$(CURDIR)/$(RUN)/bundle/liftguard.lgb LIFTGUARD_BENCH_TRUST=$(CURDIR)/$(RUN)/keys/signing.pub; \
	  echo "benchmarks: using the demo bundle $(RUN)/bundle/liftguard.lgb"; fi; \
	$(PY) -m benchmarks

hil: $(STAMP)
	rm -rf runs/hil && $(PY) -m pytest hil_tests -m '' -rA --hil-report runs/hil --hil-work runs/hil/work $(HIL_ARGS)

# Every scenario against the bench emulator (hil_tests/bench.py: edge run on "another board",
# reached only through --hub-port/--rig-port); QA report in runs/hil-bench/.
hil-bench: $(STAMP)
	rm -rf runs/hil-bench && $(PY) -m hil_tests.bench --dir runs/hil-bench/board -- -m '' -rA \
	  --deselect hil_tests/test_hil_bench.py --hil-report runs/hil-bench --hil-work runs/hil-bench/work $(HIL_ARGS)

clean:
	rm -rf $(VENV) $(LEGACY_VENV) runs .pytest_cache
