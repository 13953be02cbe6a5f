"""An exponential moving average of the model's weights (train.ema_decay), kept beside them as
training goes: Polyak averaging, as OpenNMT-tf's moving_average_decay, fairseq's --ema and
Marian's exponential smoothing keep it.

After each applied update, average <- d * average + (1 - d) * weights, with
d = min(ema_decay, (1 + step) / (10 + step)): TensorFlow's ExponentialMovingAverage rule for a
known step count. Early in training d is small, so the average follows weights that still move
fast instead of keeping the random initialisation for thousands of steps; later it is ema_decay.
The training itself never sees the average: validation, the best checkpoint and everything
decoded from it do (`applied`).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf


class MovingAverage:
    """The average of `variables` (a model's trainable weights), created as a copy of their
    current values. Create it under the training's distribution strategy: each replica then
    computes the same average from its identical weights, and the first replica's is kept."""

    def __init__(self, variables: Sequence, decay: float):
        self.decay = decay
        self.variables = list(variables)
        self.averages = [
            tf.Variable(tf.convert_to_tensor(variable), trainable=False, name="moving_average",
                        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            for variable in self.variables
        ]

    def update(self, step: tf.Tensor, applied: tf.Tensor | bool = True) -> None:
        """Moves the average toward the weights after update number `step` (counted from 1). For
        an update that was not applied (loss scaling dropped it) the average stays as it is."""
        step = tf.cast(step, tf.float32)
        decay = tf.minimum(self.decay, (1.0 + step) / (10.0 + step))
        decay = tf.where(applied, decay, 1.0)
        for average, variable in zip(self.averages, self.variables):
            average.assign_sub((1.0 - decay) * (average - tf.convert_to_tensor(variable)))

    def restart(self) -> None:
        """The average becomes the weights as they are (a run that starts from another run's
        weights, or resumes from a checkpoint written without an average)."""
        for average, variable in zip(self.averages, self.variables):
            average.assign(tf.convert_to_tensor(variable))

    def values(self) -> list[np.ndarray]:
        return [average.numpy() for average in self.averages]

    def load(self, values: Sequence[np.ndarray]) -> None:
        """Sets the average to values (one per variable, of its shape), as `values` returned them."""
        for average, value in zip(self.averages, values, strict=True):
            average.assign(value)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Inside the block the variables hold the average; afterwards, their own values again
        (also when the block raises: an interrupted validation leaves the weights to save)."""
        own = [variable.numpy() for variable in self.variables]
        for variable, average in zip(self.variables, self.averages):
            variable.assign(tf.convert_to_tensor(average))
        try:
            yield
        finally:
            for variable, value in zip(self.variables, own):
                variable.assign(value)
