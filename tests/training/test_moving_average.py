"""The moving average of the weights (train.ema_decay): its rule, its use in validation and the
best checkpoint, and its resumption."""

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf

from nmt import averaging, checkpoints
from nmt.model.transformer import build_transformer
from nmt.run_dir import RunDir
from nmt.training import precision, trainer
from nmt.training.moving_average import MovingAverage
from tests.training.test_trainer import tiny


def decay_at(step, decay):
    return min(decay, (1 + step) / (10 + step))


def test_the_average_moves_by_the_warmed_up_decay_and_stays_for_a_dropped_update():
    weight = keras.Variable(np.array([1.0, -2.0], np.float32))
    average = MovingAverage([weight], decay=0.9)
    expected = np.array([1.0, -2.0])
    for step, value, applied in [(1, [3.0, 0.0], True), (2, [5.0, 1.0], True), (3, [7.0, 7.0], False), (300, [0.0, 4.0], True)]:
        weight.assign(np.array(value, np.float32))
        average.update(tf.constant(step), applied=tf.constant(applied))
        if applied:
            d = decay_at(step, 0.9)
            expected = d * expected + (1 - d) * np.array(value)
        np.testing.assert_allclose(average.values()[0], expected, rtol=1e-6)
    assert decay_at(300, 0.9) == 0.9 and decay_at(1, 0.9) < 0.2  # both regimes of the rule were used


def test_applied_puts_the_average_in_and_the_weights_back_even_on_an_error():
    weight = keras.Variable(np.array([1.0, 2.0], np.float32))
    average = MovingAverage([weight], decay=0.5)
    average.load([np.array([5.0, 6.0], np.float32)])
    with pytest.raises(KeyboardInterrupt):
        with average.applied():
            np.testing.assert_array_equal(weight.numpy(), [5.0, 6.0])
            raise KeyboardInterrupt
    np.testing.assert_array_equal(weight.numpy(), [1.0, 2.0])
    average.restart()
    np.testing.assert_array_equal(average.values()[0], [1.0, 2.0])


def weights_at(setup, run, step):
    """The trainable weights of the run's training checkpoint at step (restored as for resuming)."""
    checkpoints.restore(run.last_checkpoints / f"ckpt-{step}", setup.model, setup.optimizer)
    return [weight.numpy() for weight in setup.model.trainable_weights]


def test_validation_and_the_best_checkpoint_use_the_average_and_it_resumes(tmp_path, tfds_dir, caplog):
    caplog.set_level(logging.INFO, logger="nmt")
    decay = 0.5
    run = RunDir(tmp_path / "run")

    def train(max_steps, **extra):
        trainer.train(tiny(tfds_dir, max_steps=max_steps, learning_rate=3e-3, keep_checkpoints=5, **extra), run)

    # One step without an average; then switched on, to step 2; then resumed, to step 4.
    train(1)
    train(2, ema_decay=decay)
    assert "holds no moving average of the weights: train.ema_decay averages from its weights on" in caplog.text
    train(4, ema_decay=decay)
    config = tiny(tfds_dir, ema_decay=decay)
    setup = trainer.prepare(config, run)

    def checkpoint(step):
        """(trainable weights, average) of the run's last checkpoint at step."""
        return weights_at(setup, run, step), checkpoints.saved_average(run.last_checkpoints / f"ckpt-{step}", setup.model)

    # The files follow the rule step by step, average_k = d_k * average_(k-1) + (1 - d_k) * weights_k,
    # from the weights of step 1 (where the average started) and across the resumption at step 2.
    previous, missing = checkpoint(1)
    assert missing is None
    for step in (2, 3, 4):
        weights, average = checkpoint(step)
        d = decay_at(step, decay)
        for got, before, weight in zip(average, previous, weights):
            np.testing.assert_allclose(got, d * before + (1 - d) * weight, rtol=1e-5, atol=1e-7)
        assert any(not np.allclose(a, w) for a, w in zip(average, weights))  # the average is not the weights
        previous = average
    # The best checkpoint (lowest validation loss) holds the average, and its recorded validation
    # loss is the average's.
    best = checkpoints.latest(run.best_checkpoints)
    step = checkpoints.step_of(best)
    average = checkpoint(step)[1]
    state = checkpoints.restore(best, setup.model)
    for weight, want in zip(setup.model.trainable_weights, average):
        np.testing.assert_array_equal(weight.numpy(), want)
    totals = trainer._Totals()
    for batch in setup.validation_batches:
        totals.add(*(float(value) for value in setup.validation_step(batch)))
    assert totals.mean_loss == pytest.approx(state["best_validation"]["validation_loss"], rel=1e-5)
    # `nmt average` averages the checkpoints' own weights, not their averages.
    means = [(third + fourth) / 2 for third, fourth in zip(weights_at(setup, run, 3), weights_at(setup, run, 4))]
    averaging.average(run, setup.model, averaging.last_checkpoints(run, 2))
    checkpoints.restore(run.checkpoint_path("averaged"), setup.model)
    for got, want in zip(setup.model.trainable_weights, means):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-7)
    # Decoding from a training checkpoint uses its average, in float32 or bfloat16 weights.
    for policy in ("float32", "bfloat16"):
        with precision.policy_scope(policy):
            model = build_transformer(config.model, setup.tokenizers.source_vocab_size, setup.tokenizers.target_vocab_size)
        checkpoints.restore(run.last_checkpoints / "ckpt-4", model)
        for weight, want in zip(model.trainable_weights, previous):
            np.testing.assert_array_equal(weight.numpy(), keras.ops.convert_to_numpy(keras.ops.cast(want, policy)))

