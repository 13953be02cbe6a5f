"""One Transformer decoder layer: causal self-attention, cross-attention over the encoder output,
and feed-forward, each in a residual block."""

from __future__ import annotations

import keras
import tensorflow as tf

from nmt.model.sublayers import FeedForward, residual


class DecoderLayer(keras.layers.Layer):
    """Args: as EncoderLayer."""

    def __init__(self, hidden_dim, num_heads, intermediate_dim, dropout, attention_dropout, norm_first, **kwargs):
        super().__init__(**kwargs)
        self.norm_first = norm_first
        key_dim = hidden_dim // num_heads
        self.self_attention = keras.layers.MultiHeadAttention(
            num_heads, key_dim, dropout=attention_dropout, name="self_attention"
        )
        self.cross_attention = keras.layers.MultiHeadAttention(
            num_heads, key_dim, dropout=attention_dropout, name="cross_attention"
        )
        self.feed_forward = FeedForward(hidden_dim, intermediate_dim, dropout, name="feed_forward")
        self.self_attention_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="self_attention_norm")
        self.cross_attention_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="cross_attention_norm")
        self.feed_forward_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="feed_forward_norm")
        self.dropout = keras.layers.Dropout(dropout)

    def call(
        self,
        x: tf.Tensor,
        memory: tf.Tensor,
        self_mask: tf.Tensor,
        memory_mask: tf.Tensor,
        training: bool = False,
    ) -> tf.Tensor:
        """x: (batch, tgt_len, hidden_dim); memory: (batch, src_len, hidden_dim) from the encoder;
        self_mask: (batch, tgt_len, tgt_len); memory_mask: (batch, tgt_len, src_len)."""
        x = residual(
            x,
            lambda h: self.self_attention(h, h, attention_mask=self_mask, training=training),
            self.self_attention_norm, self.dropout, self.norm_first, training,
        )
        x = residual(
            x,
            lambda h: self.cross_attention(h, memory, attention_mask=memory_mask, training=training),
            self.cross_attention_norm, self.dropout, self.norm_first, training,
        )
        return residual(
            x, lambda h: self.feed_forward(h, training=training),
            self.feed_forward_norm, self.dropout, self.norm_first, training,
        )
