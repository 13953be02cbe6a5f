"""'auto' settings: the precision chosen from the device, the batch budget measured (on a CPU by
throughput, on a GPU by what fits), and a resumed run keeping what its first start decided."""

import dataclasses
import logging

import pytest
import tensorflow as tf

from nmt import config as config_lib
from nmt.run_dir import RunDir
from nmt.training import autotune, precision, trainer
from nmt.training.trainer import OutOfMemory
from tests.training.test_trainer import tiny


def test_the_smallest_budget_within_the_tolerance_of_the_best_wins():
    assert autotune.fastest({1024: 100.0, 2048: 190.0, 4096: 200.0, 8192: 198.0}) == 2048
    assert autotune.fastest({1024: 100.0, 2048: 150.0, 4096: 200.0}) == 4096


def test_the_largest_fitting_budget_is_found_by_doubling_then_halving():
    tried = []

    def fits_up_to(limit):
        def fits(budget):
            tried.append(budget)
            return budget <= limit
        return fits

    found = autotune.largest_fitting(fits_up_to(50_000), 4096, 1 << 20)
    assert 0.9 * 50_000 <= found <= 50_000 and found % 256 == 0
    assert len(tried) <= 4 + 1 + 3  # 4096 .. 65536 doubled, then three halvings
    assert autotune.largest_fitting(fits_up_to(10**9), 4096, 1 << 20) == 1 << 20
    assert autotune.largest_fitting(fits_up_to(1000), 4096, 1 << 20) is None


@pytest.mark.parametrize("flags, expected, reason", [
    ({"avx512f", "avx512_bf16"}, "mixed_bfloat16", "auto: the CPU has bfloat16 units (avx512_bf16)"),
    ({"avx2"}, "float32", "auto: the CPU has no bfloat16 units (amx_bf16 or avx512_bf16)"),
])
def test_auto_precision_follows_the_cpu(monkeypatch, tmp_path, flags, expected, reason):
    monkeypatch.setattr(precision, "_gpu_compute_capability", lambda: None)
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    config, decisions = autotune.decide(config_lib.from_dict({}), RunDir(tmp_path))
    assert config.train.precision == expected
    assert decisions == [autotune.Decision("train.precision", expected, reason)]


@pytest.mark.parametrize("capability, expected", [((9, 0), "mixed_bfloat16"), ((7, 5), "mixed_float16"), ((6, 1), "float32")])
def test_auto_precision_follows_the_gpu(monkeypatch, capability, expected):
    monkeypatch.setattr(precision, "_gpu_compute_capability", lambda: capability)
    policy, reason = precision.choose("auto")
    assert policy == expected and f"compute capability {capability[0]}.{capability[1]}" in reason


def test_explicit_settings_are_kept_and_a_resumed_run_keeps_its_decisions(tmp_path):
    explicit = config_lib.from_dict({"train": {"precision": "float32", "batch_tokens": 2048}})
    assert autotune.decide(explicit, RunDir(tmp_path)) == (explicit, [])
    auto = config_lib.from_dict({"train": {"batch_tokens": "auto"}})
    assert autotune.as_decided(auto, explicit).train == explicit.train


@pytest.fixture
def quick_probe(monkeypatch):
    monkeypatch.setattr(autotune, "CPU_BUDGETS", (256, 512, 1024))
    monkeypatch.setattr(autotune, "TIMED_SECONDS", 0.5)


def test_a_cpu_budget_is_measured_on_the_data(tmp_path, tfds_dir, quick_probe, caplog):
    caplog.set_level(logging.INFO, logger="nmt")
    config = tiny(tfds_dir, precision="float32", batch_tokens="auto")
    decided, (decision,) = autotune.decide(config, RunDir(tmp_path))
    assert decided.train.batch_tokens == decision.value in (256, 512, 1024)
    assert decision.reason.startswith("auto: the smallest of the fastest budgets, in target tokens/s: 256: ")
    rates = [line for line in caplog.messages if line.startswith("batch_tokens=")]
    assert len(rates) >= 2 and all(float(line.split(": ")[1].split()[0]) > 0 for line in rates)


def test_a_gpu_budget_is_the_largest_that_fits_less_a_margin(tmp_path, tfds_dir, monkeypatch):
    monkeypatch.setattr(autotune, "_on_gpu", lambda: True)
    real_step = autotune._fits
    # A real training step on a batch of the longest sentences each time, its budget capped for speed.
    monkeypatch.setattr(autotune, "_fits", lambda setup, config, budget: real_step(setup, config, 1024) and budget <= 20_000)
    config = tiny(tfds_dir, precision="float32", batch_tokens="auto")
    decided, (decision,) = autotune.decide(config, RunDir(tmp_path))
    assert decided.train.batch_tokens == int(0.85 * decision_largest(decision)) // 256 * 256
    assert "fit in GPU memory up to" in decision.reason
    monkeypatch.setattr(autotune, "_fits", lambda setup, config, budget: False)
    with pytest.raises(autotune.NmtError, match="a batch of 4,096 tokens of the longest sentences .* does not fit in GPU memory"):
        autotune.decide(config, RunDir(tmp_path))


def decision_largest(decision):
    return int(decision.reason.split("up to ")[1].split(" tokens")[0].replace(",", ""))


def test_running_out_of_memory_stops_training_with_the_value_to_set(tmp_path, tfds_dir, monkeypatch):
    prepare = trainer.prepare

    def exhausted(*args, **kwargs):
        setup = prepare(*args, **kwargs)

        def step(batches):
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

        return dataclasses.replace(setup, train_step=step)

    monkeypatch.setattr(trainer, "prepare", exhausted)
    with pytest.raises(OutOfMemory, match=r"out of memory at step 1 with train.batch_tokens=512: set train.batch_tokens=256 "
                                          r"and train.accumulate_steps=2 \(the same update, in halves\)"):
        trainer.train(tiny(tfds_dir, max_steps=3), RunDir(tmp_path))
