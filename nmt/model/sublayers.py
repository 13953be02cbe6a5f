"""Pieces shared by encoder and decoder layers: the feed-forward block and the residual wrapper."""

from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf


class FeedForward(keras.layers.Layer):
    """Position-wise Dense(intermediate_dim, relu) -> Dense(hidden_dim)."""

    def __init__(self, hidden_dim: int, intermediate_dim: int, dropout: float, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.inner = keras.layers.Dense(intermediate_dim, activation="relu", name="inner")
        self.inner_dropout = keras.layers.Dropout(dropout)
        self.outer = keras.layers.Dense(hidden_dim, name="outer")

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.outer(self.inner_dropout(self.inner(x), training=training))


def residual(
    x: tf.Tensor,
    sublayer: Callable[[tf.Tensor], tf.Tensor],
    norm: keras.layers.LayerNormalization,
    dropout: keras.layers.Dropout,
    norm_first: bool,
    training: bool,
) -> tf.Tensor:
    """Pre-norm: x + f(norm(x)); post-norm (the original Transformer): norm(x + f(x))."""
    if norm_first:
        return x + dropout(sublayer(norm(x)), training=training)
    return norm(x + dropout(sublayer(x), training=training))
