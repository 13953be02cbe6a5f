"""Settings decided from the machine when a run starts: train.precision and train.batch_tokens 'auto'.

The decided values replace 'auto' in the config the run saves (config.yaml), and `nmt train`
prints each with its reason. batch_tokens is measured: on a GPU, the largest budget whose longest
batches fit in memory, less a margin; on a CPU, where memory is rarely the limit, the budget of best
training throughput, the smallest one within a few percent of the best (more updates per epoch).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import tensorflow as tf

from nmt.config import Config
from nmt.data import pipeline, sources
from nmt.errors import NmtError
from nmt.run_dir import RunDir
from nmt.training import distribute, precision, trainer

log = logging.getLogger("nmt")

CPU_BUDGETS = (1024, 2048, 4096, 8192, 16384)
# A smaller budget within this fraction of the best throughput wins: it makes more updates per epoch.
THROUGHPUT_TOLERANCE = 0.05
# Each CPU budget is timed for at least this long, after two steps that trace and warm up.
TIMED_SECONDS = 4.0
GPU_FIRST_BUDGET = 4096
GPU_LARGEST_BUDGET = 1 << 20
# The GPU budget kept is this fraction of the largest that fit: batches of other shapes, the
# allocator's fragmentation and validation need room too.
GPU_MARGIN = 0.85


@dataclass(frozen=True)
class Decision:
    key: str
    value: object
    reason: str


def decide(config: Config, run: RunDir) -> tuple[Config, list[Decision]]:
    """config with its 'auto' settings decided for this machine, and what was decided. Measuring
    batch_tokens trains a throwaway model on the run's data (and the run's tokenizer first, as
    training would)."""
    decisions = []
    train = config.train
    if train.precision == "auto":
        policy, reason = precision.choose("auto")
        train = dataclasses.replace(train, precision=policy)
        decisions.append(Decision("train.precision", policy, reason))
    if train.batch_tokens == "auto":
        budget, reason = _batch_tokens(dataclasses.replace(config, train=train), run)
        train = dataclasses.replace(train, batch_tokens=budget)
        decisions.append(Decision("train.batch_tokens", budget, reason))
    return dataclasses.replace(config, train=train), decisions


def as_decided(config: Config, recorded: Config) -> Config:
    """config with its 'auto' settings replaced by those recorded (a run's config.yaml holds what
    its first start decided): a resumed run trains as it began."""
    train = config.train
    for key in ("precision", "batch_tokens"):
        if getattr(train, key) == "auto" and getattr(recorded.train, key) != "auto":
            train = dataclasses.replace(train, **{key: getattr(recorded.train, key)})
    return dataclasses.replace(config, train=train)


def _batch_tokens(config: Config, run: RunDir) -> tuple[int, str]:
    # Devices are set up as training will set them up (CPU replicas must be split first); the
    # budget is measured on one device, for one replica.
    replicas = distribute.make_strategy(config.train).num_replicas_in_sync
    probe = dataclasses.replace(config, train=dataclasses.replace(
        config.train, distribute="none", replicas=None, accumulate_steps=1, batch_tokens=GPU_FIRST_BUDGET))
    setup = trainer.prepare(probe, run)
    try:
        if _on_gpu():
            largest = largest_fitting(lambda budget: _fits(setup, config, budget), GPU_FIRST_BUDGET, GPU_LARGEST_BUDGET)
            if largest is None:
                raise NmtError(f"train.batch_tokens=auto: a batch of {GPU_FIRST_BUDGET:,} tokens of the longest sentences "
                               f"({config.data.max_length} subwords) does not fit in GPU memory; lower data.max_length "
                               "or use a smaller model")
            per_replica = int(largest * GPU_MARGIN) // 256 * 256
            reason = (f"auto: batches of the longest sentences fit in GPU memory up to {largest:,} tokens; "
                      f"{GPU_MARGIN:.0%} of that")
        else:
            rates = _throughputs(setup, config)
            per_replica = fastest(rates)
            reason = "auto: the smallest of the fastest budgets, in target tokens/s: " + ", ".join(
                f"{budget:,}: {rate:,.0f}" for budget, rate in rates.items())
    finally:
        del setup
        gc.collect()
    if config.train.batch_scope == "global" and replicas > 1:
        return per_replica * replicas, f"{reason}; {per_replica:,} per replica, {replicas} replicas"
    return per_replica, reason


def _on_gpu() -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


def fastest(rates: dict[int, float]) -> int:
    """The smallest budget whose throughput is within THROUGHPUT_TOLERANCE of the best."""
    best = max(rates.values())
    return min(budget for budget, rate in rates.items() if rate >= (1 - THROUGHPUT_TOLERANCE) * best)


def largest_fitting(fits: Callable[[int], bool], first: int, largest: int) -> int | None:
    """The largest budget (a multiple of 256) for which fits() holds, from first up to largest:
    doubling until one fails, then halving the interval three times. None if first fails."""
    if not fits(first):
        return None
    low, high = first, None
    while high is None and low < largest:
        candidate = min(2 * low, largest)
        if fits(candidate):
            low = candidate
        else:
            high = candidate
    for _ in range(3):
        if high is None or high - low <= 256:
            break
        middle = (low + high) // 2 // 256 * 256
        if fits(middle):
            low = middle
        else:
            high = middle
    return low


def _throughputs(setup: trainer.Setup, config: Config) -> dict[int, float]:
    """Target tokens per second of training steps on the data's own batches, per budget,
    from the smallest budget up, stopping once throughput falls behind the best."""
    examples = pipeline.make_examples(sources.load_split(config.data, "train"), setup.tokenizers,
                                      config.data.max_length, cache=False)
    rates: dict[int, float] = {}
    for budget in CPU_BUDGETS:
        batches = iter(pipeline.batch_examples(examples, budget, config.data.max_length, config.train.seed,
                                               min(config.train.shuffle_buffer, 5000),
                                               fixed_shapes=config.train.jit_compile))
        for _ in range(2):
            float(setup.train_step((next(batches),))[0])
        tokens, steps, started = 0.0, 0, time.perf_counter()
        while steps < 2 or time.perf_counter() - started < TIMED_SECONDS:
            batch = next(batches, None)
            if batch is None:
                break
            tokens += float(setup.train_step((batch,))[1])
            steps += 1
        rates[budget] = tokens / (time.perf_counter() - started)
        log.info("batch_tokens=%d: %.0f target tokens/s", budget, rates[budget])
        if rates[budget] < (1 - THROUGHPUT_TOLERANCE) * max(rates.values()):
            break
    return rates


def _fits(setup: trainer.Setup, config: Config, budget: int) -> bool:
    """Whether a training step on the batch of the longest sentences of this budget (the largest
    bucket's, in sentences of data.max_length subwords) runs without exhausting device memory."""
    length = config.data.max_length + 1  # with BOS or EOS
    rows = pipeline.rows_per_batch(budget, length)
    vocab = min(setup.tokenizers.source_vocab_size, setup.tokenizers.target_vocab_size)
    ids = tf.constant(np.random.default_rng(0).integers(4, vocab, size=(rows, length)), tf.int32)
    try:
        float(setup.train_step(({"source_ids": ids, "target_in": ids, "target_out": ids},))[0])
    except tf.errors.ResourceExhaustedError:
        log.info("batch_tokens=%d: out of GPU memory", budget)
        return False
    log.info("batch_tokens=%d: fits", budget)
    return True
