"""An update is the same computation however its batches are spread: one concatenated batch,
accumulated batches (train.accumulate_steps), or replicas of a mirrored strategy (two logical
CPU devices, set up in conftest.py). The loss is normalised by the tokens of the whole update; a
per-batch or per-replica normalisation makes these tests fail."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from nmt import config as config_lib
from nmt.config import ModelConfig
from nmt.data.tokenizer import PAD_ID
from nmt.errors import ConfigError
from nmt.model.transformer import build_transformer
from nmt.training import distribute, trainer
from nmt.training.moving_average import MovingAverage

VOCAB = 40
SPEC = {key: tf.TensorSpec([None, None], tf.int32) for key in ("source_ids", "target_in", "target_out")}


def batch(seed, size, source_length, target_length):
    """Random ids with rows of different lengths (padding at the end)."""
    rng = np.random.default_rng(seed)

    def ids(length):
        values = rng.integers(3, VOCAB, size=(size, length))
        for row, keep in enumerate(rng.integers(1, length + 1, size=size)):
            values[row, keep:] = PAD_ID
        values[0, :] = rng.integers(3, VOCAB, size=length)  # the longest row fills the width
        return values.astype(np.int32)

    target = ids(target_length)
    return {"source_ids": tf.constant(ids(source_length)), "target_in": tf.constant(target), "target_out": tf.constant(target)}


def concatenate(first, second):
    def pad(tensor, width):
        return tf.pad(tensor, [[0, 0], [0, width - tensor.shape[1]]])

    out = {}
    for key in first:
        width = max(first[key].shape[1], second[key].shape[1])
        out[key] = tf.concat([pad(first[key], width), pad(second[key], width)], axis=0)
    return out


@pytest.fixture(scope="module")
def initial_weights():
    keras.utils.set_random_seed(0)
    return build_transformer(model_config(), VOCAB, VOCAB).get_weights()


def model_config():
    return ModelConfig(num_encoder_layers=1, num_decoder_layers=1, hidden_dim=16, num_heads=2,
                       intermediate_dim=32, dropout=0.0, attention_dropout=0.0, max_length=32)


def update(strategy, initial_weights, batches, spec=SPEC, accumulate_steps=1, average=False):
    """Weights after one update (and then the moving average of the trainable ones, with
    average), and the step's (loss sum, tokens, correct tokens[, gradient norm])."""
    with strategy.scope():
        model = build_transformer(model_config(), VOCAB, VOCAB)
        model.set_weights(initial_weights)
        # SGD: its update is proportional to the gradient, so any misweighting shows (Adam's first
        # step is nearly sign(gradient) and would hide one).
        optimizer = keras.optimizers.SGD(learning_rate=1.0)
        optimizer.build(model.trainable_variables)
        moving = MovingAverage(model.trainable_variables, 0.9) if average else None
    train = config_lib.from_dict({"train": {"accumulate_steps": accumulate_steps}}).train
    step = trainer._train_step(strategy, model, optimizer, train, spec, moving)
    outputs = [float(value) for value in step(batches)]
    weights = [np.asarray(weight.numpy()) for weight in model.weights]
    return weights + (moving.values() if average else []), outputs


def assert_same_update(expected, actual, outputs=4):
    """outputs: how many of the step's outputs must agree (replicas each report their own
    part's gradient norm, not the norm of the sum)."""
    (expected_weights, expected_outputs), (actual_weights, actual_outputs) = expected, actual
    np.testing.assert_allclose(actual_outputs[:outputs], expected_outputs[:outputs], rtol=1e-5)
    for want, got in zip(expected_weights, actual_weights):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-6)


FIRST, SECOND = batch(1, 3, 7, 5), batch(2, 5, 4, 9)


def test_accumulated_batches_equal_one_concatenated_batch(initial_weights):
    default = tf.distribute.get_strategy()
    whole = update(default, initial_weights, (concatenate(FIRST, SECOND),))
    assert whole[1][1] == float(tf.reduce_sum(tf.cast(concatenate(FIRST, SECOND)["target_out"] != PAD_ID, tf.float32)))
    assert_same_update(whole, update(default, initial_weights, (FIRST, SECOND), accumulate_steps=2))


