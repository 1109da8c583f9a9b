# gen_jax: `make demo` trains the default paradigm (VAE) on the embedded digits;
# `make test` runs the test suite. Both create .venv on first use and reinstall
# only when requirements.txt or setup.cfg change.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= workdirs/demo
PYTEST_WORKERS ?= 2

.PHONY: demo test gallery install clean

install: $(STAMP)

$(STAMP): requirements.txt setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m experiments.train --config=experiments/configs/vae.py:digits --workdir=$(DEMO_DIR)
	$(PY) -m experiments.sample --workdir=$(DEMO_DIR) --num=64 --out=$(DEMO_DIR)/samples.png
	$(PY) -m experiments.evaluate --workdir=$(DEMO_DIR)

# Test-only: torch (CPU) in the venv; pytorch-fid's reference InceptionV3 and torchvision's
# pure-Python classes in $(TEST_REF), off sys.path (requirements-test-reference.txt says why).
TEST_STAMP := $(VENV)/.test-installed
TEST_REF := $(VENV)/test-reference

$(TEST_STAMP): requirements-test.txt requirements-test-reference.txt $(STAMP)
	$(PY) -m pip install -q -r requirements-test.txt -c requirements.txt
	rm -rf $(TEST_REF)
	$(PY) -m pip install -q --no-deps --target $(TEST_REF) -r requirements-test-reference.txt
	@touch $(TEST_STAMP)

test: $(STAMP) $(TEST_STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -q tests notebooks --nbmake --nbmake-timeout=900

gallery: $(STAMP)
	$(PY) -m experiments.gallery --out=results/gallery --budget_overrides=ddpm:5,maskgit:3,text2image:3

clean:
	rm -rf $(VENV) workdirs

# `make peers`: the peers suite (gen_jax vs diffusers, normflows and a plain PyTorch VAE on this
# CPU). Its PyTorch peers are benchmark-only (requirements-peers.txt): `make test` never installs
# them. PEERS_FLAGS=--smoke checks that it runs; results/peers/README.md has the figures.
PEERS_STAMP := $(VENV)/.peers-installed
PEERS_FLAGS ?=

$(PEERS_STAMP): requirements-peers.txt $(STAMP)
	$(PY) -m pip install -q -r requirements-peers.txt -c requirements.txt
	@touch $(PEERS_STAMP)

.PHONY: peers
peers: $(PEERS_STAMP)
	$(PY) -m experiments.benchmark --suite=peers $(PEERS_FLAGS)
