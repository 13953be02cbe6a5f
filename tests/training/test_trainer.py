"""Stopping and best-checkpoint rules of the training loop (its learning is tested end to end in
tests/test_cli.py)."""

from types import SimpleNamespace

import tensorflow as tf

from nmt import config as config_lib
from nmt.training.trainer import _Loop, _State


def loop(state, **train):
    config = config_lib.from_dict({"train": train})
    return _Loop(config, None, SimpleNamespace(optimizer=SimpleNamespace(iterations=tf.constant(5))), state, None, [])


def test_best_metric_direction():
    assert _State().improves(3.0, "bleu") and _State().improves(3.0, "loss")
    assert _State(best_score=20.0).improves(21.0, "bleu") and not _State(best_score=20.0).improves(20.0, "bleu")
    assert _State(best_score=2.0).improves(1.5, "loss") and not _State(best_score=2.0).improves(2.5, "loss")


def test_early_stopping_after_patience_validations_without_improvement():
    assert loop(_State(validations_without_improvement=1), early_stopping_patience=2)._stop_reason() is None
    assert loop(_State(validations_without_improvement=2), early_stopping_patience=2)._stop_reason() == "early_stopping"
    assert loop(_State(validations_without_improvement=50))._stop_reason() is None


def test_budgets_stop_training():
    assert loop(_State(), max_steps=5)._stop_reason() == "max_steps"
    assert loop(_State(train_seconds=61.0), max_minutes=1)._stop_reason() == "max_minutes"
    assert loop(_State(epoch=3), epochs=3)._stop_reason() == "epochs"