def test_mirrored_replicas_equal_one_concatenated_batch(initial_weights):
    strategy = distribute.make_strategy(config_lib.from_dict({"train": {"distribute": "mirrored", "replicas": 2}}).train)
    assert strategy.num_replicas_in_sync == 2
    dataset = tf.data.Dataset.from_generator(lambda: iter([FIRST, SECOND]), output_signature=SPEC)
    # One input pipeline feeding two replicas: consecutive batches go to replica 0 and 1.
    distributed = strategy.distribute_datasets_from_function(lambda context: dataset)
    mirrored = update(strategy, initial_weights, (next(iter(distributed)),), distributed.element_spec, average=True)
    single = update(tf.distribute.get_strategy(), initial_weights, (concatenate(FIRST, SECOND),), average=True)
    assert_same_update(single, mirrored, outputs=3)
    # The moving average (train.ema_decay) of the first weight moved 9/11 of the way to its new
    # value (decay min(0.9, 2/11) after the first update), on both.
    np.testing.assert_allclose(mirrored[0][len(initial_weights)], 9 / 11 * mirrored[0][0] + 2 / 11 * initial_weights[0],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mirrored", [False, True])
def test_a_step_with_a_nonfinite_loss_is_not_applied_on_any_replica(initial_weights, mirrored):
    poisoned = [weight.copy() for weight in initial_weights]
    poisoned[0][...] = np.inf  # the first weight (an embedding) infinite: every loss becomes NaN
    if mirrored:
        strategy = distribute.make_strategy(config_lib.from_dict({"train": {"distribute": "mirrored", "replicas": 2}}).train)
        dataset = tf.data.Dataset.from_generator(lambda: iter([FIRST, SECOND]), output_signature=SPEC)
        distributed = strategy.distribute_datasets_from_function(lambda context: dataset)
        weights, outputs = update(strategy, poisoned, (next(iter(distributed)),), distributed.element_spec)
    else:
        weights, outputs = update(tf.distribute.get_strategy(), poisoned, (concatenate(FIRST, SECOND),))
    assert not np.isfinite(outputs[0]) and outputs[4] == 1.0
    for want, got in zip(poisoned, weights):
        np.testing.assert_array_equal(got, want)
    healthy = update(tf.distribute.get_strategy(), initial_weights, (concatenate(FIRST, SECOND),))
    assert healthy[1][4] == 0.0 and not all(np.array_equal(a, b) for a, b in zip(healthy[0], initial_weights))


def test_batch_sizes_and_warmup_follow_the_batch_scope():
    def train(**values):
        return config_lib.from_dict({"train": {"distribute": "mirrored", **values}}).train

    assert distribute.replica_batch_tokens(train(batch_tokens=4096), 4) == 1024
    assert distribute.batch_multiplier(train(batch_tokens=4096), 4) == 1
    assert distribute.replica_batch_tokens(train(batch_scope="replica"), 4) == 4096
    assert distribute.batch_multiplier(train(batch_scope="replica", accumulate_steps=2), 4) == 8


def test_multi_worker_needs_a_valid_tf_config(monkeypatch):
    train = config_lib.from_dict({"train": {"distribute": "multi_worker"}}).train
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="needs the TF_CONFIG environment variable"):
        distribute.make_strategy(train)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {}}))
    with pytest.raises(ConfigError, match="TF_CONFIG must be JSON with"):
        distribute.make_strategy(train)


def test_cpu_replicas_in_a_fresh_process():
    """What `nmt train --set train.replicas=2` does on a CPU: split it before anything else has
    set up TensorFlow's devices (this test session's process already has, in conftest.py)."""
    program = (
        "from nmt import config\n"
        "from nmt.training import distribute\n"
        "train = config.from_dict({'train': {'distribute': 'mirrored', 'replicas': 2}}).train\n"
        "print(distribute.make_strategy(train).num_replicas_in_sync)\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.split()[-1] == "2", result.stderr[-2000:]
