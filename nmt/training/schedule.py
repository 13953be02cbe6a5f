"""Learning-rate schedule: linear warmup, then inverse square root decay (Vaswani et al., 2017)."""

from __future__ import annotations

import keras
import tensorflow as tf


class InverseSqrtSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) = peak * min(step / warmup_steps, sqrt(warmup_steps / step)).

    Stated with the peak rate rather than the paper's d_model**-0.5 scale, so a config says
    directly how large the largest step is.
    """

    def __init__(self, peak_learning_rate: float, warmup_steps: int):
        self.peak_learning_rate = peak_learning_rate
        self.warmup_steps = warmup_steps

    def __call__(self, step):
        step = tf.cast(step, tf.float32) + 1.0
        warmup = tf.cast(self.warmup_steps, tf.float32)
        return self.peak_learning_rate * tf.minimum(step / warmup, tf.sqrt(warmup / step))

    def get_config(self) -> dict:
        return {"peak_learning_rate": self.peak_learning_rate, "warmup_steps": self.warmup_steps}
