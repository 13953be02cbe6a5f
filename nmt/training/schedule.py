"""The optimizer: Adam with a learning rate that warms up linearly, then decays as the inverse
square root of the step (Vaswani et al., 2017)."""

from __future__ import annotations

import keras
import tensorflow as tf

from nmt.config import TrainConfig


def make_optimizer(train: TrainConfig, policy: str, warmup_steps: float) -> keras.optimizers.Optimizer:
    """Adam with InverseSqrtSchedule(train.learning_rate, warmup_steps); under mixed_float16, with
    loss scaling: float16 gradients underflow without it (bfloat16 has float32's range)."""
    optimizer = keras.optimizers.Adam(
        learning_rate=InverseSqrtSchedule(train.learning_rate, warmup_steps),
        beta_1=train.adam_beta1, beta_2=train.adam_beta2, epsilon=train.adam_epsilon, global_clipnorm=train.clip_norm,
    )
    return keras.optimizers.LossScaleOptimizer(optimizer) if policy == "mixed_float16" else optimizer


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
