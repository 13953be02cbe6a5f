"""Token embeddings scaled by sqrt(hidden_dim) plus fixed sinusoidal positions."""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from nmt.model.sublayers import BuiltByFirstCall, Dropout


def sinusoidal_positions(max_length: int, hidden_dim: int) -> np.ndarray:
    """(max_length, hidden_dim): sin on even channels, cos on odd ones (Vaswani et al., 2017)."""
    positions = np.arange(max_length)[:, np.newaxis]
    frequencies = np.exp(-math.log(10000.0) * np.arange(0, hidden_dim, 2) / hidden_dim)
    table = np.zeros((max_length, hidden_dim), dtype=np.float32)
    table[:, 0::2] = np.sin(positions * frequencies)
    table[:, 1::2] = np.cos(positions * frequencies[: hidden_dim // 2])
    return table


class PositionalEmbedding(BuiltByFirstCall, keras.layers.Layer):
    """Embeds token ids and adds positions; `token_embedding` may be shared with another instance.

    Args:
        token_embedding: a keras.layers.Embedding of width hidden_dim.
        max_length: longest sequence (number of positions).
        dropout: dropout rate applied to the sum.
    """

    def __init__(self, token_embedding: keras.layers.Embedding, max_length: int, dropout: float, **kwargs):
        super().__init__(**kwargs)
        self.token_embedding = token_embedding
        self.max_length = max_length
        self.hidden_dim = token_embedding.output_dim
        self.positions = tf.constant(sinusoidal_positions(max_length, self.hidden_dim))
        self.dropout = Dropout(dropout)

    def call(self, token_ids: tf.Tensor, training: bool = False, start: tf.Tensor | int = 0) -> tf.Tensor:
        """token_ids: (batch, len) at positions start .. start + len - 1 (start > 0 when decoding
        one step at a time)."""
        # A static length (1 in a decoding step) keeps the output's static shape, which the
        # attention layer reads to reshape rather than transpose a single position.
        length = token_ids.shape[1] or tf.shape(token_ids)[1]
        embedded = self.token_embedding(token_ids) * math.sqrt(self.hidden_dim)  # (batch, len, hidden_dim)
        embedded += tf.cast(tf.slice(self.positions, [start, 0], [length, -1]), embedded.dtype)
        return self.dropout(embedded, training=training)
