"""One Transformer encoder layer: self-attention and feed-forward, each in a residual block."""

from __future__ import annotations

import keras
import tensorflow as tf

from nmt.model.sublayers import Dropout, FeedForward, residual


class EncoderLayer(keras.layers.Layer):
    """Args:
        hidden_dim, num_heads, intermediate_dim: sizes.
        dropout: on sublayer outputs and inside the feed-forward block.
        attention_dropout: on attention weights.
        norm_first: pre-norm (True) or post-norm (False).
    """

    def __init__(self, hidden_dim, num_heads, intermediate_dim, dropout, attention_dropout, norm_first, **kwargs):
        super().__init__(**kwargs)
        self.norm_first = norm_first
        self.self_attention = keras.layers.MultiHeadAttention(
            num_heads, hidden_dim // num_heads, dropout=attention_dropout, name="self_attention"
        )
        self.feed_forward = FeedForward(hidden_dim, intermediate_dim, dropout, name="feed_forward")
        self.attention_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="attention_norm")
        self.feed_forward_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="feed_forward_norm")
        self.dropout = Dropout(dropout)

    def call(self, x: tf.Tensor, attention_mask: tf.Tensor, training: bool = False) -> tf.Tensor:
        """x: (batch, src_len, hidden_dim); attention_mask: (batch, src_len, src_len) or broadcastable."""
        x = residual(
            x,
            lambda h: self.self_attention(h, h, attention_mask=attention_mask, training=training),
            self.attention_norm, self.dropout, self.norm_first, training,
        )
        return residual(
            x, lambda h: self.feed_forward(h, training=training),
            self.feed_forward_norm, self.dropout, self.norm_first, training,
        )
