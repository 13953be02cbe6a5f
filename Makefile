# `make demo` and `make test` are all a fresh machine needs; both install into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test benchmark-quality benchmark-quality-full benchmark-speed benchmark-speed-reference benchmark-speed-ctranslate2 benchmark-attention benchmark-latency benchmark-decoding benchmark-search benchmark-corpus benchmark-local-corpus clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

# Trains configs/quickstart.yaml offline (synthetic corpus), translates two sentences, evaluates.
demo: install
	$(BIN)/nmt train --config configs/quickstart.yaml
	$(BIN)/nmt translate "The small dog saw a red ball." "My teachers will read these old books in the garden."
	$(BIN)/nmt evaluate --split test

# Two processes, each test file in one of them (its module fixtures trained once): TensorFlow
# leaves a core idle during tracing, data preparation and decoding, which the other process fills.
test: install
	$(BIN)/python -m pytest -q -p no:warnings --durations=20 -n 2 --dist loadfile

# Multi30k en->de: 40 minutes of training, then test BLEU with greedy search and beam 4
# (benchmarks/quality.json and .md). MINUTES=5 for a quick look.
MINUTES ?= 40
benchmark-quality: install
	$(BIN)/python scripts/benchmark.py quality --config configs/multi30k_en_de.yaml --minutes $(MINUTES)

# Full training of the same config: until validation BLEU has not improved for PATIENCE
# evaluations (hours on 2 CPU cores; an interrupted run continues where it stopped).
PATIENCE ?= 10
benchmark-quality-full: install
	$(BIN)/python scripts/benchmark.py quality --config configs/multi30k_en_de.yaml --patience $(PATIENCE)

# Training and decoding throughput, MFU and peak memory of the reference toolkit's setup
# (benchmarks/speed.json and .md), and training with bfloat16 compute as a lever (skipped on a CPU
# without bf16 units, where it would train in float32 as the config does); about 15 minutes on 2 CPU cores.
# float32 as the baseline (the configs say auto), bfloat16 as a lever measured beside it.
BF16_LEVER := --set train.precision=float32 --lever bf16:train.precision=mixed_bfloat16
benchmark-speed: install
	$(BIN)/python scripts/benchmark.py speed --config configs/reference_base.yaml $(BF16_LEVER)

# The same, with the reference toolkit (OpenNMT-tf 2.32 on TensorFlow 2.12, in its own environment:
# it cannot share one with nmt's TensorFlow) training the same model on the same data in the same
# run, so the speed-up over it is measured on this machine. Needs Python <= 3.11 for TensorFlow 2.12.
# DECODE_RUN_DIR=runs/X (a trained reference_base run): both decode the test split, ours with X's
# model, the reference with its own after as many training steps.
DECODE_RUN_DIR ?=
REFERENCE_VENV ?= .venv-reference
$(REFERENCE_VENV)/.installed:
	$(PYTHON) -m venv $(REFERENCE_VENV)
	$(REFERENCE_VENV)/bin/python -m pip install --quiet "OpenNMT-tf==2.32.0" "tensorflow==2.12.1"
	touch $@

benchmark-speed-reference: install $(REFERENCE_VENV)/.installed
	$(BIN)/python scripts/benchmark.py speed --config configs/reference_base.yaml $(BF16_LEVER) --ctranslate2 \
		--reference-python $(REFERENCE_VENV)/bin/python $(if $(DECODE_RUN_DIR),--decode-run-dir $(DECODE_RUN_DIR))

# Decoding against the ceiling the issue sets: the same model converted to CTranslate2 (a C++
# inference engine) decodes the test split in the same run as ours (benchmarks/speed_ctranslate2.json
# and .md). DECODE_RUN_DIR as above;
# without it, the benchmark's briefly trained model decodes (speed only: it has barely learned).
benchmark-speed-ctranslate2: install
	$(BIN)/python scripts/benchmark.py speed --config configs/reference_base.yaml --ctranslate2 \
		--out benchmarks/speed_ctranslate2.json $(if $(DECODE_RUN_DIR),--decode-run-dir $(DECODE_RUN_DIR))

# The attention ablation: each step of attention's history (additive, dot, scaled dot, projections,
# heads, shared key/value heads) trained for the same minutes on the synthetic corpus and on
# Multi30k en->de, then measured on validation (benchmarks/attention.json, .md and .png).
# 8 variants x (minutes + ~2 of measuring) per corpus; run again after an interruption to continue.
ATTENTION_MINUTES_SYNTHETIC ?= 5
ATTENTION_MINUTES_MULTI30K ?= 10
ATTENTION_SET ?= train.warmup_steps=300
benchmark-attention: install
	$(BIN)/python scripts/benchmark.py attention --minutes-synthetic $(ATTENTION_MINUTES_SYNTHETIC) \
		--minutes-multi30k $(ATTENTION_MINUTES_MULTI30K) $(foreach setting,$(ATTENTION_SET),--set $(setting))

# One sentence through `nmt translate` in fresh processes, through the run's SavedModel export
# and its CTranslate2 export (benchmarks/latency.json and .md). RUN_DIR: a trained run; BASELINE: another nmt checkout to time beside.
RUN_DIR ?= runs/latest
benchmark-latency: install
	$(BIN)/python scripts/benchmark.py latency --run-dir $(RUN_DIR) $(if $(BASELINE),--baseline-checkout $(BASELINE))

# Decoding against CTranslate2 with each decoder alone on the machine: ours (float32, bfloat16) and
# RUN_DIR's model converted to CTranslate2 (float32, int8), greedy and beam 4, each in a fresh
# process, taking turns over 3 rounds (benchmarks/decoding.json and .md; ~8 minutes on 2 cores).
benchmark-decoding: install
	$(BIN)/python scripts/benchmark.py decoding --run-dir $(RUN_DIR)

# A change to the searches before and after: BASELINE's nmt/decoding/search.py and this checkout's
# translate the test split in one process, taking turns batch by batch (benchmarks/search.json and .md).
benchmark-search: install
	$(BIN)/python scripts/benchmark.py search --run-dir $(RUN_DIR) --baseline-checkout $(BASELINE)

# A corpus of 5 million pairs (synthetic/5m, generated once into /tmp/nmt_corpus_tfds, ~1 GB):
# time to the first step, tokens/s and memory, cached in memory against streamed
# (benchmarks/corpus.json and .md).
benchmark-corpus: install
	$(BIN)/python scripts/benchmark.py corpus

benchmark-local-corpus: install
	$(BIN)/python scripts/benchmark.py local-corpus

clean:
	rm -rf runs .pytest_cache
