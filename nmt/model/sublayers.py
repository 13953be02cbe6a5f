"""Pieces shared by the model's layers: dropout, the feed-forward block and the residual wrapper."""

from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf


class BuiltByFirstCall:
    """A mixin for layers whose weights all lie in their sublayers: each sublayer builds itself as
    the first call reaches it. Without a build of its own, Keras builds such a layer by tracing its
    call on symbolic inputs first, and each such layer below it again: building reference_base's
    model took 1.9 s that way instead of 0.8 s (the same weights), in every process that builds one."""

    def build(self, input_shape=None):
        self.built = True


class Dropout(keras.layers.Layer):
    """Inverted dropout, as keras.layers.Dropout, from 16 random bits per element.

    keras.layers.Dropout draws a random float per element (Philox, then a conversion): in a
    training step of `reference_base` on 2 CPU cores that was ~10% of op time, more in bfloat16.
    One 32-bit draw here decides two elements: the rate is quantised to 1/65536 and the scale is
    that of the quantised rate, so the expected output still equals the input.
    """

    _LEVELS = 1 << 16

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.threshold = round(rate * self._LEVELS)
        # As keras.layers.Dropout: a seed generator only where it drops. Its state is not among
        # the weights Keras saves; training checkpoints keep it themselves (nmt/checkpoints.py).
        if rate > 0:
            self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        if not training or self.threshold == 0:
            return x
        # Stateless random ops take an int32 seed; the generator's state is int64.
        seed = tf.cast(tf.math.floormod(self.seed_generator.next(), tf.int32.max - 1), tf.int32)
        size = tf.size(x)
        words = tf.random.stateless_uniform([(size + 1) // 2], seed, minval=None, maxval=None, dtype=tf.uint32)
        bits = tf.reshape(tf.bitcast(words, tf.uint16), [-1])[:size]
        keep = tf.reshape(bits, tf.shape(x)) >= self.threshold
        scale = self._LEVELS / (self._LEVELS - self.threshold)
        return tf.where(keep, x * tf.cast(scale, x.dtype), tf.zeros_like(x))

    def get_config(self) -> dict:
        return {**super().get_config(), "rate": self.rate}


class FeedForward(BuiltByFirstCall, keras.layers.Layer):
    """Position-wise Dense(intermediate_dim, relu) -> Dense(hidden_dim)."""

    def __init__(self, hidden_dim: int, intermediate_dim: int, dropout: float, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.inner = keras.layers.Dense(intermediate_dim, activation="relu", name="inner")
        self.inner_dropout = Dropout(dropout)
        self.outer = keras.layers.Dense(hidden_dim, name="outer")

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.outer(self.inner_dropout(self.inner(x), training=training))


def residual(
    x: tf.Tensor,
    sublayer: Callable[[tf.Tensor], tf.Tensor],
    norm: keras.layers.LayerNormalization,
    dropout: Dropout,
    norm_first: bool,
    training: bool,
) -> tf.Tensor:
    """Pre-norm: x + f(norm(x)); post-norm (the original Transformer): norm(x + f(x))."""
    if norm_first:
        return x + dropout(sublayer(norm(x)), training=training)
    return norm(x + dropout(sublayer(x), training=training))
