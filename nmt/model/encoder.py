"""One Transformer encoder layer: self-attention and feed-forward, each in a residual block."""

from __future__ import annotations

import keras
import tensorflow as tf

from nmt.model.attention import Attention, as_sublayer
from nmt.model.sublayers import BuiltByFirstCall, Dropout, FeedForward, residual


class EncoderLayer(BuiltByFirstCall, keras.layers.Layer):
    """Args:
        hidden_dim, num_heads, intermediate_dim: sizes.
        dropout: on sublayer outputs and inside the feed-forward block.
        attention_dropout: on attention weights.
        norm_first: pre-norm (True) or post-norm (False).
        attention, num_kv_heads, attention_projections: the attention variant (nmt.model.attention).
    """

    def __init__(self, hidden_dim, num_heads, intermediate_dim, dropout, attention_dropout, norm_first,
                 attention, num_kv_heads, attention_projections, **kwargs):
        super().__init__(**kwargs)
        self.norm_first = norm_first
        self.self_attention = Attention(
            hidden_dim=hidden_dim, num_heads=num_heads, variant=attention, num_kv_heads=num_kv_heads,
            projections=attention_projections, dropout=attention_dropout, name="self_attention",
        )
        self.feed_forward = FeedForward(hidden_dim, intermediate_dim, dropout, name="feed_forward")
        self.attention_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="attention_norm")
        self.feed_forward_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="feed_forward_norm")
        self.dropout = Dropout(dropout)

    def call(self, x: tf.Tensor, attention_mask: tf.Tensor, training: bool = False, return_attention: bool = False):
        """x: (batch, src_len, hidden_dim); attention_mask: (batch, src_len, src_len) or broadcastable.
        With return_attention, also {"self": the self-attention's logits and weights}."""
        maps = {} if return_attention else None
        x = residual(
            x, as_sublayer(self.self_attention, None, attention_mask, training, maps, "self"),
            self.attention_norm, self.dropout, self.norm_first, training,
        )
        x = residual(
            x, lambda h: self.feed_forward(h, training=training),
            self.feed_forward_norm, self.dropout, self.norm_first, training,
        )
        return (x, maps) if return_attention else x
